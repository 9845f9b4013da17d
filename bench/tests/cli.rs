//! The `tidal-bench` command: every part answers `--help`, and a section recorded from a
//! driver's JSON reaches the results file unless `TIDAL_BENCH_WRITE=0`, which prints it only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tidal-bench");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run(args: &[&str], write: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env("TIDAL_BENCH_WRITE", write)
        .env_remove("TIDAL_BENCH_NODE_PARTS")
        .output()
        .expect("tidal-bench runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidal-bench-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

#[test]
fn every_part_answers_help() {
    for part in ["scaler", "node", "peers", "kafka", "agent", "cgroups"] {
        let out = run(&[part, "--help"], "1");
        assert!(out.status.success(), "{part} --help: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("--results"));
    }
}

#[test]
fn a_recorded_section_is_written_or_only_printed() {
    let dir = scratch("record");
    let results = dir.join("RESULTS.md");
    let before = std::fs::read_to_string(fixtures().join("node/before.md")).expect("before.md");
    std::fs::write(&results, &before).expect("a results file");
    let json = fixtures().join("node/both.jsonl");
    let args = [
        "node",
        "--results",
        results.to_str().expect("a UTF-8 path"),
        "--from-json",
        json.to_str().expect("a UTF-8 path"),
    ];

    let out = run(&args, "0");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.starts_with("## The real node (issue #17)\n"),
        "{printed}"
    );
    assert!(printed.contains("`tidal-bench node` on "), "{printed}");
    assert!(
        !printed.contains("<!-- node:"),
        "comment lines are not printed"
    );
    assert_eq!(
        std::fs::read_to_string(&results).expect("results"),
        before,
        "TIDAL_BENCH_WRITE=0 leaves the file as it was"
    );

    let out = run(&args, "1");
    assert!(out.status.success(), "{out:?}");
    let after = std::fs::read_to_string(&results).expect("results");
    assert_ne!(after, before);
    assert!(after.contains("<!-- node:data {\"conditions\""));
    let kept = |doc: &str| doc[..doc.find("<!-- node:begin").expect("the section")].to_string();
    assert_eq!(
        kept(&after),
        kept(&before),
        "the sections before it are kept"
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("the directory")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");

    let out = run(&args, "maybe");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TIDAL_BENCH_WRITE must be 0 or 1"));
    std::fs::remove_dir_all(&dir).expect("removed");
}

#[test]
fn nothing_measured_leaves_the_file_and_fails() {
    let dir = scratch("nothing");
    let results = dir.join("RESULTS.md");
    std::fs::write(&results, "# Benchmark results\n").expect("a results file");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").expect("an empty driver output");
    let out = run(
        &[
            "peers",
            "--results",
            results.to_str().expect("a UTF-8 path"),
            "--from-json",
            empty.to_str().expect("a UTF-8 path"),
            "--reason",
            "the stack runs without its peers",
        ],
        "1",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing measured"));
    assert_eq!(
        std::fs::read_to_string(&results).expect("results"),
        "# Benchmark results\n"
    );
    std::fs::remove_dir_all(&dir).expect("removed");
}

/// `tidal-bench` with none of the knobs of this environment.
fn bare() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TIDAL_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn limit(args: &[&str], env: &[(&str, &str)]) -> u64 {
    let out = bare()
        .args(args)
        .arg("--print-limit")
        .envs(env.iter().copied())
        .output()
        .expect("tidal-bench runs");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds")
}

#[test]
fn every_part_prints_its_time_limit() {
    // 240 + lock 300 + cost 60 + 20 steps × (window 5 + 55).
    assert_eq!(limit(&["node"], &[]), 1800);
    assert_eq!(limit(&["node", "--steps", "5"], &[]), 900);
    // 240 + 300 + 2 × 10 × 180 + 1560 (the kafka part's polling cost) + 2 traces × (600 +
    // 900) + 2 × (6 × 60 + 300) (vertical, inplace) + 6 × 15 + 120.
    assert_eq!(limit(&["peers"], &[]), 10230);
    assert_eq!(
        limit(&["peers"], &[("TIDAL_BENCH_PEERS_REPLAY_SECONDS", "60")]),
        9150
    );
    // The namespaces' wait (600) + reaction (300 + 20 × 95, cleanup 60) + 1,000 policies
    // (2,100, cleanup 60, the namespaces' wait 600).
    assert_eq!(limit(&["scaler"], &[]), 5620);
    assert_eq!(
        limit(&["scaler"], &[("TIDAL_BENCH_SCALER_PARTS", "scale")]),
        3360
    );
    let kafka = [
        "kafka",
        "--bootstrap",
        "127.0.0.1:9",
        "--peer-classpath",
        "x",
    ];
    // 600 + the agent's 30 s + 2 × 30 rounds.
    assert_eq!(limit(&kafka, &[]), 690);
    assert_eq!(
        limit(&kafka, &[("TIDAL_BENCH_KAFKA_LIMIT_SECONDS", "120")]),
        120
    );
    assert_eq!(limit(&["agent", "--tree", "/nonexistent"], &[]), 180);
    assert_eq!(limit(&["cgroups", "--seconds", "5"], &[]), 125);
}

#[test]
fn a_scaler_part_that_measured_nothing_keeps_the_earlier_figures_and_fails() {
    let dir = scratch("scaler-nothing");
    let results = dir.join("RESULTS.md");
    let before = std::fs::read_to_string(fixtures().join("scaler/before.md")).expect("before.md");
    std::fs::write(&results, &before).expect("a results file");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").expect("an empty driver output");
    for part in [
        &["--part", "reaction"][..],
        &["--part", "scale", "--size", "5000"],
    ] {
        let out = bare()
            .args(["scaler", "--results"])
            .arg(&results)
            .arg("--from-json")
            .arg(&empty)
            .args(part)
            .args(["--reason", "the 3600 s time limit"])
            .env("TIDAL_BENCH_WRITE", "1")
            .output()
            .expect("tidal-bench runs");
        assert!(!out.status.success(), "{part:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("nothing measured (the 3600 s time limit)"),
            "{stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(&results).expect("results"),
            before,
            "{part:?}: the earlier figures stay"
        );
    }
    std::fs::remove_dir_all(&dir).expect("removed");
}

/// A stand-in for a process a part starts: writes its pid to `<dir>/<name>.pid`, prints a
/// version when asked, and otherwise sleeps until killed.
fn stand_in(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let pid = dir.join(format!("{name}.pid"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo {name} 1.0; exit 0; }}\necho $$ >>'{}'\nexec sleep 600\n",
            pid.display()
        ),
    )
    .expect("a stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// The pids a stand-in wrote, and whether each still runs (a zombie does not).
fn running(dir: &Path, name: &str) -> Vec<(u32, bool)> {
    std::fs::read_to_string(dir.join(format!("{name}.pid")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .map(|pid: u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            (pid, matches!(state, Some(Some(s)) if s != 'Z'))
        })
        .collect()
}

/// Starts `tidal-bench ARGS`, waits until `ready` (at most 60 s), sends SIGTERM, and gives its
/// exit status and stderr.
fn terminate(args: &[&std::ffi::OsStr], ready: impl Fn() -> bool) -> (Option<i32>, String) {
    let log = std::env::temp_dir().join(format!(
        "tidal-bench-cli-{}-{}.log",
        std::process::id(),
        args[0].to_string_lossy()
    ));
    let mut child = bare()
        .args(args)
        .env("TIDAL_BENCH_WRITE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log"))
        .spawn()
        .expect("tidal-bench starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready in 60 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "exited early: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let waited = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if waited.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("still running 30 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    (status.code(), stderr)
}

#[test]
fn agent_on_sigterm_stops_what_it_started_and_exits_130() {
    let dir = scratch("agent-sigterm");
    let agent = stand_in(&dir, "agent");
    let exporter = stand_in(&dir, "exporter");
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).expect("a tree");
    let args: Vec<&std::ffi::OsStr> = vec![
        "agent".as_ref(),
        "--agent".as_ref(),
        agent.as_os_str(),
        "--node-exporter".as_ref(),
        exporter.as_os_str(),
        "--tree".as_ref(),
        tree.as_os_str(),
        "--work".as_ref(),
        dir.as_os_str(),
    ];
    // Waiting for the three to answer: two agents and the exporter run.
    let (code, stderr) = terminate(&args, || {
        running(&dir, "agent").len() == 2 && running(&dir, "exporter").len() == 1
    });
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    for name in ["agent", "exporter"] {
        for (pid, alive) in running(&dir, name) {
            assert!(!alive, "{name} (pid {pid}) still runs: {stderr}");
        }
    }
    std::fs::remove_dir_all(&dir).expect("removed");
}

#[test]
fn kafka_on_sigterm_stops_and_exits_130() {
    let dir = scratch("kafka-sigterm");
    // No broker answers there: the run waits in its setup.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let agent = stand_in(&dir, "agent");
    let args: Vec<&std::ffi::OsStr> = vec![
        "kafka".as_ref(),
        "--bootstrap".as_ref(),
        bootstrap.as_ref(),
        "--peer-classpath".as_ref(),
        "none".as_ref(),
        "--agent".as_ref(),
        agent.as_os_str(),
    ];
    let started = std::time::Instant::now();
    let (code, stderr) = terminate(&args, || {
        started.elapsed() > std::time::Duration::from_secs(2)
    });
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    std::fs::remove_dir_all(&dir).expect("removed");
}

/// The private parents `tidal-bench cgroups` (pid `pid`) made: `tidal-bench-<pid>` in each
/// hierarchy.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let name = format!("tidal-bench-{pid}");
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join(&name))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cgroups_on_sigterm_removes_exactly_the_cgroups_it_made_and_exits_130() {
    let me = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = me
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    let probe =
        Path::new("/sys/fs/cgroup/pids").join(format!("tidal-bench-probe-{}", std::process::id()));
    let can = root
        && (std::fs::create_dir(&probe).is_ok() && std::fs::remove_dir(&probe).is_ok()
            || Path::new("/sys/fs/cgroup/cgroup.controllers").is_file());
    if !can {
        eprintln!("skipped: needs root and a writable /sys/fs/cgroup");
        return;
    }
    let dir = scratch("cgroups-sigterm");
    // It never answers /readyz: the run waits for it (at most 15 s) with its cgroups made.
    let agent = stand_in(&dir, "agent");
    let args: Vec<&std::ffi::OsStr> = vec![
        "cgroups".as_ref(),
        "--pods".as_ref(),
        "2".as_ref(),
        "--containers-per-pod".as_ref(),
        "2".as_ref(),
        "--seconds".as_ref(),
        "1".as_ref(),
        "--agent".as_ref(),
        agent.as_os_str(),
    ];
    let made = std::cell::RefCell::new(Vec::new());
    let (code, stderr) = terminate(&args, || {
        let pids = running(&dir, "agent");
        match pids.first() {
            Some(_) => {
                // The agent starts after every cgroup is made; its parent is tidal-bench.
                let parent = std::fs::read_to_string(format!("/proc/{}/stat", pids[0].0))
                    .ok()
                    .and_then(|s| {
                        s.rsplit_once(')')?
                            .1
                            .split_whitespace()
                            .nth(1)?
                            .parse()
                            .ok()
                    });
                if let Some(ppid) = parent {
                    *made.borrow_mut() = cgroups_of(ppid);
                }
                !made.borrow().is_empty()
            }
            None => false,
        }
    });
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    let made = made.into_inner();
    assert!(made.len() >= 4, "a parent in each hierarchy: {made:?}");
    for p in &made {
        assert!(!p.exists(), "{} is left: {stderr}", p.display());
    }
    for (pid, alive) in running(&dir, "agent") {
        assert!(!alive, "the agent (pid {pid}) still runs: {stderr}");
    }
    std::fs::remove_dir_all(&dir).expect("removed");
}
