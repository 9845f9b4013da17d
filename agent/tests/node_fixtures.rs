//! A fixture `/proc` tree for the node sampler, with exact assertions, plus bad input.

mod common;

use std::time::{Duration, Instant};

use common::TempDir;
use tidal_agent::buffer::Buffer;
use tidal_agent::sampler::Sampler;
use tidal_agent::samplers::node::NodeSampler;
use tidal_core::schema as s;

/// USER_HZ: 100 on every Linux architecture the agent targets.
const HZ: f64 = 100.0;

fn stat(user: u64, idle: u64) -> String {
    // user nice system idle iowait irq softirq steal guest guest_nice
    format!(
        "cpu  {} 0 {} {} 10 0 0 0 0 0\ncpu0 {user} 0 50 {idle} 10 0 0 0 0 0\ncpu1 {user} 0 50 {idle} 0 0 0 0 0 0\nintr 1\nctxt 100\nbtime 1700000000\nprocesses 10\nprocs_running 1\nprocs_blocked 0\n",
        user * 2,
        100,
        idle * 2,
    )
}

fn proc_tree() -> TempDir {
    let t = TempDir::new("proc");
    t.write("stat", &stat(1000, 3000));
    t.write("loadavg", "0.63 2.58 1.99 1/123 4567\n");
    t.write("meminfo", common::MEMINFO);
    t.write("pressure/cpu", "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    t.write("pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n");
    t.write("pressure/io", "some avg10=0.00 avg60=0.00 avg300=0.00 total=3000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=2000000\n");
    t
}

fn v(buf: &Buffer, name: &str, want: &[(&str, &str)]) -> f64 {
    buf.value(name, want)
        .unwrap_or_else(|| panic!("no {name} {want:?}"))
}

#[test]
fn node_values_are_exact_and_utilization_is_a_rate() {
    let t = proc_tree();
    let mut n = NodeSampler::new(t.path());
    let t0 = Instant::now();
    let mut buf = Buffer::new(t0);
    n.sample(&mut buf).expect("samples");
    assert!(buf.errors().is_empty(), "{:?}", buf.errors());
    assert_eq!(
        v(
            &buf,
            s::NODE_CPU_SECONDS_TOTAL,
            &[("cpu", "0"), ("mode", "user")]
        ),
        1000.0 / HZ
    );
    assert_eq!(
        v(
            &buf,
            s::NODE_CPU_SECONDS_TOTAL,
            &[("cpu", "1"), ("mode", "idle")]
        ),
        3000.0 / HZ
    );
    assert_eq!(
        v(
            &buf,
            s::NODE_CPU_SECONDS_TOTAL,
            &[("cpu", "0"), ("mode", "iowait")]
        ),
        10.0 / HZ
    );
    assert_eq!(
        buf.families()[s::NODE_CPU_SECONDS_TOTAL].samples.len(),
        16,
        "2 cpus x 8 modes"
    );
    assert_eq!(v(&buf, s::NODE_LOAD1, &[]), 0.63);
    assert_eq!(v(&buf, s::NODE_LOAD5, &[]), 2.58);
    assert_eq!(v(&buf, s::NODE_LOAD15, &[]), 1.99);
    assert_eq!(
        v(&buf, s::AGENT_NODE_MEMORY_TOTAL, &[]),
        16_000_000.0 * 1024.0
    );
    assert_eq!(
        v(&buf, s::AGENT_NODE_MEMORY_AVAILABLE, &[]),
        4_000_000.0 * 1024.0
    );
    assert_eq!(
        v(&buf, s::AGENT_NODE_MEMORY_USED, &[]),
        12_000_000.0 * 1024.0
    );
    assert_eq!(v(&buf, s::AGENT_NODE_MEMORY_UTILIZATION, &[]), 0.75);
    assert_eq!(v(&buf, s::NODE_PRESSURE_CPU_WAITING, &[]), 2.5);
    assert_eq!(v(&buf, s::NODE_PRESSURE_MEMORY_STALLED, &[]), 0.5);
    assert_eq!(v(&buf, s::NODE_PRESSURE_IO_STALLED, &[]), 2.0);
    assert_eq!(
        buf.value(s::AGENT_NODE_CPU_UTILIZATION, &[]),
        None,
        "no rate on the first sample"
    );

    // Per CPU +100 user ticks and +300 idle ticks: busy 200 of 800 ticks = 0.25.
    t.write("stat", &stat(1100, 3300));
    let mut buf = Buffer::new(t0 + Duration::from_secs(4));
    n.sample(&mut buf).expect("samples");
    assert_eq!(v(&buf, s::AGENT_NODE_CPU_UTILIZATION, &[]), 0.25);

    // Counter reset (fresh /proc after a checkpoint restore, say): skipped, not negative.
    t.write("stat", &stat(10, 30));
    let mut buf = Buffer::new(t0 + Duration::from_secs(5));
    n.sample(&mut buf).expect("samples");
    assert_eq!(buf.value(s::AGENT_NODE_CPU_UTILIZATION, &[]), None);
}

#[test]
fn missing_and_garbage_files_fail_only_their_series() {
    let t = proc_tree();
    std::fs::remove_file(t.path().join("meminfo")).expect("rm");
    t.write("loadavg", "not a load average\n");
    std::fs::remove_file(t.path().join("pressure/io")).expect("rm");
    let mut n = NodeSampler::new(t.path());
    let mut buf = Buffer::new(Instant::now());
    let err = n
        .sample(&mut buf)
        .expect_err("loadavg and meminfo are required");
    assert_eq!(err.reason(), "parse", "{err}");
    assert_eq!(buf.errors(), ["pressure_missing"]);
    // CPU and the other pressure files still made it.
    assert_eq!(
        v(
            &buf,
            s::NODE_CPU_SECONDS_TOTAL,
            &[("cpu", "0"), ("mode", "user")]
        ),
        10.0
    );
    assert_eq!(v(&buf, s::NODE_PRESSURE_CPU_WAITING, &[]), 2.5);
    assert_eq!(buf.value(s::AGENT_NODE_MEMORY_TOTAL, &[]), None);

    let empty = TempDir::new("proc-empty");
    let mut n = NodeSampler::new(empty.path());
    let mut buf = Buffer::new(Instant::now());
    let err = n.sample(&mut buf).expect_err("nothing to read");
    assert_eq!(err.reason(), "missing", "{err}");
    assert!(buf.families().is_empty());
}

#[test]
fn real_proc_is_readable() {
    let mut n = NodeSampler::new("/proc");
    let mut buf = Buffer::new(Instant::now());
    n.sample(&mut buf).expect("this machine's /proc");
    assert!(v(&buf, s::AGENT_NODE_MEMORY_TOTAL, &[]) > 0.0);
    assert!(!buf.families()[s::NODE_CPU_SECONDS_TOTAL].samples.is_empty());
}
