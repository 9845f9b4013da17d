//! Criterion benchmarks of the agent's hot paths (issue #3), on the scenario of the issue:
//! 1,000 containers on 100 pods ([`tidal_agent::synthetic`]), with pod metadata, so every
//! request/limit series is produced as on a real node.
//!
//! - `cgroup_round/{v2,v1}`: one pass of the cgroup sampler over the synthetic tree (written
//!   into a temp dir, `/dev/shm` by default, removed at the end).
//! - `node_round/proc`: one pass of the node sampler over the real `/proc`.
//! - `encode/{openmetrics,text_0.0.4}`: encoding one `/metrics` body for the snapshot of
//!   node + cgroup (v2) samplers: what the first scrape of each snapshot costs (the server
//!   keeps the bytes and serves them to later scrapes of the same snapshot).
//!
//! `scripts/bench.sh` runs these and reads the medians from `target/criterion`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tidal_agent::buffer::Buffer;
use tidal_agent::sampler::Sampler;
use tidal_agent::samplers::cgroup::{CgroupSampler, Hierarchy, Scope};
use tidal_agent::samplers::node::NodeSampler;
use tidal_agent::server;
use tidal_agent::snapshot::{self, Runner, Shared};
use tidal_agent::synthetic::{Layout, TreeSpec, pod_index, write_tree};

/// A temp dir removed on drop (also when a bench panics).
struct TempDir(PathBuf);

impl TempDir {
    /// Under `$TIDAL_BENCH_DIR`, else `/dev/shm` (tmpfs, in memory like cgroupfs, and quick
    /// to fill), else the system temp dir.
    fn new(name: &str) -> Self {
        let base = std::env::var_os("TIDAL_BENCH_DIR")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
            .unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self(base.join(format!("tidal-bench-{name}-{}-{nanos}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cgroup sampler over a fresh synthetic tree of the issue's size, already run once (so
/// the rate state is warm, as in steady state).
fn cgroup_sampler(layout: Layout, dir: &TempDir) -> CgroupSampler {
    let started = Instant::now();
    let metas = match write_tree(&dir.0, &TreeSpec::issue3(layout)) {
        Ok(m) => m,
        Err(e) => panic!("writing the synthetic tree under {}: {e}", dir.0.display()),
    };
    eprintln!(
        "synthetic {layout:?} tree of 100 pods x 10 containers written in {:.1?}",
        started.elapsed()
    );
    let h = match Hierarchy::detect(&dir.0) {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    };
    let mut s = CgroupSampler::new(h, Scope::Node, pod_index(metas));
    let mut buf = Buffer::new(Instant::now());
    if let Err(e) = s.sample(&mut buf) {
        panic!("{e}");
    }
    assert!(buf.errors().is_empty(), "{:?}", buf.errors());
    s
}

fn cgroup_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("cgroup_round");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    for (layout, name) in [(Layout::V2, "v2"), (Layout::V1, "v1")] {
        let dir = TempDir::new(name);
        let mut s = cgroup_sampler(layout, &dir);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut buf = Buffer::new(Instant::now());
                let r = s.sample(&mut buf);
                black_box((r.is_ok(), buf))
            })
        });
    }
    g.finish();
}

fn node_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("node_round");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut s = NodeSampler::new("/proc");
    g.bench_function("proc", |b| {
        b.iter(|| {
            let mut buf = Buffer::new(Instant::now());
            let r = s.sample(&mut buf);
            black_box((r.is_ok(), buf))
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let dir = TempDir::new("encode");
    let cgroup = cgroup_sampler(Layout::V2, &dir);
    let shared = Shared::default();
    let mut runner = Runner::new(
        vec![Box::new(NodeSampler::new("/proc")), Box::new(cgroup)],
        None,
        shared.clone(),
    );
    // Two passes, so the rate series exist too.
    runner.run_once(Instant::now());
    std::thread::sleep(Duration::from_millis(20));
    runner.run_once(Instant::now());
    let series: usize = shared
        .load()
        .families
        .values()
        .map(|f| f.samples.len())
        .sum();

    let mut g = c.benchmark_group("encode");
    g.sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, accept) in [
        ("openmetrics", "application/openmetrics-text;version=1.0.0"),
        ("text_0.0.4", "text/plain;version=0.0.4"),
    ] {
        let req = match http::Request::get("/metrics")
            .header(http::header::ACCEPT, accept)
            .body(())
        {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let resp = server::handle(&shared, &req);
        eprintln!(
            "encode/{name}: {series} series in the snapshot, status {}",
            resp.status()
        );
        let snap = shared.load();
        let hint = shared.body_size_hint();
        let om = name == "openmetrics";
        g.bench_function(name, |b| {
            b.iter(|| black_box(snapshot::encode_body(&snap, om, hint).len()))
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    cgroup_round(&mut c);
    node_round(&mut c);
    encode(&mut c);
    c.final_summary();
}
