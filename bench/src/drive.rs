//! Running a driver in this process: its results as they come (a part done before a failure
//! or the time limit keeps its figures), a time limit, SIGTERM and SIGINT, and the progress
//! lines the scripts print.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

/// A step of the run, as `scripts/lib.sh`'s `step` prints it.
pub fn step(msg: impl AsRef<str>) {
    eprintln!("\n==> {}", msg.as_ref());
}

/// A detail of the run, as `scripts/lib.sh`'s `note` prints it.
pub fn note(msg: impl AsRef<str>) {
    eprintln!("    {}", msg.as_ref());
}

/// Where a driver puts each part's figures (one JSON object per part or size) as soon as
/// they are measured.
#[derive(Clone, Default)]
pub struct Sink(Arc<Mutex<Vec<Value>>>);

impl Sink {
    pub fn emit(&self, v: Value) {
        if let Ok(mut all) = self.0.lock() {
            all.push(v);
        }
    }

    /// Everything emitted so far.
    pub fn take(&self) -> Vec<Value> {
        self.0
            .lock()
            .map(|mut all| std::mem::take(&mut *all))
            .unwrap_or_default()
    }
}

/// How a driver's run ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Done,
    /// Stopped early: the time limit (`the 600 s time limit`) or the error's first line.
    Failed(String),
    /// SIGTERM or SIGINT: the caller cleans up and exits with 130.
    Interrupted(&'static str),
}

/// SIGTERM or SIGINT, as an error: the run stops, cleans up and exits with 130.
#[derive(Debug)]
pub struct Interrupted(pub &'static str);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The first line of an error, at most 300 characters: what a section says of a run that
/// stopped early (the whole error goes to stderr).
pub fn reason(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let line = text.lines().next().unwrap_or_default().trim();
    let line = line.strip_suffix(':').unwrap_or(line).trim_end();
    let line = line.strip_suffix("; scaler log").unwrap_or(line);
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// Runs `body` for at most `limit`, stopping at SIGTERM or SIGINT. If this process is still
/// here 120 s after the limit (a driver stuck where the limit cannot reach it), it exits with
/// status 124, as `timeout` would.
pub async fn bounded<F>(limit: Duration, body: F) -> Ended
where
    F: Future<Output = anyhow::Result<()>>,
{
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    let hard = limit + Duration::from_secs(120);
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watchdog.recv_timeout(hard) {
            eprintln!(
                "tidal-bench: still running {} s after the time limit; exiting",
                hard.saturating_sub(limit).as_secs()
            );
            std::process::exit(124);
        }
    });
    // Before the body starts anything: a signal from then on is the run's to handle.
    let interrupted = tidal_e2e::bench::interrupted();
    let ended = tokio::select! {
        r = tokio::time::timeout(limit, body) => match r {
            Ok(Ok(())) => Ended::Done,
            Ok(Err(e)) => {
                note(format!("the driver failed: {e:#}"));
                Ended::Failed(reason(&e))
            }
            Err(_) => Ended::Failed(format!("the {} s time limit", limit.as_secs())),
        },
        s = interrupted => Ended::Interrupted(s),
    };
    drop(done);
    ended
}

/// SIGTERM and SIGINT for a run with no async runtime (`tidal-bench cgroups`): from
/// [`Signals::install`] on they no longer end the process at once; its loops ask
/// [`Signals::check`] (or sleep with [`Signals::sleep`]) and return `Err` once one came, so
/// that what they made is removed on the way out (by `Drop`).
#[derive(Clone)]
pub struct Signals(Arc<OnceLock<&'static str>>);

impl Signals {
    /// Handles SIGTERM and SIGINT from now on (a thread of its own waits for them).
    pub fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Registered here, before this returns: no signal is missed in between.
        let (mut term, mut int) = {
            let _in = runtime.enter();
            (
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            )
        };
        let received = Arc::new(OnceLock::new());
        let set = received.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let name = runtime.block_on(async {
                    tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    }
                });
                let _ = set.set(name);
            })?;
        Ok(Self(received))
    }

    /// The signal that came, if one did.
    pub fn received(&self) -> Option<&'static str> {
        self.0.get().copied()
    }

    /// `Err` once SIGTERM or SIGINT came.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.received() {
            Some(s) => anyhow::bail!("interrupted by {s}"),
            None => Ok(()),
        }
    }

    /// Sleeps for `d`, waking every 50 ms: `Err` as soon as SIGTERM or SIGINT came.
    pub fn sleep(&self, d: Duration) -> anyhow::Result<()> {
        let until = std::time::Instant::now() + d;
        loop {
            self.check()?;
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

/// A fresh temporary directory for the driver's files.
pub fn work_dir(given: Option<PathBuf>, name: &str) -> anyhow::Result<(PathBuf, bool)> {
    match given {
        Some(dir) => Ok((dir, false)),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "tidal-bench-{name}.{}",
                tidal_e2e::unique("run").trim_start_matches("run-")
            ));
            std::fs::create_dir_all(&dir)?;
            Ok((dir, true))
        }
    }
}

/// The driver's JSON lines in `file` (lines that start with `{`).
pub fn json_lines(file: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    text.lines()
        .filter(|l| l.trim().starts_with('{'))
        .map(|l| crate::py::loads(l).map_err(|e| anyhow::anyhow!("{}: {e}", file.display())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_ends_done_failed_or_at_its_limit_and_keeps_what_it_emitted() {
        let sink = Sink::default();
        let s = sink.clone();
        let ended = bounded(Duration::from_secs(5), async move {
            s.emit(serde_json::json!({"kind": "cost"}));
            anyhow::bail!("step 3: no scale write\nscaler log:\nline")
        })
        .await;
        assert_eq!(ended, Ended::Failed("step 3: no scale write".into()));
        assert_eq!(sink.take(), vec![serde_json::json!({"kind": "cost"})]);
        let ended = bounded(Duration::from_millis(50), std::future::pending()).await;
        assert_eq!(ended, Ended::Failed("the 0 s time limit".into()));
        assert_eq!(
            bounded(Duration::from_secs(5), async { Ok(()) }).await,
            Ended::Done
        );
        let e = anyhow::anyhow!("step 2: replicas did not become 2; scaler log:\n...");
        assert_eq!(reason(&e), "step 2: replicas did not become 2");
    }
}
