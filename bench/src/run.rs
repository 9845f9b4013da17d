//! The conditions of a run, as each section states them: the date, this host's CPUs and
//! kernel, the load average at the start and at the end, the tree's version and the command.

use std::path::Path;

use serde_json::{Value, json};

/// This host, as a section describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// Online CPUs (what Python's `os.cpu_count()` says).
    pub cpus: u64,
    /// `uname -r`.
    pub kernel: String,
}

impl Host {
    pub fn this() -> Self {
        Self {
            cpus: online_cpus(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into()),
        }
    }
}

/// The online CPUs, from `/sys/devices/system/cpu/online` (`0-1,4`), as glibc counts them.
fn online_cpus() -> u64 {
    let count = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .map(|s| {
            s.trim()
                .split(',')
                .filter_map(|r| match r.split_once('-') {
                    Some((a, b)) => Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1),
                    None => r.parse::<u64>().ok().map(|_| 1),
                })
                .sum::<u64>()
        })
        .filter(|&n| n > 0);
    count.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1)
    })
}

/// The first field of `/proc/loadavg` (the 1-minute load average), as the scripts read it.
pub fn load1() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// `git describe --always --dirty` of the tree, or `unknown`.
pub fn version() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["describe", "--always", "--dirty"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Now, in UTC to the minute: `2026-12-03 09:52 UTC`.
pub fn utc_minute() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// Today's date in the local time zone: `2026-12-03`.
pub fn local_date() -> String {
    k8s_openapi::jiff::Zoned::now().date().to_string()
}

/// One run's conditions, stored with each of its figures (the `run` of an entry).
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub date: String,
    /// The command as run (with the knobs that were set), where the section names it.
    pub command: Option<String>,
    /// The load average at the start and at the end.
    pub load: [Option<String>; 2],
    pub version: String,
    pub host: Host,
}

/// The start of a run: the load average before the measurement.
pub struct Started {
    load_start: Option<String>,
}

impl Started {
    pub fn now() -> Self {
        Self {
            load_start: load1(),
        }
    }

    /// The run's conditions as of now (its end).
    pub fn finish(&self, command: Option<String>) -> Run {
        Run {
            date: utc_minute(),
            command,
            load: [self.load_start.clone(), load1()],
            version: version(),
            host: Host::this(),
        }
    }
}

impl Run {
    /// `{"date", "load", "version"}` (the scaler's sections state the host apart).
    pub fn short_json(&self) -> Value {
        json!({"date": self.date, "load": self.load, "version": self.version})
    }

    /// `{"date", "command", "load", "version", "cpus", "kernel"}`.
    pub fn full_json(&self) -> Value {
        json!({
            "date": self.date, "command": self.command, "load": self.load,
            "version": self.version, "cpus": self.host.cpus, "kernel": self.host.kernel,
        })
    }
}

/// `VAR=value ` for each of `vars` set (not empty) in the environment, then `invoked_as`:
/// the command as run, with the knobs that were set.
pub fn command(vars: &[&str], invoked_as: &str) -> String {
    let mut out = String::new();
    for var in vars {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            out.push_str(&format!("{var}={v} "));
        }
    }
    out + invoked_as
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_and_now_read_as_the_scripts_read_them() {
        let h = Host::this();
        assert!(h.cpus >= 1);
        assert!(!h.kernel.is_empty());
        let d = utc_minute();
        assert_eq!(d.len(), "2026-12-03 09:52 UTC".len(), "{d}");
        assert!(d.ends_with(" UTC"));
        assert_eq!(local_date().len(), "2026-12-03".len());
        assert!(load1().is_some_and(|l| l.parse::<f64>().is_ok()));
    }

    #[test]
    fn a_run_is_stored_as_the_sections_store_it() {
        let run = Run {
            date: "2026-12-03 09:52 UTC".into(),
            command: None,
            load: [Some("1.5".into()), None],
            version: "abc1234".into(),
            host: Host {
                cpus: 2,
                kernel: "6.1".into(),
            },
        };
        assert_eq!(
            crate::py::dumps(&run.full_json()),
            r#"{"command": null, "cpus": 2, "date": "2026-12-03 09:52 UTC", "kernel": "6.1", "load": ["1.5", null], "version": "abc1234"}"#
        );
        assert_eq!(
            crate::py::dumps(&run.short_json()),
            r#"{"date": "2026-12-03 09:52 UTC", "load": ["1.5", null], "version": "abc1234"}"#
        );
        assert_eq!(
            command(&["TIDAL_BENCH_UNSET_FOR_TEST"], "scripts/x.sh"),
            "scripts/x.sh"
        );
    }
}
