//! The agent's cgroup parsers (`tidal_agent::samplers::cgroup`): pod and container directory
//! names (`parse_pod_dir`, `parse_container_dir`), PSI files (`parse_pressure`), flat-keyed
//! files (`Flat` and the allocation-free `scan_flat`, differentially), `cpu.max`
//! (`parse_cpu_max`), `/proc/self/cgroup` (`self_cgroup`), and a whole v2 cgroup read through
//! `read_stats` from files written with the input.
//!
//! Checks: nothing panics on arbitrary file contents; directory names give only well-formed
//! ids; `Flat` and `scan_flat` find the same value for every key; every statistic read is
//! finite and non-negative, and the working set is at most the usage.
#![no_main]

use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tidal_agent::samplers::cgroup::{
    Flat, Hierarchy, CgroupPaths, parse_container_dir, parse_cpu_max, parse_pod_dir, parse_pressure,
    read_stats, scan_flat, self_cgroup,
};

#[derive(Arbitrary, Debug)]
struct Case {
    name: String,
    text: String,
    /// The v2 interface files (`None`: absent).
    cpu_stat: Option<String>,
    memory_current: Option<String>,
    memory_stat: Option<String>,
    cpu_max: Option<String>,
    memory_max: Option<String>,
    pressure: [Option<String>; 3],
    self_cgroup: Option<String>,
}

const KEYS: [&str; 7] = [
    "usage_usec",
    "nr_periods",
    "nr_throttled",
    "throttled_usec",
    "inactive_file",
    "anon",
    "file",
];

fn ok_value(v: f64) {
    assert!(v.is_finite() && v >= 0.0, "value {v}");
}

/// A directory of this process's own (the fuzzer may run several processes).
fn dir() -> PathBuf {
    std::env::temp_dir().join(format!("tidal-fuzz-cgroup-{}", std::process::id()))
}

fn write(root: &Path, name: &str, text: &Option<String>) {
    let path = root.join(name);
    match text {
        Some(t) => std::fs::write(&path, t).expect("write"),
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn v2(c: &Case) {
    let root = dir();
    let pod = root.join("pod");
    std::fs::create_dir_all(&pod).expect("mkdir");
    std::fs::create_dir_all(root.join("self")).expect("mkdir");
    write(&root, "cgroup.controllers", &Some("cpu memory io".into()));
    write(&pod, "cpu.stat", &c.cpu_stat);
    write(&pod, "memory.current", &c.memory_current);
    write(&pod, "memory.stat", &c.memory_stat);
    write(&pod, "cpu.max", &c.cpu_max);
    write(&pod, "memory.max", &c.memory_max);
    for (name, text) in ["cpu.pressure", "memory.pressure", "io.pressure"]
        .iter()
        .zip(&c.pressure)
    {
        write(&pod, name, text);
    }
    write(&root.join("self"), "cgroup", &c.self_cgroup);
    let h = Hierarchy::detect(&root).expect("v2");
    if let Ok(s) = read_stats(&h, &CgroupPaths::same(Path::new("pod"))) {
        for v in [
            s.cpu_usage_seconds,
            s.memory_usage_bytes,
            s.memory_working_set_bytes,
            s.memory_rss_bytes,
            s.memory_cache_bytes,
        ] {
            ok_value(v);
        }
        for v in [
            s.cfs_periods,
            s.cfs_throttled_periods,
            s.cfs_throttled_seconds,
        ] {
            v.map(ok_value);
        }
        for v in [s.cpu_limit_cores, s.memory_limit_bytes] {
            v.map(ok_value);
        }
        s.pressure.iter().flatten().copied().for_each(ok_value);
        assert!(s.memory_working_set_bytes <= s.memory_usage_bytes);
    }
    let _ = self_cgroup(&root, &h);
}

fuzz_target!(|c: Case| {
    if let Some(uid) = parse_pod_dir(&c.name) {
        assert!(!uid.is_empty());
    }
    if let Some(id) = parse_container_dir(&c.name) {
        assert!(
            id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id:?}"
        );
    }
    let path = Path::new("/sys/fs/cgroup/x");
    if let Ok((some, full)) = parse_pressure(path, &c.text) {
        some.map(ok_value);
        full.map(ok_value);
    }
    if let Ok(Some(v)) = parse_cpu_max(path, &c.text) {
        ok_value(v);
    }
    // `scan_flat` finds the lines `Flat` finds.
    let flat = Flat::parse(path, &c.text);
    let scanned = scan_flat(&c.text, KEYS);
    for (k, s) in KEYS.iter().zip(scanned) {
        let want = flat.opt(k).ok().flatten();
        let got = s
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|v| v as f64);
        assert_eq!(want, got, "key {k:?} in {:?}", c.text);
    }
    v2(&c);
});
