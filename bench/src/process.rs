//! What the agent benchmarks read of a process in `/proc`: CPU ticks, a thread by name, memory.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// utime + stime of a process or thread (`/proc/<pid>[/task/<tid>]/stat`), in clock ticks.
pub fn ticks(stat: &Path) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(stat).with_context(|| format!("reading {}", stat.display()))?;
    parse_ticks(&s).with_context(|| format!("{}: {s:?}", stat.display()))
}

/// utime + stime of a `stat` line: the 14th and 15th fields (the 12th and 13th after the
/// command's closing parenthesis).
pub fn parse_ticks(stat: &str) -> anyhow::Result<u64> {
    let after = stat.rsplit_once(')').context("comm")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when it cannot say).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The `stat` file of the thread of `pid` named `name`.
pub fn thread_stat(pid: u32, name: &str) -> anyhow::Result<PathBuf> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = t?.path();
        if std::fs::read_to_string(dir.join("comm"))?.trim() == name {
            return Ok(dir.join("stat"));
        }
    }
    anyhow::bail!("no '{name}' thread in process {pid}")
}

/// A `Key:   N kB` line of `/proc/<pid>/status`, in bytes (0 when it is not there).
pub fn status_bytes(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_utime_plus_stime_after_the_command() {
        let stat = "1234 (tidal (agent)) S 1 1234 1234 0 -1 4194560 3 0 0 0 250 75 0 0 20 0 8 0";
        assert_eq!(parse_ticks(stat).expect("a stat line"), 325);
        assert!(parse_ticks("1234 (x) S 1").is_err());
        let me = std::process::id();
        assert!(status_bytes(me, "VmRSS") > 0);
        assert_eq!(status_bytes(me, "NoSuchKey"), 0);
        assert!(ticks(Path::new(&format!("/proc/{me}/stat"))).is_ok());
        assert!(clock_ticks_per_second() > 0);
    }
}
