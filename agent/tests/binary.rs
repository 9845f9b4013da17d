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
    let proc = fixture_proc();
    // The pod cgroup lacks its files: counted as an error, the container is still exported.
    let cg = container_cgroup("bin-cgroup");
    let log = TempDir::new("bin-log");
    let log_path = log.path().join("log");
    let (_agent, port) = spawn_agent(&proc, &cg, &log_path, &[]);
    let body = scrape_when_ready(port);
    assert!(
        body.contains("Content-Type: text/plain; version=0.0.4")
            || body.contains("content-type: text/plain; version=0.0.4"),
        "{body}"
    );
    let want = format!(
        "tidal_agent_container_memory_working_set_bytes{{namespace=\"\",pod=\"\",container=\"{CID}\",pod_uid=\"{UID}\",qos_class=\"BestEffort\"}} 6144.0"
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

/// `--compatible-metric-names`: the container and node series under the kubelet/cAdvisor and
/// node_exporter names, none under Tidal's; the agent's own series unchanged.
#[test]
fn compatible_metric_names_export_the_upstream_names() {
    let proc = fixture_proc();
    let cg = container_cgroup("bin-cgroup-compat");
    let log = TempDir::new("bin-log-compat");
    let log_path = log.path().join("log");
    let (_agent, port) = spawn_agent(&proc, &cg, &log_path, &["--compatible-metric-names"]);
    let body = scrape_when_ready(port);
    let want = format!(
        "\ncontainer_memory_working_set_bytes{{namespace=\"\",pod=\"\",container=\"{CID}\",pod_uid=\"{UID}\",qos_class=\"BestEffort\"}} 6144.0\n"
    );
    assert!(body.contains(&want), "missing {want} in\n{body}");
    assert!(body.contains("\nnode_load1 "), "{body}");
    assert!(
        !body.contains("tidal_agent_container_memory_working_set_bytes")
            && !body.contains("tidal_agent_node_load1"),
        "{body}"
    );
    assert!(
        body.contains("tidal_agent_node_memory_utilization_ratio 0.75"),
        "{body}"
    );
}

/// `--log-format json`: every line the agent writes to stdout (where text goes too) is one
/// JSON object, the first being the "starting" line with its fields.
#[test]
fn json_log_format_writes_one_json_object_per_line_on_stdout() {
    let proc = fixture_proc();
    let cg = TempDir::new("bin-cgroup-json");
    cg.write("cgroup.controllers", "cpu memory\n");
    let log = TempDir::new("bin-log-json");
    let log_path = log.path().join("log");
    let (_agent, port) = spawn_agent(&proc, &cg, &log_path, &["--log-format", "json"]);

    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(get(port, "/readyz", "*/*"), Some((200, _))) {
        assert!(Instant::now() < deadline, "agent never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log_path).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let first = lines
        .first()
        .unwrap_or_else(|| panic!("no log line in {text:?}"));
    assert_eq!(first["level"], "INFO", "{first}");
    assert_eq!(first["fields"]["message"], "starting", "{first}");
    assert_eq!(
        first["fields"]["listen"],
        format!("127.0.0.1:{port}"),
        "{first}"
    );
    assert!(first["timestamp"].is_string(), "{first}");
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no Kubernetes API access"))),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "colour codes in {text:?}");
}

/// Starts the release-built `tidal-agent` on fixture roots, sampling every 0.2 s, with no API
/// access; logs to `log_path`. Returns the process (killed on drop) and its port.
/// A cgroup v2 root with one BestEffort container (2 s of CPU, a working set of 6144 bytes).
fn container_cgroup(name: &str) -> TempDir {
    let cg = TempDir::new(name);
    cg.write("cgroup.controllers", "cpu memory\n");
    let ctr = format!("kubepods/besteffort/pod{UID}/{CID}");
    cg.write(format!("{ctr}/cpu.stat"), "usage_usec 2000000\n");
    cg.write(format!("{ctr}/memory.current"), "8192\n");
    cg.write(
        format!("{ctr}/memory.stat"),
        "anon 4096\nfile 4096\ninactive_file 2048\n",
    );
    cg
}

/// The first `/metrics` (text format) once `/readyz` says the first snapshot is out.
fn scrape_when_ready(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "agent never became ready");
        if let Some((200, _)) = get(port, "/readyz", "*/*") {
            let (status, body) = get(port, "/metrics", "text/plain").expect("scrape");
            assert_eq!(status, 200);
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_agent(
    proc: &TempDir,
    cg: &TempDir,
    log_path: &std::path::Path,
    extra: &[&str],
) -> (Kill, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let log_file = std::fs::File::create(log_path).expect("log file");
    let agent = Kill(
        Command::new(env!("CARGO_BIN_EXE_tidal-agent"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--interval-seconds",
                "0.2",
            ])
            .args(extra)
            .arg("--proc-root")
            .arg(proc.path())
            .arg("--cgroup-root")
            .arg(cg.path())
            .args(["--node-name", "node-a"])
            .env("KUBECONFIG", log_path.with_extension("no-such-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "info")
            // tracing's fmt layer writes to stdout.
            .stdout(log_file)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tidal-agent"),
    );
    (agent, port)
}

fn fixture_proc() -> TempDir {
    let proc = TempDir::new("bin-proc");
    proc.write(
        "stat",
        "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 10 0 10 100 0 0 0 0 0 0\n",
    );
    proc.write("loadavg", "0.50 0.40 0.30 1/10 100\n");
    proc.write("meminfo", common::MEMINFO);
    proc
}

/// `tidal_agent_snapshot_age_seconds` in a scrape.
fn age(body: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix("tidal_agent_snapshot_age_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no age in {body}"))
}

/// A sampler that really hangs: a container cgroup appears whose `cpu.stat` is a FIFO with no
/// writer, so the sampler's `open` blocks (as a read of a hung file system would). The
/// server keeps answering: the data's age grows, and `/healthz` fails once it passes
/// `--stale-after-seconds`, so the kubelet's liveness probe restarts the agent.
#[test]
fn a_hung_sampler_fails_healthz_and_its_data_ages() {
    let proc = fixture_proc();
    let cg = TempDir::new("bin-cgroup-hang");
    cg.write("cgroup.controllers", "cpu memory\n");
    let ctr = format!("kubepods/besteffort/pod{UID}/{CID}");
    cg.write(format!("{ctr}/cpu.stat"), "usage_usec 2000000\n");
    cg.write(format!("{ctr}/memory.current"), "8192\n");
    let log = TempDir::new("bin-log-hang");
    let (_agent, port) = spawn_agent(
        &proc,
        &cg,
        &log.path().join("log"),
        &["--stale-after-seconds", "1"],
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(get(port, "/readyz", "*/*"), Some((200, _))) {
        assert!(Instant::now() < deadline, "agent never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = get(port, "/healthz", "*/*").expect("healthz");
    assert_eq!(status, 200);
    let fresh = age(&get(port, "/metrics", "text/plain").expect("scrape").1);
    assert!(fresh < 1.0, "fresh data is {fresh}s old");

    // The hang: a new container whose cpu.stat is a FIFO nobody writes.
    let hung = format!("kubepods/besteffort/pod{UID}/{}", "ab".repeat(32));
    std::fs::create_dir_all(cg.path().join(&hung)).expect("mkdir");
    let fifo = cg.path().join(&hung).join("cpu.stat");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());

    let deadline = Instant::now() + Duration::from_secs(10);
    let (why, stale_age) = loop {
        assert!(Instant::now() < deadline, "/healthz never failed");
        if let Some((503, why)) = get(port, "/healthz", "*/*") {
            let (status, body) = get(port, "/metrics", "text/plain").expect("scrape");
            assert_eq!(status, 200, "the server still answers");
            break (why, age(&body));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(why.contains("has not completed a round"), "{why}");
    assert!(why.contains("bound 1.0s"), "{why}");
    assert!(stale_age > 1.0, "stale data reported {stale_age}s old");
    // Still serving the last snapshot, visibly older on each scrape.
    std::thread::sleep(Duration::from_millis(300));
    let older = age(&get(port, "/metrics", "text/plain").expect("scrape").1);
    assert!(older > stale_age, "{older} <= {stale_age}");
    // Release the blocked open (a writer appears), so nothing is left hanging.
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&fifo);
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / 100.0 // USER_HZ
}

/// Out of file descriptors, `accept` fails at once on every call. The server must back off
/// instead of spinning a core, and serve again once descriptors are free. The real agent
/// runs with a hard limit of 48 descriptors, and the test holds more connections than that.
#[test]
fn out_of_file_descriptors_the_server_backs_off_and_recovers() {
    let proc = fixture_proc();
    let cg = TempDir::new("bin-cgroup-emfile");
    cg.write("cgroup.controllers", "cpu memory\n");
    let log = TempDir::new("bin-log-emfile");
    let log_path = log.path().join("log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let agent = Kill(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 48 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_tidal-agent"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--interval-seconds",
                "0.5",
            ])
            .arg("--proc-root")
            .arg(proc.path())
            .arg("--cgroup-root")
            .arg(cg.path())
            .env("KUBECONFIG", log.path().join("no-such-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log_path).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tidal-agent"),
    );
    let pid = agent.0.id();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(get(port, "/readyz", "*/*"), Some((200, _))) {
        assert!(Instant::now() < deadline, "agent never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Exhaust its descriptors: idle connections (it closes them after 5 s without a head).
    let held: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(pid) - before;
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        text.contains("accept failed; backing off"),
        "the agent never ran out of descriptors ({} connections held):\n{text}",
        held.len()
    );
    assert!(
        used < 0.5,
        "{used:.2} CPU seconds in 2 s while accept failed: the loop spins"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(get(port, "/healthz", "*/*"), Some((200, _))) {
        assert!(
            Instant::now() < deadline,
            "never served again after the connections closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("out of descriptors: {used:.3} CPU s in 2 s; serving again after they were freed");
}
