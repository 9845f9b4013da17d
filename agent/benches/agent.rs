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
use std::time::{Duration, Instant};

use criterion::Criterion;
use tidal_agent::buffer::Buffer;
use tidal_agent::sampler::Sampler;
use tidal_agent::samplers::node::NodeSampler;
use tidal_agent::server;
use tidal_agent::snapshot;
use tidal_agent::synthetic::{Layout, TempDir, steady_snapshot, warm_cgroup_sampler};

fn cgroup_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("cgroup_round");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    for (layout, name) in [(Layout::V2, "v2"), (Layout::V1, "v1")] {
        let dir = TempDir::new(name);
        let mut s = warm_cgroup_sampler(layout, &dir);
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
    let shared = steady_snapshot(warm_cgroup_sampler(Layout::V2, &dir));
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
