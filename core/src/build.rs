//! Build information shared by both binaries (`--version`, `*_build_info`).

/// The crate version, as set in the workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A one-line description of this build for logs: name, version, target family.
pub fn describe(binary: &str) -> String {
    format!(
        "{binary} {VERSION} ({} {})",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_binary_and_version() {
        let d = describe("tidal-agent");
        assert!(d.starts_with("tidal-agent "), "{d}");
        assert!(d.contains(VERSION), "{d}");
    }
}
