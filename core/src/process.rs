//! Process plumbing shared by both binaries: the tracing setup and the shutdown signal.

/// Where the log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTo {
    /// The agent: a DaemonSet's logs (its tests read stdout).
    Stdout,
    /// The scaler: its subcommands (`decide`, `simulate`) print results on stdout.
    Stderr,
}

/// Installs the fmt subscriber, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing(to: LogTo) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a pod's log (kubectl logs, a log shipper) gets plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match to {
        LogTo::Stdout => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        LogTo::Stderr => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
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
