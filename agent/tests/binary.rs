//! The `tidal-agent` binary end to end, without Kubernetes: fixture `/proc` and cgroup roots,
//! no API access. Checks the CLI wiring, `/readyz`, both scrape formats and that the missing
//! API is reported exactly once.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;

const UID: &str = "0f0f0f0f-1111-2222-3333-444444444444";
const CID: &str = "feedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedface";

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str, accept: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out))
}

#[test]
fn binary_serves_fixture_series_without_the_api() {
    let proc = TempDir::new("bin-proc");
    proc.write(
        "stat",
        "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 10 0 10 100 0 0 0 0 0 0\n",
    );
    proc.write("loadavg", "0.50 0.40 0.30 1/10 100\n");
    proc.write("meminfo", common::MEMINFO);
    let cg = TempDir::new("bin-cgroup");
    cg.write("cgroup.controllers", "cpu memory\n");
    let ctr = format!("kubepods/besteffort/pod{UID}/{CID}");
    cg.write(format!("{ctr}/cpu.stat"), "usage_usec 2000000\n");
    cg.write(format!("{ctr}/memory.current"), "8192\n");
    cg.write(
        format!("{ctr}/memory.stat"),
        "anon 4096\nfile 4096\ninactive_file 2048\n",
    );
    // The pod cgroup lacks its files: counted as an error, the container is still exported.

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let log = TempDir::new("bin-log");
    let log_path = log.path().join("log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let _agent = Kill(
        Command::new(env!("CARGO_BIN_EXE_tidal-agent"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--interval-seconds",
                "0.2",
            ])
            .arg("--proc-root")
            .arg(proc.path())
            .arg("--cgroup-root")
            .arg(cg.path())
            .args(["--node-name", "node-a"])
            .env("KUBECONFIG", log.path().join("no-such-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "info")
            // tracing's fmt layer writes to stdout.
            .stdout(log_file)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tidal-agent"),
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        assert!(Instant::now() < deadline, "agent never became ready");
        if let Some((200, _)) = get(port, "/readyz", "*/*") {
            let (status, body) = get(port, "/metrics", "text/plain").expect("scrape");
            assert_eq!(status, 200);
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        body.contains("Content-Type: text/plain; version=0.0.4")
            || body.contains("content-type: text/plain; version=0.0.4"),
        "{body}"
    );
    let want = format!(
        "container_memory_working_set_bytes{{namespace=\"\",pod=\"\",container=\"{CID}\",pod_uid=\"{UID}\",qos_class=\"BestEffort\"}} 6144.0"
    );
    assert!(body.contains(&want), "missing {want} in\n{body}");
    assert!(
        body.contains("tidal_agent_node_memory_utilization_ratio 0.75"),
        "{body}"
    );
    assert!(
        body.contains("tidal_agent_sample_errors_total{sampler=\"cgroup\",reason=\"vanished\"}"),
        "{body}"
    );
    assert!(
        !body.contains("tidal_agent_pod_metadata_synced"),
        "no watch without API: {body}"
    );

    let (_, om) = get(
        port,
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    )
    .expect("scrape");
    assert!(
        om.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{om}"
    );
    assert!(om.trim_end().ends_with("# EOF"), "{om}");

    // Several passes later, the missing API has been reported once and only once.
    std::thread::sleep(Duration::from_millis(600));
    let log_text = std::fs::read_to_string(&log_path).expect("log");
    assert_eq!(
        log_text.matches("no Kubernetes API access").count(),
        1,
        "{log_text}"
    );
}
