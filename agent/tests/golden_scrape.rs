//! Golden scrape: a full pass of the real samplers (this machine's `/proc`, a fixture cgroup
//! tree), encoded by the server in both formats, checked with `promtool check metrics`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use http_body_util::BodyExt;
use tidal_agent::pods::{ContainerMeta, PodMeta, PodMetaByUid};
use tidal_agent::sampler::Sampler;
use tidal_agent::samplers::cgroup::{CgroupSampler, Hierarchy, Scope};
use tidal_agent::samplers::node::NodeSampler;
use tidal_agent::server::{OPENMETRICS, TEXT_004, handle};
use tidal_agent::snapshot::{Runner, Shared};

const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: &str = "11111111-2222-3333-4444-555555555555";

fn cgroup_tree(usage_usec: u64) -> TempDir {
    let t = TempDir::new("golden");
    t.write("cgroup.controllers", "cpu memory io\n");
    let pod = format!("kubepods.slice/kubepods-pod{}.slice", UID.replace('-', "_"));
    for dir in [pod.clone(), format!("{pod}/cri-containerd-{CID}.scope")] {
        t.write(
            format!("{dir}/cpu.stat"),
            &format!("usage_usec {usage_usec}\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n"),
        );
        t.write(format!("{dir}/memory.current"), "4096\n");
        t.write(
            format!("{dir}/memory.stat"),
            "anon 1024\nfile 2048\ninactive_file 1024\n",
        );
        t.write(
            format!("{dir}/cpu.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
        );
    }
    t
}

async fn scrape(shared: &Shared, accept: &str) -> (String, String) {
    let req = http::Request::builder()
        .uri("/metrics")
        .header(http::header::ACCEPT, accept)
        .body(())
        .expect("request");
    let resp = handle(shared, &req);
    let ctype = resp.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .to_string();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (ctype, String::from_utf8(body.to_vec()).expect("utf8"))
}

#[tokio::test]
async fn golden_scrape_passes_promtool() {
    let t = cgroup_tree(1_000_000);
    let pods = PodMetaByUid::default();
    pods.insert(PodMeta {
        namespace: "ns".into(),
        name: "web".into(),
        uid: UID.into(),
        qos_class: "Guaranteed".into(),
        containers: vec![ContainerMeta {
            name: "app".into(),
            id: Some(CID.into()),
            cpu_request_cores: Some(0.5),
            cpu_limit_cores: Some(0.5),
            memory_request_bytes: Some(8192.0),
            memory_limit_bytes: Some(8192.0),
            ..Default::default()
        }],
        ..Default::default()
    });
    let h = Hierarchy::detect(t.path()).expect("fixture hierarchy");
    let samplers: Vec<Box<dyn Sampler>> = vec![
        Box::new(NodeSampler::new("/proc")),
        Box::new(CgroupSampler::new(h, Scope::Node, pods.clone())),
    ];
    let shared = Shared::default();
    let mut runner = Runner::new(samplers, Some(pods), shared.clone());
    let t0 = Instant::now();
    runner.run_once(t0);
    // Advance the counters in place: +0.25 CPU-seconds over 1 s.
    let pod = format!("kubepods.slice/kubepods-pod{}.slice", UID.replace('-', "_"));
    t.write(
        format!("{pod}/cri-containerd-{CID}.scope/cpu.stat"),
        "usage_usec 1250000\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n",
    );
    runner.run_once(t0 + Duration::from_secs(1));

    let (ctype, text) = scrape(&shared, "text/plain;version=0.0.4").await;
    assert_eq!(ctype, TEXT_004);
    for want in [
        "tidal_agent_container_cpu_usage_seconds_total{namespace=\"ns\",pod=\"web\",container=\"app\",pod_uid=\"11111111-2222-3333-4444-555555555555\",qos_class=\"Guaranteed\"} 1.25\n",
        "tidal_agent_container_cpu_usage_cores{namespace=\"ns\",pod=\"web\",container=\"app\",pod_uid=\"11111111-2222-3333-4444-555555555555\",qos_class=\"Guaranteed\"} 0.25\n",
        "tidal_agent_container_cpu_request_utilization_ratio{namespace=\"ns\",pod=\"web\",container=\"app\",pod_uid=\"11111111-2222-3333-4444-555555555555\",qos_class=\"Guaranteed\"} 0.5\n",
        "tidal_agent_container_memory_working_set_bytes{namespace=\"ns\",pod=\"web\",container=\"app\",pod_uid=\"11111111-2222-3333-4444-555555555555\",qos_class=\"Guaranteed\"} 3072.0\n",
        "# TYPE tidal_agent_container_cpu_usage_seconds_total counter\n",
        "tidal_agent_sampler_success{sampler=\"node\"} 1.0\n",
        "tidal_agent_sampler_success{sampler=\"cgroup\"} 1.0\n",
        "tidal_agent_pod_metadata_synced 0.0\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (CI has /usr/bin/promtool)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (ctype, om) = scrape(&shared, "application/openmetrics-text;version=1.0.0").await;
    assert_eq!(ctype, OPENMETRICS);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE tidal_agent_container_cpu_usage_seconds counter\n"),
        "{om}"
    );
}
