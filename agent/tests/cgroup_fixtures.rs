//! Fixture cgroup trees (v1, v2, hybrid; systemd and cgroupfs drivers; containerd, CRI-O and
//! Docker naming), generated into temp dirs, with exact assertions on the parsed values.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TempDir;
use tidal_agent::buffer::Buffer;
use tidal_agent::pods::{ContainerMeta, PodMeta, PodMetaByUid};
use tidal_agent::sampler::Sampler;
use tidal_agent::samplers::cgroup::{CgroupSampler, Hierarchy, Mode, Scope, discover};
use tidal_core::schema as s;

const CID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const CID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const CID_C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const UID_1: &str = "11111111-2222-3333-4444-555555555555";
const UID_2: &str = "66666666-7777-8888-9999-000000000000";
const UID_3: &str = "abcdefab-cdef-abcd-efab-cdefabcdefab";

fn psi(some_us: u64, full_us: u64) -> String {
    format!(
        "some avg10=0.00 avg60=0.00 avg300=0.00 total={some_us}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total={full_us}\n"
    )
}

/// A v2 cgroup with the given CPU (µs) and memory numbers.
fn v2_cgroup(t: &TempDir, rel: &Path, usage_usec: u64, current: u64, inactive: u64) {
    t.write(
        rel.join("cpu.stat"),
        &format!("usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 2\nnr_periods 40\nnr_throttled 4\nthrottled_usec 250000\n"),
    );
    t.write(rel.join("memory.current"), &format!("{current}\n"));
    t.write(
        rel.join("memory.stat"),
        &format!("anon 3000\nfile 7000\nkernel 10\ninactive_file {inactive}\nactive_file 5\n"),
    );
    t.write(rel.join("cpu.max"), "50000 100000\n");
    t.write(rel.join("memory.max"), "1048576\n");
    t.write(rel.join("cpu.pressure"), &psi(1_000_000, 500_000));
    t.write(rel.join("memory.pressure"), &psi(2_000_000, 0));
    t.write(rel.join("io.pressure"), &psi(3_000_000, 1_500_000));
}

/// A v1 cgroup across the given controller directories.
fn v1_cgroup(
    t: &TempDir,
    cpu: &str,
    cpuacct: &str,
    rel: &Path,
    usage_ns: u64,
    usage: u64,
    inactive: u64,
) {
    let c = PathBuf::from(cpu).join(rel);
    t.write(
        c.join("cpu.stat"),
        "nr_periods 10\nnr_throttled 2\nthrottled_time 3000000000\n",
    );
    t.write(c.join("cpu.cfs_quota_us"), "-1\n");
    t.write(c.join("cpu.cfs_period_us"), "100000\n");
    t.write(
        PathBuf::from(cpuacct).join(rel).join("cpuacct.usage"),
        &format!("{usage_ns}\n"),
    );
    let m = PathBuf::from("memory").join(rel);
    t.write(m.join("memory.usage_in_bytes"), &format!("{usage}\n"));
    t.write(
        m.join("memory.stat"),
        &format!(
            "cache 1\nrss 2\ntotal_cache 8192\ntotal_rss 4096\ntotal_inactive_file {inactive}\n"
        ),
    );
    t.write(m.join("memory.limit_in_bytes"), "9223372036854771712\n");
}

fn sample(sampler: &mut CgroupSampler, at: Instant) -> Buffer {
    let mut buf = Buffer::new(at);
    sampler.sample(&mut buf).expect("sampler succeeds");
    buf
}

fn v(buf: &Buffer, name: &str, want: &[(&str, &str)]) -> f64 {
    buf.value(name, want)
        .unwrap_or_else(|| panic!("no {name} with {want:?} in {:#?}", buf.families().get(name)))
}

/// v2, systemd driver: containerd (burstable), CRI-O (guaranteed) and Docker (besteffort).
fn v2_systemd_tree() -> TempDir {
    let t = TempDir::new("v2-systemd");
    t.write("cgroup.controllers", "cpuset cpu io memory pids\n");
    let uid1 = UID_1.replace('-', "_");
    let pod1 = PathBuf::from(format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid1}.slice"
    ));
    v2_cgroup(&t, &pod1, 9_000_000, 200_000, 50_000);
    v2_cgroup(
        &t,
        &pod1.join(format!("cri-containerd-{CID_A}.scope")),
        1_500_000,
        100_000,
        40_000,
    );
    // Working set floors at 0 when inactive_file exceeds usage.
    let pod2 = PathBuf::from(format!(
        "kubepods.slice/kubepods-pod{}.slice",
        UID_2.replace('-', "_")
    ));
    v2_cgroup(&t, &pod2, 1, 10, 20);
    v2_cgroup(&t, &pod2.join(format!("crio-{CID_B}.scope")), 2, 10, 20);
    // A CRI-O conmon scope is not a container.
    v2_cgroup(
        &t,
        &pod2.join(format!("crio-conmon-{CID_B}.scope")),
        2,
        10,
        20,
    );
    let pod3 = PathBuf::from(format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
        UID_3.replace('-', "_")
    ));
    v2_cgroup(&t, &pod3, 5, 10, 0);
    v2_cgroup(&t, &pod3.join(format!("docker-{CID_C}.scope")), 5, 10, 0);
    // Not pods.
    t.write("system.slice/cpu.stat", "usage_usec 1\n");
    t
}

#[test]
fn v2_systemd_values_are_exact() {
    let t = v2_systemd_tree();
    let h = Hierarchy::detect(t.path()).expect("detects");
    assert_eq!(h.mode(), Mode::V2);
    let mut errors = Vec::new();
    let pods = discover(t.path(), &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p.containers.len() == 1), "{pods:#?}");

    let mut sampler = CgroupSampler::new(h, Scope::Node, PodMetaByUid::default());
    let buf = sample(&mut sampler, Instant::now());
    assert!(buf.errors().is_empty(), "{:?}", buf.errors());
    let a = [
        ("container", CID_A),
        ("pod_uid", UID_1),
        ("qos_class", "Burstable"),
    ];
    assert_eq!(v(&buf, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &a), 1.5);
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_WORKING_SET_BYTES, &a), 60_000.0);
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_RSS, &a), 3000.0);
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_CACHE, &a), 7000.0);
    assert_eq!(v(&buf, s::CONTAINER_CPU_CFS_PERIODS_TOTAL, &a), 40.0);
    assert_eq!(
        v(&buf, s::CONTAINER_CPU_CFS_THROTTLED_PERIODS_TOTAL, &a),
        4.0
    );
    assert_eq!(
        v(&buf, s::CONTAINER_CPU_CFS_THROTTLED_SECONDS_TOTAL, &a),
        0.25
    );
    assert_eq!(v(&buf, s::CONTAINER_PRESSURE_CPU_WAITING, &a), 1.0);
    assert_eq!(v(&buf, s::CONTAINER_PRESSURE_CPU_STALLED, &a), 0.5);
    assert_eq!(v(&buf, s::CONTAINER_PRESSURE_MEMORY_WAITING, &a), 2.0);
    assert_eq!(v(&buf, s::CONTAINER_PRESSURE_IO_STALLED, &a), 1.5);
    // Limits from the cgroup when the API is not known: cpu.max 50000/100000, memory.max 1MiB.
    assert_eq!(v(&buf, s::AGENT_CONTAINER_CPU_LIMIT_CORES, &a), 0.5);
    assert_eq!(
        v(&buf, s::AGENT_CONTAINER_MEMORY_LIMIT_BYTES, &a),
        1_048_576.0
    );
    assert_eq!(
        v(&buf, s::AGENT_CONTAINER_MEMORY_LIMIT_UTILIZATION, &a),
        60_000.0 / 1_048_576.0
    );
    // Pod level: container="".
    let pod1 = [("container", ""), ("pod_uid", UID_1)];
    assert_eq!(v(&buf, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &pod1), 9.0);
    assert_eq!(
        v(&buf, s::CONTAINER_MEMORY_WORKING_SET_BYTES, &pod1),
        150_000.0
    );
    // Guaranteed (CRI-O), working set floored at 0.
    let b = [
        ("container", CID_B),
        ("pod_uid", UID_2),
        ("qos_class", "Guaranteed"),
    ];
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_WORKING_SET_BYTES, &b), 0.0);
    assert_eq!(v(&buf, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &b), 0.000002);
    // BestEffort (Docker).
    let c = [
        ("container", CID_C),
        ("pod_uid", UID_3),
        ("qos_class", "BestEffort"),
    ];
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_WORKING_SET_BYTES, &c), 10.0);
    // 3 pods + 3 containers; the conmon scope and system.slice are not exported.
    assert_eq!(
        buf.families()[s::CONTAINER_CPU_USAGE_SECONDS_TOTAL]
            .samples
            .len(),
        6
    );
    // No rate on the first sample.
    assert!(
        buf.families()
            .get(s::AGENT_CONTAINER_CPU_USAGE_CORES)
            .is_none()
    );
}

#[test]
fn v2_rates_utilization_api_labels_and_counter_reset() {
    let t = v2_systemd_tree();
    let h = Hierarchy::detect(t.path()).expect("detects");
    let pods = PodMetaByUid::default();
    pods.insert(PodMeta {
        namespace: "shop".into(),
        name: "web-1".into(),
        uid: UID_1.into(),
        qos_class: "Burstable".into(),
        containers: vec![ContainerMeta {
            name: "app".into(),
            id: Some(CID_A.into()),
            cpu_request_cores: Some(0.25),
            cpu_limit_cores: Some(1.0),
            memory_request_bytes: Some(120_000.0),
            memory_limit_bytes: Some(240_000.0),
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut sampler = CgroupSampler::new(h, Scope::Node, pods);
    let t0 = Instant::now();
    sample(&mut sampler, t0);
    let uid1 = UID_1.replace('-', "_");
    let c = PathBuf::from(format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid1}.slice/cri-containerd-{CID_A}.scope"
    ));
    // +0.5 CPU-seconds over 2 s = 0.25 cores.
    v2_cgroup(&t, &c, 2_000_000, 100_000, 40_000);
    let buf = sample(&mut sampler, t0 + Duration::from_secs(2));
    let app = [
        ("namespace", "shop"),
        ("pod", "web-1"),
        ("container", "app"),
        ("pod_uid", UID_1),
        ("qos_class", "Burstable"),
    ];
    assert_eq!(v(&buf, s::AGENT_CONTAINER_CPU_USAGE_CORES, &app), 0.25);
    assert_eq!(v(&buf, s::AGENT_CONTAINER_CPU_REQUEST_CORES, &app), 0.25);
    assert_eq!(
        v(&buf, s::AGENT_CONTAINER_CPU_REQUEST_UTILIZATION, &app),
        1.0
    );
    assert_eq!(
        v(&buf, s::AGENT_CONTAINER_CPU_LIMIT_CORES, &app),
        1.0,
        "spec limit wins over cgroup"
    );
    assert_eq!(
        v(&buf, s::AGENT_CONTAINER_CPU_LIMIT_UTILIZATION, &app),
        0.25
    );
    assert_eq!(
        v(&buf, s::AGENT_CONTAINER_MEMORY_REQUEST_UTILIZATION, &app),
        0.5
    );
    assert_eq!(
        v(&buf, s::AGENT_CONTAINER_MEMORY_LIMIT_UTILIZATION, &app),
        0.25
    );
    // The pod level is labelled from the API too, request = sum of container requests.
    let pod = [("namespace", "shop"), ("pod", "web-1"), ("container", "")];
    assert_eq!(v(&buf, s::AGENT_CONTAINER_CPU_REQUEST_CORES, &pod), 0.25);
    assert_eq!(v(&buf, s::AGENT_CONTAINER_CPU_USAGE_CORES, &pod), 0.0);
    // Unknown pods keep their UID and path-derived QoS.
    let other = [
        ("namespace", ""),
        ("pod", ""),
        ("container", CID_B),
        ("pod_uid", UID_2),
    ];
    assert_eq!(v(&buf, s::AGENT_CONTAINER_CPU_USAGE_CORES, &other), 0.0);

    // Counter reset (container restarted in place): no rate for that interval, never negative.
    v2_cgroup(&t, &c, 100_000, 100_000, 40_000);
    let buf = sample(&mut sampler, t0 + Duration::from_secs(3));
    assert_eq!(buf.value(s::AGENT_CONTAINER_CPU_USAGE_CORES, &app), None);
    assert_eq!(
        buf.value(s::AGENT_CONTAINER_CPU_REQUEST_UTILIZATION, &app),
        None
    );
    assert_eq!(v(&buf, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &app), 0.1);
    v2_cgroup(&t, &c, 600_000, 100_000, 40_000);
    let buf = sample(&mut sampler, t0 + Duration::from_secs(4));
    assert_eq!(v(&buf, s::AGENT_CONTAINER_CPU_USAGE_CORES, &app), 0.5);
}

#[test]
fn v1_cgroupfs_values_are_exact() {
    let t = TempDir::new("v1-cgroupfs");
    // Co-mounted cpu,cpuacct as on most v1 distributions.
    for d in ["cpu,cpuacct", "memory", "pids"] {
        std::fs::create_dir_all(t.path().join(d)).expect("mkdir");
    }
    let pod = PathBuf::from(format!("kubepods/burstable/pod{UID_1}"));
    v1_cgroup(
        &t,
        "cpu,cpuacct",
        "cpu,cpuacct",
        &pod,
        4_000_000_000,
        50_000,
        10_000,
    );
    v1_cgroup(
        &t,
        "cpu,cpuacct",
        "cpu,cpuacct",
        &pod.join(CID_A),
        2_500_000_000,
        30_000,
        5_000,
    );
    let g = PathBuf::from(format!("kubepods/pod{UID_2}"));
    v1_cgroup(
        &t,
        "cpu,cpuacct",
        "cpu,cpuacct",
        &g,
        1_000_000_000,
        1_000,
        0,
    );
    v1_cgroup(
        &t,
        "cpu,cpuacct",
        "cpu,cpuacct",
        &g.join(CID_B),
        1_000_000_000,
        1_000,
        0,
    );
    // A guaranteed pod's limit, enforced by the cgroup: quota 200000 / period 100000 = 2 cores.
    t.write(
        format!("cpu,cpuacct/kubepods/pod{UID_2}/{CID_B}/cpu.cfs_quota_us"),
        "200000\n",
    );
    t.write(
        format!("memory/kubepods/pod{UID_2}/{CID_B}/memory.limit_in_bytes"),
        "2097152\n",
    );

    let h = Hierarchy::detect(t.path()).expect("detects");
    assert_eq!(h.mode(), Mode::V1);
    let mut sampler = CgroupSampler::new(h, Scope::Node, PodMetaByUid::default());
    let buf = sample(&mut sampler, Instant::now());
    assert!(buf.errors().is_empty(), "{:?}", buf.errors());
    let a = [
        ("container", CID_A),
        ("pod_uid", UID_1),
        ("qos_class", "Burstable"),
    ];
    assert_eq!(v(&buf, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &a), 2.5);
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_WORKING_SET_BYTES, &a), 25_000.0);
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_RSS, &a), 4096.0);
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_CACHE, &a), 8192.0);
    assert_eq!(v(&buf, s::CONTAINER_CPU_CFS_PERIODS_TOTAL, &a), 10.0);
    assert_eq!(
        v(&buf, s::CONTAINER_CPU_CFS_THROTTLED_PERIODS_TOTAL, &a),
        2.0
    );
    assert_eq!(
        v(&buf, s::CONTAINER_CPU_CFS_THROTTLED_SECONDS_TOTAL, &a),
        3.0
    );
    // quota -1 and the v1 "unlimited" memory value mean no limit.
    assert_eq!(buf.value(s::AGENT_CONTAINER_CPU_LIMIT_CORES, &a), None);
    assert_eq!(buf.value(s::AGENT_CONTAINER_MEMORY_LIMIT_BYTES, &a), None);
    // No PSI on a pure v1 host.
    assert!(
        buf.families()
            .get(s::CONTAINER_PRESSURE_CPU_WAITING)
            .is_none()
    );
    let b = [
        ("container", CID_B),
        ("pod_uid", UID_2),
        ("qos_class", "Guaranteed"),
    ];
    assert_eq!(v(&buf, s::AGENT_CONTAINER_CPU_LIMIT_CORES, &b), 2.0);
    assert_eq!(
        v(&buf, s::AGENT_CONTAINER_MEMORY_LIMIT_BYTES, &b),
        2_097_152.0
    );
    assert_eq!(
        v(
            &buf,
            s::CONTAINER_CPU_USAGE_SECONDS_TOTAL,
            &[("container", ""), ("pod_uid", UID_1)]
        ),
        4.0
    );
}

#[test]
fn hybrid_systemd_reads_v1_controllers_and_v2_pressure() {
    let t = TempDir::new("hybrid-systemd");
    // Separate cpu and cpuacct mounts, as on this project's CI machine.
    for d in ["cpu", "cpuacct", "memory", "systemd"] {
        std::fs::create_dir_all(t.path().join(d)).expect("mkdir");
    }
    t.write("unified/cgroup.controllers", "hugetlb\n");
    let uid = UID_3.replace('-', "_");
    let pod = PathBuf::from(format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice"
    ));
    let ctr = pod.join(format!("cri-containerd-{CID_C}.scope"));
    v1_cgroup(&t, "cpu", "cpuacct", &pod, 7_000_000_000, 9_000, 1_000);
    v1_cgroup(&t, "cpu", "cpuacct", &ctr, 6_000_000_000, 8_000, 1_000);
    let u = PathBuf::from("unified").join(&ctr);
    t.write(u.join("cpu.pressure"), &psi(4_000_000, 2_000_000));
    t.write(u.join("memory.pressure"), &psi(0, 0));
    // io.pressure missing: optional.

    let h = Hierarchy::detect(t.path()).expect("detects");
    assert_eq!(h.mode(), Mode::Hybrid);
    let mut sampler = CgroupSampler::new(h, Scope::Node, PodMetaByUid::default());
    let buf = sample(&mut sampler, Instant::now());
    assert!(buf.errors().is_empty(), "{:?}", buf.errors());
    let c = [
        ("container", CID_C),
        ("pod_uid", UID_3),
        ("qos_class", "BestEffort"),
    ];
    assert_eq!(v(&buf, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &c), 6.0);
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_WORKING_SET_BYTES, &c), 7_000.0);
    assert_eq!(v(&buf, s::CONTAINER_PRESSURE_CPU_WAITING, &c), 4.0);
    assert_eq!(v(&buf, s::CONTAINER_PRESSURE_CPU_STALLED, &c), 2.0);
    assert_eq!(v(&buf, s::CONTAINER_PRESSURE_MEMORY_WAITING, &c), 0.0);
    assert_eq!(buf.value(s::CONTAINER_PRESSURE_IO_WAITING, &c), None);
    // The pod cgroup has no unified directory: no PSI, but no error either.
    assert_eq!(
        buf.value(s::CONTAINER_PRESSURE_CPU_WAITING, &[("container", "")]),
        None
    );
}

#[test]
fn bad_input_is_counted_and_never_fails_the_other_pods() {
    let t = v2_systemd_tree();
    let uid1 = UID_1.replace('-', "_");
    let pod1 = PathBuf::from(format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid1}.slice"
    ));
    // Non-numeric field; a container whose files are gone (died between listing and reading);
    // a memory.stat without inactive_file.
    t.write(
        pod1.join(format!("cri-containerd-{CID_A}.scope/memory.current")),
        "lots\n",
    );
    let uid2 = UID_2.replace('-', "_");
    let gone = PathBuf::from(format!(
        "kubepods.slice/kubepods-pod{uid2}.slice/crio-{CID_B}.scope"
    ));
    std::fs::remove_file(t.path().join(&gone).join("cpu.stat")).expect("rm");
    t.write(pod1.join("memory.stat"), "anon 1\nfile 2\n");
    let h = Hierarchy::detect(t.path()).expect("detects");
    let mut sampler = CgroupSampler::new(h, Scope::Node, PodMetaByUid::default());
    let buf = sample(&mut sampler, Instant::now());
    let mut errs = buf.errors().to_vec();
    errs.sort_unstable();
    assert_eq!(errs, ["missing_key", "not_a_number", "vanished"]);
    // The three others (pod 2, pod 3, container C) are still exported.
    assert_eq!(
        buf.families()[s::CONTAINER_CPU_USAGE_SECONDS_TOTAL]
            .samples
            .len(),
        3
    );
    assert_eq!(
        v(
            &buf,
            s::CONTAINER_MEMORY_WORKING_SET_BYTES,
            &[("container", CID_C)]
        ),
        10.0
    );
}

#[test]
fn no_hierarchy_is_a_typed_error() {
    let t = TempDir::new("empty");
    let e = Hierarchy::detect(t.path()).expect_err("nothing mounted");
    assert_eq!(e.reason(), "no_hierarchy");
}

#[test]
fn sidecar_covers_only_its_own_pod() {
    let t = v2_systemd_tree();
    let proc = TempDir::new("proc-sidecar");
    let uid1 = UID_1.replace('-', "_");
    proc.write(
        "self/cgroup",
        &format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid1}.slice/cri-containerd-{CID_A}.scope\n"
        ),
    );
    let h = Hierarchy::detect(t.path()).expect("detects");
    let scope = Scope::OwnPod {
        proc_root: proc.path().to_path_buf(),
    };
    let mut sampler = CgroupSampler::new(h, scope, PodMetaByUid::default());
    let buf = sample(&mut sampler, Instant::now());
    let series = &buf.families()[s::CONTAINER_CPU_USAGE_SECONDS_TOTAL].samples;
    assert_eq!(series.len(), 2, "pod + its one container: {series:?}");
    assert!(
        series
            .iter()
            .all(|(l, _)| l.iter().any(|(k, v)| *k == "pod_uid" && v == UID_1))
    );
    assert_eq!(
        v(
            &buf,
            s::CONTAINER_CPU_USAGE_SECONDS_TOTAL,
            &[("container", CID_A)]
        ),
        1.5
    );
}

#[test]
fn sidecar_outside_kubernetes_is_labelled_by_cgroup_path() {
    let t = TempDir::new("v1-plain");
    for d in ["cpu", "cpuacct", "memory"] {
        std::fs::create_dir_all(t.path().join(d)).expect("mkdir");
    }
    v1_cgroup(
        &t,
        "cpu",
        "cpuacct",
        Path::new("svc/app"),
        3_000_000_000,
        100,
        0,
    );
    v1_cgroup(&t, "cpu", "cpuacct", Path::new(""), 0, 0, 0);
    let proc = TempDir::new("proc-plain");
    proc.write(
        "self/cgroup",
        "4:memory:/svc/app\n3:cpuacct:/svc/app\n2:cpu:/svc/app\n1:name=systemd:/\n",
    );
    let h = Hierarchy::detect(t.path()).expect("detects");
    let scope = Scope::OwnPod {
        proc_root: proc.path().to_path_buf(),
    };
    let mut sampler = CgroupSampler::new(h, scope, PodMetaByUid::default());
    let buf = sample(&mut sampler, Instant::now());
    let own = [("container", "/svc/app"), ("pod_uid", ""), ("pod", "")];
    assert_eq!(v(&buf, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &own), 3.0);
    assert_eq!(v(&buf, s::CONTAINER_MEMORY_WORKING_SET_BYTES, &own), 100.0);
}

#[test]
fn kind_style_kubelet_prefix_is_found() {
    let t = TempDir::new("v2-kind");
    t.write("cgroup.controllers", "cpu memory\n");
    let uid = UID_1.replace('-', "_");
    let pod = PathBuf::from(format!(
        "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{uid}.slice"
    ));
    v2_cgroup(&t, &pod, 1_000_000, 10, 0);
    v2_cgroup(
        &t,
        &pod.join(format!("cri-containerd-{CID_A}.scope")),
        500_000,
        10,
        0,
    );
    let h = Hierarchy::detect(t.path()).expect("detects");
    let mut sampler = CgroupSampler::new(h, Scope::Node, PodMetaByUid::default());
    let buf = sample(&mut sampler, Instant::now());
    let a = [
        ("container", CID_A),
        ("pod_uid", UID_1),
        ("qos_class", "Burstable"),
    ];
    assert_eq!(v(&buf, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &a), 0.5);
}

#[test]
fn limits_are_reread_every_slow_period_and_counters_every_round() {
    use tidal_agent::samplers::cgroup::SLOW_EVERY_ROUNDS;
    let t = v2_systemd_tree();
    let h = Hierarchy::detect(t.path()).expect("detects");
    let mut sampler = CgroupSampler::new(h, Scope::Node, PodMetaByUid::default());
    let a = [("container", CID_A), ("pod_uid", UID_1)];
    let pod1 = PathBuf::from(format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID_A}.scope",
        UID_1.replace('-', "_")
    ));
    let start = Instant::now();
    let buf = sample(&mut sampler, start);
    assert_eq!(v(&buf, s::AGENT_CONTAINER_CPU_LIMIT_CORES, &a), 0.5);
    // An in-place resize (new quota) and more CPU used.
    t.write(pod1.join("cpu.max"), "200000 100000\n");
    t.write(
        pod1.join("cpu.stat"),
        "usage_usec 2500000\nuser_usec 1\nsystem_usec 2\nnr_periods 40\nnr_throttled 4\nthrottled_usec 250000\n",
    );
    let mut seen_new_limit = None;
    for round in 1..=SLOW_EVERY_ROUNDS {
        let buf = sample(&mut sampler, start + Duration::from_secs(round));
        // The counter is read every round.
        assert_eq!(
            v(&buf, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &a),
            2.5,
            "round {round}"
        );
        let limit = v(&buf, s::AGENT_CONTAINER_CPU_LIMIT_CORES, &a);
        match seen_new_limit {
            None if limit == 2.0 => seen_new_limit = Some(round),
            None => assert_eq!(
                limit, 0.5,
                "round {round}: the cached limit until its slow round"
            ),
            Some(_) => assert_eq!(limit, 2.0, "round {round}: stays new"),
        }
    }
    let r = seen_new_limit.expect("the new limit shows within one slow period");
    assert!((1..=SLOW_EVERY_ROUNDS).contains(&r), "{r}");
}

/// Every series of a buffer, as sorted `(name, labels, value)` lines.
fn all_series(buf: &Buffer) -> Vec<String> {
    let mut out: Vec<String> = buf
        .families()
        .iter()
        .flat_map(|(name, f)| {
            f.samples
                .iter()
                .map(move |(l, v)| format!("{name}{:?} {v}", l.as_ref()))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn held_files_and_listings_follow_churn_between_rounds_exactly() {
    use tidal_agent::fdcache::FdBudget;
    let t = v2_systemd_tree();
    let uid1 = UID_1.replace('-', "_");
    let pod1 = PathBuf::from(format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid1}.slice"
    ));
    let h = Hierarchy::detect(t.path()).expect("detects");
    let mut held = CgroupSampler::new(h.clone(), Scope::Node, PodMetaByUid::default());
    // The same tree through a sampler that opens, reads and closes every file.
    let mut plain = CgroupSampler::with_budget(
        h,
        Scope::Node,
        PodMetaByUid::default(),
        FdBudget::with_cap(0),
    );
    let t0 = Instant::now();
    let first = sample(&mut held, t0);
    assert_eq!(all_series(&first), all_series(&sample(&mut plain, t0)));
    assert!(held.held_descriptors() > 0);
    assert_eq!(plain.held_descriptors(), 0);

    // Between rounds: container A dies, D starts in the same pod, pod 3 goes away, C's and
    // the pod's counters move (files rewritten in place).
    std::fs::remove_dir_all(
        t.path()
            .join(pod1.join(format!("cri-containerd-{CID_A}.scope"))),
    )
    .expect("rm A");
    let cid_d = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
    v2_cgroup(
        &t,
        &pod1.join(format!("cri-containerd-{cid_d}.scope")),
        700_000,
        5_000,
        1_000,
    );
    let pod3 = PathBuf::from(format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
        UID_3.replace('-', "_")
    ));
    std::fs::remove_dir_all(t.path().join(&pod3)).expect("rm pod 3");
    v2_cgroup(&t, &pod1, 9_500_000, 200_000, 50_000);
    let t1 = t0 + Duration::from_secs(1);
    let second = sample(&mut held, t1);
    assert!(second.errors().is_empty(), "{:?}", second.errors());
    assert_eq!(all_series(&second), all_series(&sample(&mut plain, t1)));
    let cpu = &second.families()[s::CONTAINER_CPU_USAGE_SECONDS_TOTAL].samples;
    assert_eq!(cpu.len(), 4, "pods 1 and 2, containers B and D: {cpu:?}");
    assert_eq!(
        second.value(
            s::CONTAINER_CPU_USAGE_SECONDS_TOTAL,
            &[("container", CID_A)]
        ),
        None
    );
    assert_eq!(
        v(
            &second,
            s::CONTAINER_CPU_USAGE_SECONDS_TOTAL,
            &[("container", cid_d)]
        ),
        0.7
    );
    let pod = [("container", ""), ("pod_uid", UID_1)];
    assert_eq!(v(&second, s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &pod), 9.5);
    assert_eq!(v(&second, s::AGENT_CONTAINER_CPU_USAGE_CORES, &pod), 0.5);

    // A held file that disappears under a live cgroup reads as missing, as a fresh open.
    std::fs::remove_file(t.path().join(pod1.join("memory.stat"))).expect("rm");
    let t2 = t1 + Duration::from_secs(1);
    let third = sample(&mut held, t2);
    assert_eq!(third.errors(), sample(&mut plain, t2).errors());
    drop(held);
}
