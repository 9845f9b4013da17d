//! Why the cgroup sampler (or one cgroup of it) could not be read.

use std::io;
use std::path::PathBuf;

use crate::sampler::SampleError;

/// Why the cgroup sampler (or one cgroup of it) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy found under {root}")]
    NoHierarchy { root: PathBuf },
    #[error("listing {path}: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: key {key} is missing")]
    MissingKey { path: PathBuf, key: &'static str },
    #[error("{path}: {value:?} is not a number")]
    NotANumber { path: PathBuf, value: String },
    #[error("{path}: no line for the cgroup hierarchy in use")]
    SelfCgroup { path: PathBuf },
    /// Sidecar mode: `/proc/self/cgroup` names a cgroup that `--cgroup-root` does not hold.
    /// A container's own `/sys/fs/cgroup` (cgroup v1 without a cgroup namespace) mounts only
    /// its own cgroup at each controller's root, under the host's path.
    #[error(
        "{path} does not exist: the agent's own cgroup {own} (from /proc/self/cgroup) is not \
         under --cgroup-root. A container's /sys/fs/cgroup shows only its own cgroup; in \
         sidecar mode, mount the host's /sys/fs/cgroup read-only (hostPath) and point \
         --cgroup-root at it"
    )]
    SelfCgroupNotMounted { path: PathBuf, own: String },
}

impl CgroupError {
    /// The fixed `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            CgroupError::NoHierarchy { .. } => "no_hierarchy",
            CgroupError::List { source, .. } | CgroupError::Read { source, .. } => {
                match source.kind() {
                    io::ErrorKind::NotFound => "vanished",
                    // A held file of a removed cgroup (kernfs answers ENODEV).
                    _ if source.raw_os_error() == Some(ENODEV) => "vanished",
                    io::ErrorKind::PermissionDenied => "permission_denied",
                    _ => "io",
                }
            }
            CgroupError::MissingKey { .. } => "missing_key",
            CgroupError::NotANumber { .. } => "not_a_number",
            CgroupError::SelfCgroup { .. } | CgroupError::SelfCgroupNotMounted { .. } => {
                "self_cgroup_unknown"
            }
        }
    }
}

/// `ENODEV`: what reading a held interface file of a removed cgroup returns.
const ENODEV: i32 = 19;

impl From<CgroupError> for SampleError {
    fn from(e: CgroupError) -> Self {
        SampleError::new(e.reason(), e)
    }
}
