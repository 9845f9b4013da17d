//! Synthetic kubelet cgroup trees, for benchmarks (`agent/benches/agent.rs`,
//! `scaler/benches/fast_path.rs`, `scripts/bench.sh`).
//!
//! [`write_tree`] lays out `pods × containers_per_pod` container cgroups the way a node looks:
//! - [`Layout::V2`]: systemd driver, containerd naming
//!   (`kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/cri-containerd-<id>.scope`),
//!   with the interface files a 6.x kernel has (full-length `memory.stat`, PSI files, and the
//!   files the agent does not read, so directory listings cost what they cost on a host);
//! - [`Layout::V1`]: cgroupfs driver (`{cpu,cpuacct,memory}/kubepods/<qos>/pod<uid>/<id>`).
//!
//! Pods cycle through Guaranteed, Burstable and BestEffort. The first container cgroup of each
//! pod stands for the sandbox (pause) container: it has no entry in the pod metadata that
//! [`write_tree`] returns, as on a real node. Values are deterministic per (pod, container).

use std::io;
use std::path::{Path, PathBuf};

use crate::buffer::Buffer;
use crate::pods::{ContainerMeta, PodMeta, PodMetaByUid};
use crate::sampler::Sampler;
use crate::samplers::cgroup::{CgroupSampler, Hierarchy, Scope};
use crate::samplers::node::NodeSampler;
use crate::snapshot::{Runner, Shared};

/// Which cgroup version (and kubelet driver) to lay out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2, systemd driver, containerd.
    V2,
    /// cgroup v1, cgroupfs driver, containerd.
    V1,
}

/// The size and layout of a synthetic node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeSpec {
    pub pods: usize,
    /// Container cgroups per pod, the sandbox included.
    pub containers_per_pod: usize,
    pub layout: Layout,
}

impl TreeSpec {
    /// The issue #3 scenario: 1,000 containers on 100 pods.
    pub fn issue3(layout: Layout) -> Self {
        Self {
            pods: 100,
            containers_per_pod: 10,
            layout,
        }
    }
}

/// A deterministic 64-bit mix (splitmix64), so IDs and values look random but are stable.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The UID of pod `i`.
pub fn pod_uid(i: usize) -> String {
    let h = mix(i as u64);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 12) & 0xfff,
        mix(h) & 0xffff_ffff_ffff
    )
}

/// The 64-hex-digit runtime ID of container `j` of pod `i`.
pub fn container_id(i: usize, j: usize) -> String {
    let seed = ((i as u64) << 20) | j as u64;
    (0..4u64)
        .map(|k| format!("{:016x}", mix(seed.wrapping_mul(4).wrapping_add(k))))
        .collect()
}

fn qos_of(i: usize) -> &'static str {
    ["Guaranteed", "Burstable", "BestEffort"][i % 3]
}

fn psi(some_us: u64, full_us: u64) -> String {
    format!(
        "some avg10=0.12 avg60=0.08 avg300=0.02 total={some_us}\nfull avg10=0.00 avg60=0.01 avg300=0.00 total={full_us}\n"
    )
}

/// Interface files a v2 cgroup has that the agent does not read (listed, never opened).
const V2_OTHER_FILES: [(&str, &str); 30] = [
    (
        "cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    ),
    ("cgroup.events", "populated 1\nfrozen 0\n"),
    ("cgroup.freeze", "0\n"),
    ("cgroup.kill", ""),
    ("cgroup.max.depth", "max\n"),
    ("cgroup.max.descendants", "max\n"),
    ("cgroup.procs", "4242\n"),
    ("cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0\n"),
    ("cgroup.subtree_control", ""),
    ("cgroup.threads", "4242\n"),
    ("cgroup.type", "domain\n"),
    ("cpu.idle", "0\n"),
    ("cpu.max.burst", "0\n"),
    ("cpu.weight", "79\n"),
    ("cpu.weight.nice", "1\n"),
    ("io.max", ""),
    (
        "io.stat",
        "254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
    ),
    ("io.weight", "default 100\n"),
    (
        "memory.events",
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    ),
    (
        "memory.events.local",
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    ),
    ("memory.high", "max\n"),
    ("memory.low", "0\n"),
    ("memory.min", "0\n"),
    ("memory.numa_stat", "anon N0=1048576\nfile N0=2097152\n"),
    ("memory.oom.group", "1\n"),
    ("memory.swap.current", "0\n"),
    ("memory.swap.max", "max\n"),
    ("pids.current", "7\n"),
    ("pids.max", "max\n"),
    ("pids.events", "max 0\n"),
];

/// Per-cgroup numbers derived from a seed.
struct Values {
    usage_usec: u64,
    anon: u64,
    file: u64,
    inactive_file: u64,
    current: u64,
    periods: u64,
    throttled: u64,
}

impl Values {
    fn new(seed: u64) -> Self {
        let h = mix(seed);
        let anon = 16 << 20 | (h & 0xfff_ffff);
        let file = 4 << 20 | (mix(h) & 0x3ff_ffff);
        let inactive_file = file / 3;
        let periods = 1000 + (h >> 40);
        Self {
            usage_usec: 1_000_000 + (h >> 24),
            anon,
            file,
            inactive_file,
            current: anon + file + 262_144,
            periods,
            throttled: periods / 20,
        }
    }
}

fn write(path: &Path, contents: &str) -> io::Result<()> {
    std::fs::write(path, contents)
}

fn v2_cgroup(dir: &Path, v: &Values, cpu_max: &str, memory_max: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, contents) in V2_OTHER_FILES {
        write(&dir.join(name), contents)?;
    }
    write(
        &dir.join("cpu.stat"),
        &format!(
            "usage_usec {}\nuser_usec {}\nsystem_usec {}\ncore_sched.force_idle_usec 0\nnr_periods {}\nnr_throttled {}\nthrottled_usec {}\nnr_bursts 0\nburst_usec 0\n",
            v.usage_usec,
            v.usage_usec * 3 / 4,
            v.usage_usec / 4,
            v.periods,
            v.throttled,
            v.throttled * 4_200
        ),
    )?;
    write(&dir.join("memory.current"), &format!("{}\n", v.current))?;
    let (a, f) = (v.anon, v.file);
    write(
        &dir.join("memory.stat"),
        &format!(
            "anon {a}\nfile {f}\nkernel 262144\nkernel_stack 32768\npagetables 69632\nsec_pagetables 0\npercpu 4416\nsock 0\nvmalloc 0\nshmem 0\nzswap 0\nzswapped 0\nfile_mapped {}\nfile_dirty 0\nfile_writeback 0\nswapcached 0\nanon_thp 0\nfile_thp 0\nshmem_thp 0\ninactive_anon {a}\nactive_anon 4096\ninactive_file {}\nactive_file {}\nunevictable 0\nslab_reclaimable 98304\nslab_unreclaimable 65536\nslab 163840\nworkingset_refault_anon 0\nworkingset_refault_file 12\nworkingset_activate_anon 0\nworkingset_activate_file 3\nworkingset_restore_anon 0\nworkingset_restore_file 0\nworkingset_nodereclaim 0\npgscan 0\npgsteal 0\npgscan_kswapd 0\npgscan_direct 0\npgscan_khugepaged 0\npgsteal_kswapd 0\npgsteal_direct 0\npgsteal_khugepaged 0\npgfault 48213\npgmajfault 17\npgrefill 0\npgactivate 311\npgdeactivate 0\npglazyfree 0\npglazyfreed 0\nzswpin 0\nzswpout 0\nzswpwb 0\nthp_fault_alloc 0\nthp_collapse_alloc 0\nthp_swpout 0\nthp_swpout_fallback 0\n",
            f / 2,
            v.inactive_file,
            f - v.inactive_file
        ),
    )?;
    write(&dir.join("cpu.max"), cpu_max)?;
    write(&dir.join("memory.max"), memory_max)?;
    write(&dir.join("cpu.pressure"), &psi(v.usage_usec / 50, 0))?;
    write(&dir.join("memory.pressure"), &psi(1_500, 700))?;
    write(&dir.join("io.pressure"), &psi(9_000, 8_000))
}

fn v1_cgroup(root: &Path, rel: &Path, v: &Values, quota: &str, limit: &str) -> io::Result<()> {
    let cpu = root.join("cpu,cpuacct").join(rel);
    std::fs::create_dir_all(&cpu)?;
    write(&cpu.join("cgroup.procs"), "4242\n")?;
    write(&cpu.join("tasks"), "4242\n")?;
    write(&cpu.join("cpu.shares"), "102\n")?;
    write(
        &cpu.join("cpu.stat"),
        &format!(
            "nr_periods {}\nnr_throttled {}\nthrottled_time {}\n",
            v.periods,
            v.throttled,
            v.throttled * 4_200_000
        ),
    )?;
    write(&cpu.join("cpu.cfs_quota_us"), quota)?;
    write(&cpu.join("cpu.cfs_period_us"), "100000\n")?;
    write(
        &cpu.join("cpuacct.usage"),
        &format!("{}\n", v.usage_usec * 1000),
    )?;
    write(
        &cpu.join("cpuacct.stat"),
        &format!(
            "user {}\nsystem {}\n",
            v.usage_usec / 13_333,
            v.usage_usec / 40_000
        ),
    )?;
    let mem = root.join("memory").join(rel);
    std::fs::create_dir_all(&mem)?;
    write(&mem.join("cgroup.procs"), "4242\n")?;
    write(&mem.join("tasks"), "4242\n")?;
    write(
        &mem.join("memory.usage_in_bytes"),
        &format!("{}\n", v.current),
    )?;
    write(
        &mem.join("memory.max_usage_in_bytes"),
        &format!("{}\n", v.current * 2),
    )?;
    write(&mem.join("memory.limit_in_bytes"), limit)?;
    write(&mem.join("memory.failcnt"), "0\n")?;
    let (a, f, i) = (v.anon, v.file, v.inactive_file);
    write(
        &mem.join("memory.stat"),
        &format!(
            "cache {f}\nrss {a}\nrss_huge 0\nshmem 0\nmapped_file {}\ndirty 0\nwriteback 0\nswap 0\npgpgin 48213\npgpgout 31000\npgfault 48213\npgmajfault 17\ninactive_anon {a}\nactive_anon 4096\ninactive_file {i}\nactive_file {}\nunevictable 0\nhierarchical_memory_limit 9223372036854771712\nhierarchical_memsw_limit 9223372036854771712\ntotal_cache {f}\ntotal_rss {a}\ntotal_rss_huge 0\ntotal_shmem 0\ntotal_mapped_file {}\ntotal_dirty 0\ntotal_writeback 0\ntotal_swap 0\ntotal_pgpgin 48213\ntotal_pgpgout 31000\ntotal_pgfault 48213\ntotal_pgmajfault 17\ntotal_inactive_anon {a}\ntotal_active_anon 4096\ntotal_inactive_file {i}\ntotal_active_file {}\ntotal_unevictable 0\n",
            f / 2,
            f - i,
            f / 2,
            f - i
        ),
    )
}

/// A temp dir for a tree, removed on drop (also when a benchmark panics): under
/// `$TIDAL_BENCH_DIR`, else `/dev/shm` (tmpfs, in memory like cgroupfs, and quick to fill),
/// else the system temp dir.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, not yet created, directory whose name has `name`, the process id and the time.
    pub fn new(name: &str) -> Self {
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

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cgroup sampler over a fresh tree of the issue's size ([`TreeSpec::issue3`]) written
/// under `dir`, already run once (so the rate state is warm, as in steady state). Panics on
/// any error: for benchmarks.
pub fn warm_cgroup_sampler(layout: Layout, dir: &TempDir) -> CgroupSampler {
    let started = std::time::Instant::now();
    let metas = match write_tree(dir.path(), &TreeSpec::issue3(layout)) {
        Ok(m) => m,
        Err(e) => panic!(
            "writing the synthetic tree under {}: {e}",
            dir.path().display()
        ),
    };
    eprintln!(
        "synthetic {layout:?} tree of 100 pods x 10 containers written in {:.1?}",
        started.elapsed()
    );
    let h = match Hierarchy::detect(dir.path()) {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    };
    let mut s = CgroupSampler::new(h, Scope::Node, pod_meta_by_uid(metas));
    let mut buf = Buffer::new(std::time::Instant::now());
    if let Err(e) = s.sample(&mut buf) {
        panic!("{e}");
    }
    assert!(buf.errors().is_empty(), "{:?}", buf.errors());
    s
}

/// What an agent with the node sampler (over the real `/proc`) and `cgroup` publishes in
/// steady state: two rounds 20 ms apart, so the rate series exist too.
pub fn steady_snapshot(cgroup: CgroupSampler) -> Shared {
    let shared = Shared::default();
    let mut runner = Runner::new(
        vec![Box::new(NodeSampler::new("/proc")), Box::new(cgroup)],
        None,
        shared.clone(),
    );
    runner.run_once(std::time::Instant::now());
    std::thread::sleep(std::time::Duration::from_millis(20));
    runner.run_once(std::time::Instant::now());
    shared
}

/// Writes the tree under `root` (which should be empty) and returns the pods' metadata, as
/// the pod watch would see it (names, container IDs, requests and limits).
pub fn write_tree(root: &Path, spec: &TreeSpec) -> io::Result<Vec<PodMeta>> {
    std::fs::create_dir_all(root)?;
    match spec.layout {
        Layout::V2 => {
            write(
                &root.join("cgroup.controllers"),
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            )?;
            std::fs::create_dir_all(root.join("system.slice/containerd.service"))?;
        }
        Layout::V1 => {
            for c in ["cpu,cpuacct", "memory"] {
                std::fs::create_dir_all(root.join(c).join("system.slice"))?;
            }
        }
    }
    let mut metas = Vec::with_capacity(spec.pods);
    for i in 0..spec.pods {
        let uid = pod_uid(i);
        let qos = qos_of(i);
        let pod_rel: PathBuf = match (spec.layout, qos) {
            (Layout::V2, "Guaranteed") => {
                format!("kubepods.slice/kubepods-pod{}.slice", uid.replace('-', "_")).into()
            }
            (Layout::V2, q) => {
                let q = q.to_lowercase();
                format!(
                    "kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{}.slice",
                    uid.replace('-', "_")
                )
                .into()
            }
            (Layout::V1, "Guaranteed") => format!("kubepods/pod{uid}").into(),
            (Layout::V1, q) => format!("kubepods/{}/pod{uid}", q.to_lowercase()).into(),
        };
        let guaranteed = qos == "Guaranteed";
        let (cpu_max, quota, mem_max) = if guaranteed {
            ("50000 100000\n", "50000\n", "268435456\n")
        } else {
            ("max 100000\n", "-1\n", "max\n")
        };
        let v1_mem_max = if guaranteed {
            "268435456\n"
        } else {
            "9223372036854771712\n"
        };
        let pod_vals = Values::new((i as u64) << 20 | 0xfffff);
        match spec.layout {
            Layout::V2 => v2_cgroup(&root.join(&pod_rel), &pod_vals, cpu_max, mem_max)?,
            Layout::V1 => v1_cgroup(root, &pod_rel, &pod_vals, quota, v1_mem_max)?,
        }
        let mut containers = Vec::new();
        for j in 0..spec.containers_per_pod {
            let id = container_id(i, j);
            let vals = Values::new((i as u64) << 20 | j as u64);
            match spec.layout {
                Layout::V2 => v2_cgroup(
                    &root
                        .join(&pod_rel)
                        .join(format!("cri-containerd-{id}.scope")),
                    &vals,
                    cpu_max,
                    mem_max,
                )?,
                Layout::V1 => v1_cgroup(root, &pod_rel.join(&id), &vals, quota, v1_mem_max)?,
            }
            // Container 0 is the sandbox: the API does not list it.
            if j > 0 {
                let (req_cpu, req_mem) = match qos {
                    "BestEffort" => (None, None),
                    _ => (Some(0.1), Some(134_217_728.0)),
                };
                let (lim_cpu, lim_mem) = if guaranteed {
                    (Some(0.1), Some(134_217_728.0))
                } else {
                    (None, None)
                };
                containers.push(ContainerMeta {
                    name: format!("container-{j}"),
                    id: Some(id),
                    cpu_request_cores: req_cpu,
                    cpu_limit_cores: lim_cpu,
                    memory_request_bytes: req_mem,
                    memory_limit_bytes: lim_mem,
                    run_to_completion_init: false,
                });
            }
        }
        metas.push(PodMeta {
            namespace: format!("team-{}", i % 7),
            name: format!("app-{}-{:05x}", i / 3, mix(i as u64) & 0xfffff),
            uid,
            qos_class: qos.to_string(),
            containers,
            pod_cpu_request_cores: None,
            pod_memory_request_bytes: None,
            pod_ips: Vec::new(),
        });
    }
    Ok(metas)
}

/// A synced pod index holding `pods`.
pub fn pod_meta_by_uid(pods: Vec<PodMeta>) -> PodMetaByUid {
    let index = PodMetaByUid::default();
    index.replace(pods);
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed_and_distinct() {
        let uid = pod_uid(7);
        assert_eq!(uid.len(), 36, "{uid}");
        assert_eq!(
            crate::samplers::cgroup::parse_pod_dir(&format!("pod{uid}")),
            Some(uid)
        );
        let id = container_id(3, 4);
        assert_eq!(id.len(), 64);
        assert_eq!(
            crate::samplers::cgroup::parse_container_dir(&format!("cri-containerd-{id}.scope")),
            Some(id.clone())
        );
        assert_ne!(id, container_id(4, 3));
        assert_ne!(pod_uid(1), pod_uid(2));
    }

    #[test]
    fn the_sampler_reads_every_cgroup_of_both_layouts() {
        use crate::buffer::Buffer;
        use crate::sampler::Sampler;
        use crate::samplers::cgroup::{CgroupSampler, Hierarchy, Scope};
        use tidal_core::schema;
        for layout in [Layout::V2, Layout::V1] {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let root = std::env::temp_dir().join(format!(
                "tidal-synthetic-{layout:?}-{}-{nanos}",
                std::process::id()
            ));
            let spec = TreeSpec {
                pods: 3,
                containers_per_pod: 2,
                layout,
            };
            let metas = write_tree(&root, &spec).expect("writes the tree");
            let h = Hierarchy::detect(&root).expect("detects the layout");
            let mut sampler = CgroupSampler::new(h, Scope::Node, pod_meta_by_uid(metas));
            let mut buf = Buffer::new(std::time::Instant::now());
            let result = sampler.sample(&mut buf);
            let _ = std::fs::remove_dir_all(&root);
            assert!(result.is_ok(), "{layout:?}");
            assert!(buf.errors().is_empty(), "{layout:?}: {:?}", buf.errors());
            // 3 pod cgroups + 3 named containers; each pod's sandbox (its other container
            // cgroup, in no containerStatus) has no series of its own, as in the kubelet's
            // cAdvisor (docs/agent.md).
            let cpu = &buf.families()[schema::CONTAINER_CPU_USAGE_SECONDS_TOTAL];
            assert_eq!(cpu.samples.len(), 6, "{layout:?}");
            // Named containers (not the sandbox) of the Burstable pod carry their request.
            let pod = pod_uid(1);
            assert_eq!(
                buf.value(
                    schema::AGENT_CONTAINER_CPU_REQUEST_CORES,
                    &[("pod_uid", pod.as_str()), ("container", "container-1")]
                ),
                Some(0.1),
                "{layout:?}"
            );
        }
    }
}
