//! What the real-node benchmarks share (`node` and `peers`): a section made of parts, each
//! part's figures kept until that part runs again; the command line around a driver that runs
//! the chosen parts on the stack; and the arguments every part takes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use tidal_e2e::Stack;
use tidal_e2e::bench::Created;
use tidal_e2e::realnode::NodeLock;

use crate::drive::{Ended, Sink, note, step};
use crate::results::{Section, Target, fold_parts};
use crate::run::{Run, Started};

/// The results file (every part).
#[derive(clap::Args, Debug)]
pub struct Results {
    /// The results file.
    #[arg(long, default_value_os_t = crate::results::default_path())]
    pub results: PathBuf,
}

impl Results {
    /// The file, written unless `TIDAL_BENCH_WRITE=0`.
    pub fn open(&self) -> anyhow::Result<Target> {
        Target::open(Some(self.results.clone()))
    }
}

/// The release tidal-agent a part runs.
#[derive(clap::Args, Debug)]
pub struct AgentBin {
    /// The release tidal-agent.
    #[arg(long, env = "TIDAL_BENCH_AGENT_BIN", hide_env_values = true)]
    pub agent: Option<PathBuf>,
}

impl AgentBin {
    pub fn get(&self) -> anyhow::Result<&Path> {
        self.agent.as_deref().ok_or_else(|| {
            anyhow::anyhow!("TIDAL_BENCH_AGENT_BIN (or --agent) must name the release tidal-agent")
        })
    }
}

/// Where a part keeps its files, writes its section, and (instead of measuring) reads
/// figures measured before.
#[derive(clap::Args, Debug)]
pub struct Io {
    /// A directory for the driver's files: logs, and the list of what it created (default: a
    /// new temporary directory, removed at the end).
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[command(flatten)]
    pub results: Results,
    /// Write the section from the figures in FILE instead of measuring (the driver's JSON: one
    /// object per line, or the part's figures as one object).
    #[arg(long, value_name = "FILE")]
    pub from_json: Option<PathBuf>,
}

/// The arguments of a section made of parts, besides the parts' own.
#[derive(clap::Args, Debug)]
pub struct Common {
    #[command(flatten)]
    pub io: Io,
    /// How the section names the command (after the knobs that were set); default
    /// `tidal-bench <part>`.
    #[arg(long, env = "TIDAL_BENCH_INVOKED_AS")]
    pub invoked_as: Option<String>,
    /// With --from-json: why the run stopped early.
    #[arg(long, requires = "from_json")]
    pub reason: Option<String>,
    /// Write the section again from its own figures, measuring nothing.
    #[arg(long, conflicts_with = "from_json")]
    pub render: bool,
}

/// The names of the parts chosen on the command line (`--parts cost,reaction`).
pub fn chosen<T: clap::ValueEnum>(parts: &[T]) -> Vec<String> {
    parts
        .iter()
        .filter_map(|p| p.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect()
}

fn names(parts: &[String]) -> Vec<&str> {
    parts.iter().map(String::as_str).collect()
}

/// A section made of parts.
pub struct Parts {
    /// The command's name: `node`, `peers`.
    pub name: &'static str,
    pub section: Section,
    /// The knobs the section's command line states, when set.
    pub vars: &'static [&'static str],
    /// The order of the entries in the section, by kind.
    pub order: fn(&Value) -> anyhow::Result<usize>,
    /// The section from every entry, in that order.
    pub render: fn(&[Value]) -> String,
}

impl Parts {
    /// The results file after a run of `parts` (`fresh`: the driver's figures; `reason`: why
    /// it stopped early). `Err` when nothing was measured (the file is then left as it was).
    pub fn record(
        &self,
        doc: &str,
        fresh: Vec<Value>,
        reason: Option<&str>,
        parts: &[&str],
        run: &Run,
    ) -> anyhow::Result<String> {
        let old = self.section.entries(doc)?;
        let entries =
            fold_parts(old, fresh, &run.full_json(), reason, parts).map_err(anyhow::Error::msg)?;
        self.rewrite(doc, entries)
    }

    /// The results file with the section written again from its own figures.
    pub fn render_again(&self, doc: &str) -> anyhow::Result<String> {
        self.rewrite(doc, self.section.entries(doc)?)
    }

    fn rewrite(&self, doc: &str, entries: Vec<Value>) -> anyhow::Result<String> {
        anyhow::ensure!(!entries.is_empty(), "no figures to write");
        let mut keyed = entries
            .into_iter()
            .map(|r| Ok(((self.order)(&r)?, r)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        keyed.sort_by_key(|(at, _)| *at);
        let entries: Vec<Value> = keyed.into_iter().map(|(_, r)| r).collect();
        Ok(self.section.replace(doc, &(self.render)(&entries)))
    }

    /// The command: re-render, record a driver's JSON, or run `drive` (for at most `limit`
    /// seconds, in a work directory) and record what it measured.
    pub async fn main<F, Fut>(
        &self,
        common: Common,
        parts: Vec<String>,
        limit: u64,
        what: String,
        drive: F,
    ) -> anyhow::Result<ExitCode>
    where
        F: FnOnce(PathBuf, Sink, Duration) -> Fut,
        Fut: Future<Output = Ended>,
    {
        let Io {
            work,
            results,
            from_json,
        } = common.io;
        let mut target = results.open()?;
        let invoked_as = common
            .invoked_as
            .unwrap_or_else(|| format!("tidal-bench {}", self.name));
        let command = crate::run::command(self.vars, &invoked_as);
        if common.render || from_json.is_some() {
            let doc = match &from_json {
                None => self.render_again(target.doc())?,
                Some(file) => {
                    let fresh = crate::drive::json_lines(file)?;
                    let run = Started::now().finish(Some(command));
                    let reason = common.reason.as_deref();
                    self.record(target.doc(), fresh, reason, &names(&parts), &run)?
                }
            };
            target.update(doc)?;
            target.print(&self.section);
            return Ok(ExitCode::SUCCESS);
        }
        let (work, temporary) = crate::drive::work_dir(work, self.name)?;
        let started = Started::now();
        step(format!("{what} (at most {limit}s)"));
        let sink = Sink::default();
        let ended = drive(work.clone(), sink.clone(), Duration::from_secs(limit)).await;
        if temporary {
            let _ = std::fs::remove_dir_all(&work);
        }
        let reason = match ended {
            Ended::Done => None,
            Ended::Failed(reason) => {
                note(format!("the driver failed ({reason})"));
                Some(reason)
            }
            Ended::Interrupted(_) => return Ok(ExitCode::from(130)),
        };
        let run = started.finish(Some(command));
        match self.record(
            target.doc(),
            sink.take(),
            reason.as_deref(),
            &names(&parts),
            &run,
        ) {
            Ok(doc) => {
                target.update(doc)?;
                if target.writes() {
                    note(format!("results written to {}", target.path().display()));
                }
            }
            Err(e) => {
                eprintln!(
                    "ERROR: nothing was measured ({}); {} is unchanged",
                    reason.as_deref().unwrap_or(&format!("{e:#}")),
                    target.path().display()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        step("results");
        target.print(&self.section);
        if let Some(reason) = reason {
            eprintln!("ERROR: incomplete: {reason} (what was measured is in the section above)");
            return Ok(ExitCode::FAILURE);
        }
        step("done");
        Ok(ExitCode::SUCCESS)
    }
}

/// A driver's run on the stack, with the namespaces it makes listed in `work/created` so that
/// they are deleted at the end (also when it failed or was interrupted).
pub struct OnStack {
    pub stack: Stack,
    pub admin: kube::Client,
    pub created: Created,
    name: &'static str,
}

impl OnStack {
    /// The stack's admin client; `Err` (how the run ended) when the stack cannot be reached.
    pub async fn new(work: &Path, name: &'static str) -> Result<Self, Ended> {
        let setup = async {
            std::fs::create_dir_all(work)?;
            let stack = Stack::load()?;
            let admin = stack.admin_client().await?;
            Ok::<_, anyhow::Error>((stack, admin))
        };
        match setup.await {
            Ok((stack, admin)) => Ok(Self {
                stack,
                admin,
                created: Created::new(work.join("created")),
                name,
            }),
            Err(e) => Err(Ended::Failed(crate::drive::reason(&e))),
        }
    }

    /// Deletes what the run made; passes on how it ended.
    pub async fn finish(self, ended: Ended) -> Ended {
        self.created.clean_up(&self.admin).await;
        if let Ended::Interrupted(s) = ended {
            eprintln!("tidal-bench {}: interrupted by {s}; cleaned up", self.name);
        }
        ended
    }
}

/// The real node held exclusively (`NodeLock`), waiting at most `within` for the node tests to
/// release it; `None` when they did not.
pub async fn hold_node(stack: &Stack, within: Duration) -> anyhow::Result<Option<NodeLock>> {
    poll_lock(within, || NodeLock::try_exclusive(stack)).await
}

/// Tries `take` (a lock that never blocks: `Some` when taken) every 200 ms for at most
/// `within`. A run that gives up meanwhile (its time limit, SIGTERM) drops this future and
/// leaves nothing behind: a lock taken in `spawn_blocking` would leave a thread waiting for
/// the lock, and the runtime waits for that thread when the process ends.
pub async fn poll_lock<T>(
    within: Duration,
    mut take: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<Option<T>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(lock) = take()? {
            return Ok(Some(lock));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_lock(path: &Path) -> anyhow::Result<Option<std::fs::File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    #[test]
    fn a_held_lock_is_given_up_in_time_and_leaves_nothing_to_wait_for() {
        let path = std::env::temp_dir().join(format!("tidal-bench-lock-{}", std::process::id()));
        let held = try_lock(&path)
            .expect("a lock file")
            .expect("free at first");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let started = std::time::Instant::now();
        let got = runtime
            .block_on(poll_lock(Duration::from_millis(500), || try_lock(&path)))
            .expect("no error");
        assert!(got.is_none(), "held by another open file description");
        // Cancelled in the middle of a long wait (as a time limit or SIGTERM does)...
        let cancelled = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_millis(300),
                poll_lock(Duration::from_secs(3600), || try_lock(&path)),
            )
            .await
        });
        assert!(cancelled.is_err());
        // ... nothing is left for the runtime to wait for when it is dropped.
        drop(runtime);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        drop(held);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let got = runtime
            .block_on(poll_lock(Duration::from_secs(5), || try_lock(&path)))
            .expect("no error");
        assert!(got.is_some(), "free once released");
        let _ = std::fs::remove_file(&path);
    }
}
