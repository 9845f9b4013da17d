//! Process plumbing shared by the binaries: the tracing setup, the shutdown signal and the
//! command-line convention that every flag has an environment twin.

/// Where the log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTo {
    /// The agent: a DaemonSet's logs (its tests read stdout).
    Stdout,
    /// The scaler: its offline subcommands (`decide`, `recommend`, ...) print results on stdout.
    Stderr,
}

/// The shape of each log line (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: time, level, target, message, `key=value` fields (colours only on
    /// a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log shippers: `timestamp`, `level`, `target`, `fields`
    /// (with `message`) and, inside a span, `span` and `spans`.
    Json,
}

/// Installs the fmt subscriber, filtered by `RUST_LOG` (default `info`), writing `format`
/// lines to the stream `to` names (the same stream for both formats).
pub fn init_tracing(to: LogTo, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a pod's log (kubectl logs, a log shipper) gets plain text.
    use std::io::IsTerminal;
    use tracing_subscriber::util::SubscriberInitExt;
    match to {
        LogTo::Stdout => subscriber(
            format,
            filter,
            std::io::stdout,
            std::io::stdout().is_terminal(),
        )
        .init(),
        LogTo::Stderr => subscriber(
            format,
            filter,
            std::io::stderr,
            std::io::stderr().is_terminal(),
        )
        .init(),
    }
}

/// The fmt subscriber of [`init_tracing`], writing to `writer`; `ansi` colours text lines
/// (never JSON ones).
pub fn subscriber<W>(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(builder.json().with_ansi(false).finish()),
    }
}

/// Completes on SIGTERM (the kubelet stopping the pod) or Ctrl-C. If SIGTERM cannot be
/// listened for, says so and waits for Ctrl-C only.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// For each binary's CLI test: panics unless `cmd` is a consistent clap definition
/// (`Command::debug_assert`) in which every flag, in every subcommand, has an
/// environment-variable twin (the convention: any flag can also be set from the environment).
pub fn assert_cli_conventions(cmd: clap::Command) {
    cmd.clone().debug_assert();
    let missing = flags_without_env_twin(&cmd);
    assert!(missing.is_empty(), "flags without an env twin: {missing:?}");
}

/// The flags of `cmd` and of its subcommands, at any depth, that have no environment-variable
/// twin (`help` and `version` apart), as `sub --flag`.
fn flags_without_env_twin(cmd: &clap::Command) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![(String::new(), cmd)];
    while let Some((path, cmd)) = todo.pop() {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.get_long().is_some()
                && arg.get_env().is_none()
                && !matches!(id, "help" | "version")
            {
                out.push(format!("{path}--{id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            todo.push((format!("{path}{} ", sub.get_name()), sub));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer, one per event (what `MakeWriter` hands out).
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    /// Logs three events (one inside a span, one below the filter) through the subscriber of
    /// `format` and returns what it wrote.
    fn logged(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let sub = subscriber(
            format,
            tracing_subscriber::EnvFilter::new("info"),
            buffer.clone(),
            true,
        );
        tracing::subscriber::with_default(sub, || {
            tracing::info!(listen = "127.0.0.1:9464", interval = 1.5, "starting");
            tracing::debug!("filtered out");
            let span = tracing::info_span!("cycle", policy = "shop/orders");
            let _entered = span.enter();
            tracing::warn!(error = %"connection refused\nretrying", "source \"kafka\" failed");
        });
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).expect("UTF-8 log")
    }

    #[test]
    fn json_format_writes_one_object_per_line_with_level_fields_and_message() {
        let out = logged(LogFormat::Json);
        assert!(out.ends_with('\n'), "{out:?}");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        let first = &lines[0];
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["fields"]["message"], "starting");
        assert_eq!(first["fields"]["listen"], "127.0.0.1:9464");
        assert_eq!(first["fields"]["interval"], 1.5);
        assert!(first["timestamp"].is_string(), "{first}");
        assert_eq!(first["target"], module_path!());
        let second = &lines[1];
        assert_eq!(second["level"], "WARN");
        // Quotes and newlines in a message or field stay inside the one line, escaped.
        assert_eq!(second["fields"]["message"], "source \"kafka\" failed");
        assert_eq!(second["fields"]["error"], "connection refused\nretrying");
        assert_eq!(second["span"]["name"], "cycle");
        assert_eq!(second["span"]["policy"], "shop/orders");
        // No colour codes even when colours are asked for.
        assert!(!out.contains('\u{1b}'), "{out:?}");
    }

    #[test]
    fn text_format_is_the_default_and_not_json() {
        assert_eq!(LogFormat::default(), LogFormat::Text);
        let out = logged(LogFormat::Text);
        let first = out.lines().next().expect("a line");
        assert!(
            serde_json::from_str::<serde_json::Value>(first).is_err(),
            "{first}"
        );
        assert!(first.contains("starting"), "{first}");
        assert!(!out.contains("filtered out"), "{out}");
    }

    #[test]
    fn flags_without_env_twin_are_listed_with_their_subcommand() {
        let cmd = clap::Command::new("t")
            .arg(clap::Arg::new("a").long("a").env("T_A"))
            .arg(clap::Arg::new("b").long("b"))
            .subcommand(
                clap::Command::new("s")
                    .arg(clap::Arg::new("c").long("c"))
                    .arg(clap::Arg::new("pos")),
            );
        assert_eq!(flags_without_env_twin(&cmd), ["--b", "s --c"]);
    }

    #[test]
    #[should_panic(expected = "flags without an env twin: [\"--b\"]")]
    fn a_flag_without_env_twin_fails_the_convention() {
        assert_cli_conventions(
            clap::Command::new("t")
                .arg(clap::Arg::new("a").long("a").env("T_A"))
                .arg(clap::Arg::new("b").long("b")),
        );
    }
}
