//! `tidal-scaler --log-format json` as the binary: `run` against an API server that is not
//! there (a kubeconfig naming a closed port; building the client does not connect) logs its
//! start-up on stderr, where text goes too, one JSON object per line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: \"http://127.0.0.1:1\"}
users:
  - name: nobody
    user: {}
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody}
current-context: nowhere
";

#[test]
fn run_with_json_log_format_writes_json_lines_on_stderr() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("log_format");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let kubeconfig = dir.join(format!("kubeconfig-{}", std::process::id()));
    std::fs::write(&kubeconfig, KUBECONFIG).expect("kubeconfig written");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidal-scaler"));
    // The environment twins of the flags must not leak in from the caller.
    for (key, _) in std::env::vars() {
        if key.starts_with("TIDAL_SCALER_") {
            cmd.env_remove(key);
        }
    }
    let mut child = Kill(
        cmd.args([
            "--log-format",
            "json",
            "run",
            "--leader-elect=false",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts"),
    );
    let stderr = child.0.stderr.take().expect("stderr is piped");

    // Read stderr on a thread until the "tidal-scaler starting" line (or EOF), so a scaler
    // that hangs or exits cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let done = line.contains("tidal-scaler starting");
            if tx.send(line).is_err() || done {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains("tidal-scaler starting");
                lines.push(line);
                if done {
                    break;
                }
            }
            Err(e) => {
                panic!("no \"tidal-scaler starting\" line ({e:?}); stderr so far: {lines:#?}")
            }
        }
    }

    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let first = &parsed[0];
    assert!(first["level"].is_string(), "{first}");
    assert!(first["fields"]["message"].is_string(), "{first}");
    assert!(first["timestamp"].is_string(), "{first}");
    // --leader-elect=false says so, as a warning, before the start line.
    assert!(
        parsed.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("leader election is off"))),
        "{lines:#?}"
    );
    let starting = parsed.last().expect("a line");
    assert_eq!(starting["level"], "INFO", "{starting}");
    assert_eq!(starting["fields"]["message"], "tidal-scaler starting");
    assert_eq!(starting["fields"]["agents"], false, "{starting}");
    assert_eq!(starting["fields"]["prometheus"], false, "{starting}");
    // Nothing on stdout: the log is on stderr, as in text format.
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut out = String::new();
    if let Some(mut stdout) = child.0.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    assert!(out.is_empty(), "stdout: {out}");
    let _ = std::fs::remove_file(&kubeconfig);
}
