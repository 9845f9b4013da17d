//! `tidal-agent`: the per-node sampler and exporter (also runnable as a sidecar).
//!
//! - [`samplers`]: one file per [`sampler::Sampler`]: [`samplers::node`] (`/proc`) and
//!   [`samplers::cgroup`] (pod and container cgroups, v1/v2/hybrid).
//! - [`pods`]: this node's pods from the API (watch), for labels, requests and limits.
//! - [`snapshot`]: the sampling loop and the snapshot it swaps atomically.
//! - [`server`]: `/metrics` (OpenMetrics or text 0.0.4), `/healthz`, `/readyz`.
//! - [`rate`]: counter rates with reset handling; [`buffer`]: what a sampler run produces.
//! - [`fdcache`]: held descriptors for the files and directories re-read every round.
//! - [`synthetic`]: synthetic kubelet cgroup trees for the benchmarks.
//!
//! `docs/agent.md` lists every series with its labels and formula.

pub mod buffer;
pub mod cli;
pub mod fdcache;
pub mod pods;
pub mod rate;
pub mod sampler;
pub mod samplers;
pub mod server;
pub mod snapshot;
pub mod synthetic;
