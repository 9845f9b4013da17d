//! Criterion benchmark of the scaler's fast path per node scrape (issue #13, "a compact fast
//! path"), at 1,000 containers on one node (100 pods x 10, [`tidal_agent::synthetic`], with pod
//! metadata and the node sampler over the real `/proc`, as the agent's own `encode` bench).
//!
//! One agent snapshot (two sampling rounds, so the CPU rates exist) is written both ways, as
//! the agent's server writes them: the `/metrics` text 0.0.4 the scaler asked for until now,
//! and the usage document (`/v1/usage`). Printed to stderr: the bytes of each and their ratio.
//! Measured: the scaler's CPU to turn each body, as received, into its per-pod usage (UTF-8
//! check, age, parse, ingest): `fast_path/metrics_text` and `fast_path/usage_document`. Both
//! are checked to give the same pods first.
//!
//! `cargo bench -p tidal-scaler --bench fast_path -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashMap;
use std::hint::black_box;

use criterion::Criterion;
use tidal_agent::synthetic::{Layout, TempDir, steady_snapshot, warm_cgroup_sampler};
use tidal_scaler::sources::agents;
use tidal_scaler::sources::{PodKey, PodUsage};

/// The `/metrics` path: what `AgentSource` does with a text body.
fn from_metrics(body: &[u8]) -> HashMap<PodKey, PodUsage> {
    let text = std::str::from_utf8(body).unwrap_or_default();
    let age = agents::snapshot_age(text).unwrap_or(f64::NAN);
    let mut pods = HashMap::new();
    if let Err(e) = agents::ingest(text, 1_000.0 - age, &mut pods) {
        panic!("{e}");
    }
    pods
}

/// The usage-document path.
fn from_usage(body: &[u8]) -> HashMap<PodKey, PodUsage> {
    let text = std::str::from_utf8(body).unwrap_or_default();
    let doc = match agents::parse_usage(text) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let age = agents::usage_age(&doc).unwrap_or(f64::NAN);
    let mut pods = HashMap::new();
    agents::ingest_usage(doc, 1_000.0 - age, &mut pods);
    pods
}

fn fast_path(c: &mut Criterion) {
    let dir = TempDir::new("fast-path");
    let shared = steady_snapshot(warm_cgroup_sampler(Layout::V2, &dir));
    let snap = shared.load();
    let series: usize = snap.families.values().map(|f| f.samples.len()).sum();
    // As the server writes them: the cached body and the per-request part.
    let metrics: Vec<u8> = [shared.body(false), shared.tail(false)].concat();
    let usage: Vec<u8> = [
        shared.usage_head(),
        shared.usage_body(),
        tidal_core::usage::USAGE_TAIL.as_bytes().to_vec().into(),
    ]
    .concat();

    // The same pods either way (the ages differ by the moment between the two bodies).
    let (a, b) = (from_metrics(&metrics), from_usage(&usage));
    let containers: usize = a.values().map(|p| p.containers.len()).sum();
    assert_eq!(a.len(), b.len());
    for (k, p) in &a {
        assert_eq!(p.containers, b[k].containers, "{k:?}");
    }
    eprintln!(
        "fast_path: {series} series in the snapshot, {} pods, {containers} containers read\n\
         fast_path/bytes: /metrics (text 0.0.4) {} B, /v1/usage {} B, ratio {:.4}",
        a.len(),
        metrics.len(),
        usage.len(),
        usage.len() as f64 / metrics.len() as f64
    );

    let mut g = c.benchmark_group("fast_path");
    g.sample_size(30);
    g.bench_function("metrics_text", |bch| {
        bch.iter(|| black_box(from_metrics(black_box(&metrics)).len()))
    });
    g.bench_function("usage_document", |bch| {
        bch.iter(|| black_box(from_usage(black_box(&usage)).len()))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    fast_path(&mut c);
    c.final_summary();
}
