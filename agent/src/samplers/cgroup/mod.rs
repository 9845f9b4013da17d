//! The cgroup sampler: CPU, throttling, memory and pressure of every pod and container on
//! the node (or, in sidecar mode, of the agent's own pod), with kubelet/cAdvisor semantics.
//!
//! **Hierarchies.** [`Hierarchy::detect`] looks at `--cgroup-root` once, at start:
//! - v2 (unified): `<root>/cgroup.controllers` exists.
//! - v1: `<root>/{cpu,cpuacct,cpu,cpuacct,memory}` controller directories.
//! - hybrid: v1 plus a cgroup2 mount at `<root>/unified`, read only for pressure (PSI).
//!
//! **Pod layout.** Both kubelet cgroup drivers and the three runtimes' naming are recognised:
//! - cgroupfs: `kubepods/{burstable,besteffort}/pod<uid>/<id>`, guaranteed `kubepods/pod<uid>/<id>`;
//! - systemd: `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/<scope>`,
//!   guaranteed `kubepods.slice/kubepods-pod<uid_>.slice/<scope>`, where `<scope>` is
//!   `cri-containerd-<id>.scope`, `crio-<id>.scope` or `docker-<id>.scope`.
//!
//! **Formulas** (anchors: kubelet `/metrics/resource`, cAdvisor):
//! - CPU seconds: v2 `cpu.stat usage_usec / 1e6`; v1 `cpuacct.usage / 1e9`.
//! - Throttling: v2 `cpu.stat nr_periods, nr_throttled, throttled_usec / 1e6`;
//!   v1 `cpu.stat nr_periods, nr_throttled, throttled_time / 1e9`.
//! - Working set: `max(0, usage - inactive_file)`: v2 `memory.current - memory.stat inactive_file`,
//!   v1 `memory.usage_in_bytes - memory.stat total_inactive_file`.
//! - RSS / cache: v2 `anon` / `file`; v1 `total_rss` / `total_cache`.
//! - Pressure: `total=` (µs) of the `some`/`full` lines of `{cpu,memory,io}.pressure`.
//! - Cadence: counters and memory every round; limits and pressure every
//!   [`SLOW_EVERY_ROUNDS`] rounds per cgroup (staggered), cached in between.
//! - CPU rate: Δusage / Δt between two samples (a counter reset skips the interval).
//! - Utilization: rate / request, rate / limit, working set / request, working set / limit.
//!   Limits come from the pod spec, else from the cgroup (`cpu.max`, `cpu.cfs_quota_us /
//!   cpu.cfs_period_us`, `memory.max`, `memory.limit_in_bytes`).
//!
//! Pod-level series carry `container=""`, as cAdvisor's do. A container that vanishes between
//! listing and reading is counted in `tidal_agent_sample_errors_total{reason="vanished"}` and
//! skipped; it never fails the run.
//!
//! **Cost.** The cgroups found are kept from round to round: the files read every round stay
//! open and are re-read with `pread`, and directories are listed again only after an inotify
//! event on them ([`crate::fdcache`]; `docs/agent.md`, "How the cgroup pass stays cheap").
//!
//! **Layout.** `hierarchy.rs`: v1/v2/hybrid detection and the per-hierarchy paths of a cgroup;
//! `discover.rs`: pod and container cgroups (directory names, the kubepods tree, the agent's
//! own cgroup); `parse.rs`: the interface files' formats and numbers; `read.rs`: reading one
//! cgroup's files (held open, re-read with `pread`); `series.rs`: the series table and what one
//! cgroup emits; `sampler.rs`: [`CgroupSampler`], which keeps the cgroups from round to round;
//! `error.rs`: [`CgroupError`].

mod discover;
mod error;
mod hierarchy;
mod parse;
mod read;
mod sampler;
mod series;

pub use discover::{
    ContainerCgroup, KUBEPODS_ROOTS, PodCgroup, Qos, discover, parse_container_dir, parse_pod_dir,
    self_cgroup,
};
pub use error::CgroupError;
pub use hierarchy::{CgroupPaths, Hierarchy, Mode};
pub use parse::{Flat, parse_cpu_max, parse_pressure, scan_flat};
pub use read::{Stats, read_stats};
pub use sampler::{CgroupSampler, DEFAULT_MAX_OPEN_FILES, SLOW_EVERY_ROUNDS, Scope};
