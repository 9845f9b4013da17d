//! The one HTTP/1 server loop of both binaries (`/metrics`, `/healthz`, `/readyz`), hardened
//! for a port that anything on the network can reach:
//!
//! - **Header-read timeout** ([`Limits::header_read_timeout`]): a client that does not send a
//!   whole request head in time (a slowloris, or an idle keep-alive connection) is
//!   disconnected. hyper only applies it with a timer, which the callers never set before.
//! - **Connection limit** ([`Limits::max_connections`]): past it, the loop stops accepting
//!   until a connection ends; new clients wait in the kernel's backlog instead of costing a
//!   task and a buffer each.
//! - **Accept errors back off** ([`AcceptBackoff`]): out of file descriptors (EMFILE, ENFILE)
//!   or memory, `accept` fails at once on every call, and a loop that retries at once spins a
//!   core. It waits 5 ms, doubling to 1 s (Go's `net/http` does the same), and logs once per
//!   streak.
//!
//! The handler is a plain function of the request: the servers never read request bodies.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Bounds of one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A request head must arrive within this (also bounds an idle keep-alive connection).
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 5 s for a request head (a scraper sends it at once), 64 connections (Prometheus
    /// replicas and the scaler need a few).
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 64,
        }
    }
}

/// Waits between failed `accept` calls: 5 ms, doubling, at most 1 s; reset by a success.
#[derive(Clone, Debug, Default)]
pub struct AcceptBackoff {
    current: Option<Duration>,
}

impl AcceptBackoff {
    pub const FIRST: Duration = Duration::from_millis(5);
    pub const MAX: Duration = Duration::from_secs(1);

    /// The wait after one more failure in a row, and whether it starts a streak (log it).
    pub fn failed(&mut self) -> (Duration, bool) {
        let first = self.current.is_none();
        let next = self.current.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        self.current = Some(next);
        (next, first)
    }

    /// An accept succeeded; true if it ends a streak of failures.
    pub fn succeeded(&mut self) -> bool {
        self.current.take().is_some()
    }
}

/// Serves `handle` on `listener` within `limits` until `shutdown` completes.
pub async fn serve<H, B>(
    listener: TcpListener,
    limits: Limits,
    handle: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    H: Fn(&Request<Incoming>) -> Response<B> + Clone + Send + Sync + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tracing::info!(
        addr = %listener.local_addr()?,
        header_read_timeout = ?limits.header_read_timeout,
        max_connections = limits.max_connections,
        "serving /metrics, /healthz, /readyz"
    );
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        // At the limit, wait for a connection to end before accepting another.
        let permit = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()), // closed: never happens, the semaphore lives here
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                if backoff.succeeded() {
                    tracing::info!("accepting connections again");
                }
                stream
            }
            Err(e) => {
                let (wait, first) = backoff.failed();
                if first {
                    tracing::warn!(error = %e, "accept failed; backing off (5 ms doubling to 1 s) until it works");
                }
                drop(permit);
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req: Request<Incoming>| {
                let resp = handle(&req);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "connection ended with error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    type Text = http_body_util::Full<bytes::Bytes>;

    async fn start(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            limits,
            |_req: &Request<Incoming>| Response::new(Text::from("ok\n")),
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop)
    }

    /// Reads until the peer closes, or `within` passes; true if it closed.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_head_is_disconnected() {
        let (addr, _stop) = start(Limits {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 4,
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("partial head");
        let started = Instant::now();
        assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "closed too early: {took:?}"
        );
        // An idle connection that never sends anything is closed too.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
    }

    #[tokio::test]
    async fn past_the_connection_limit_a_client_waits_for_a_free_slot() {
        let (addr, _stop) = start(Limits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 2,
        })
        .await;
        let hold_a = TcpStream::connect(addr).await.expect("a");
        let _hold_b = TcpStream::connect(addr).await.expect("b");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.expect("kernel backlog");
        third
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut buf = Vec::new();
        let waited =
            tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut buf)).await;
        assert!(waited.is_err(), "answered past the limit: {buf:?}");
        drop(hold_a);
        tokio::time::timeout(Duration::from_secs(3), third.read_to_end(&mut buf))
            .await
            .expect("answered once a slot was free")
            .expect("read");
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<_> = (0..10).map(|_| b.failed()).collect();
        assert_eq!(waits[0], (Duration::from_millis(5), true));
        assert_eq!(waits[1], (Duration::from_millis(10), false));
        assert_eq!(waits[7], (Duration::from_millis(640), false));
        assert_eq!(waits[8], (Duration::from_secs(1), false));
        assert_eq!(waits[9], (Duration::from_secs(1), false));
        assert!(b.succeeded());
        assert!(!b.succeeded());
        assert_eq!(b.failed(), (Duration::from_millis(5), true));
    }
}
