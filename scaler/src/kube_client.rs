//! The scaler's Kubernetes API clients, with timeouts, so one hung request cannot freeze the
//! controller (kube's `Client::try_default()` has no read timeout).
//!
//! Two clients are built from the same inferred [`kube::Config`]:
//!
//! - **requests** (scale reads and writes, statuses, Events, the Lease, agent discovery):
//!   `--kube-connect-timeout-seconds` (5 s) and `--kube-read-timeout-seconds` (15 s). The
//!   read timeout is the longest wait for the next bytes of a response; it counts from when
//!   the request was written (`reset_reader_on_write`), not from when a pooled connection
//!   went idle.
//! - **watches** (the watch caches): the same connect timeout and a read timeout of
//!   [`WATCH_READ_TIMEOUT`]. A healthy watch on a quiet resource sends nothing until the API
//!   server closes it after `timeoutSeconds` ([`WATCH_SERVER_TIMEOUT`], what kube-runtime's
//!   watcher asks for by default; kube-core's `WatchParams` sends 290), and kube-runtime's
//!   watcher gives up on a stream idle for that plus 5 s and watches again. A read timeout
//!   shorter than 290 s would cut healthy watches every few minutes; 300 s never does, and
//!   still ends a connection that hangs without the watcher noticing (the initial list).
//!
//! The requests client does not retry by itself: kube's default retry layer (`Config::default_retry`)
//! repeats a request answered 429, 503 or 504 up to 15 times with a growing back-off, honouring
//! `Retry-After`. For the scaler that would replay a scale write seconds or minutes after the
//! decision, past the leadership check made before it and possibly past the lease itself, and
//! would hold the cycle meanwhile. A refused request fails at once; the controller decides
//! again at its next cycle, as the leader it is then. The watches client keeps the retries:
//! it only reads, and the API server answers 429 while a new resource's watch cache starts.

use std::time::Duration;

/// The server-side timeout kube-runtime's watcher asks for (`timeoutSeconds`, kube-core
/// `WatchParams` default).
pub const WATCH_SERVER_TIMEOUT: Duration = Duration::from_secs(290);
/// kube-runtime's idle margin on top of it (`WATCH_IDLE_TIMEOUT_MARGIN`).
pub const WATCHER_IDLE_MARGIN: Duration = Duration::from_secs(5);
/// The watches' read timeout: past the server's timeout and the watcher's own idle timeout.
pub const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The request client's timeouts (flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

/// Why the clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no Kubernetes API access (KUBECONFIG or in-cluster config): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Build(#[from] kube::Error),
}

/// The two clients.
#[derive(Clone)]
pub struct Clients {
    pub requests: kube::Client,
    pub watches: kube::Client,
}

/// The request and watch configs from `base` (see the module docs).
pub fn configure(base: kube::Config, t: Timeouts) -> (kube::Config, kube::Config) {
    let mut requests = base;
    requests.connect_timeout = Some(t.connect);
    requests.read_timeout = Some(t.read);
    requests.reset_reader_on_write = true;
    requests.default_retry = false;
    let mut watches = requests.clone();
    watches.read_timeout = Some(WATCH_READ_TIMEOUT);
    // Watches only read: a retried list is harmless, and the API server answers 429 ("storage
    // is (re)initializing") while a new resource's watch cache starts.
    watches.default_retry = true;
    (requests, watches)
}

/// Both clients, from the inferred config (KUBECONFIG or in-cluster).
pub async fn clients(t: Timeouts) -> Result<Clients, ClientError> {
    let (requests, watches) = configure(kube::Config::infer().await?, t);
    Ok(Clients {
        requests: kube::Client::try_from(requests)?,
        watches: kube::Client::try_from(watches)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn base() -> kube::Config {
        kube::Config::new("http://127.0.0.1:1".parse().expect("url"))
    }

    #[test]
    fn watches_outlive_the_servers_watch_timeout_and_requests_do_not_hang() {
        let t = Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(15),
        };
        let (requests, watches) = configure(base(), t);
        assert_eq!(requests.connect_timeout, Some(t.connect));
        assert_eq!(requests.read_timeout, Some(t.read));
        assert!(requests.reset_reader_on_write);
        assert_eq!(watches.connect_timeout, Some(t.connect));
        let watch_read = watches.read_timeout.expect("a watch read timeout");
        assert!(
            watch_read > WATCH_SERVER_TIMEOUT + WATCHER_IDLE_MARGIN,
            "a quiet healthy watch would be cut"
        );
        assert!(watches.reset_reader_on_write);
    }

    /// An API server that refuses every request with 429 and `Retry-After: 1` (what API
    /// Priority and Fairness sends): the scale write is sent once and fails at once, so it
    /// can never land later, after the leadership check that allowed it.
    #[tokio::test]
    async fn a_429_is_not_retried_so_a_write_cannot_land_after_its_leadership_check() {
        use std::io::{Read, Write};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", server.local_addr().expect("addr"));
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for stream in server.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 8192];
                let _ = stream.read(&mut buf);
                counter.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","code":429}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let (requests, watches) = configure(
            kube::Config::new(url.parse().expect("url")),
            Timeouts {
                connect: Duration::from_secs(1),
                read: Duration::from_secs(5),
            },
        );
        assert!(!requests.default_retry && watches.default_retry);
        let client = kube::Client::try_from(requests).expect("client");
        let deploys: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
            kube::Api::namespaced(client, "shop");
        let started = std::time::Instant::now();
        let scale = serde_json::json!({"spec": {"replicas": 6}});
        let got = tokio::time::timeout(
            Duration::from_secs(20),
            deploys.patch_scale(
                "web",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&scale),
            ),
        )
        .await
        .expect("not retried for 20 s");
        assert!(
            matches!(&got, Err(kube::Error::Api(e)) if e.code == 429),
            "{got:?}"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 1, "the write was sent again");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "waited {:?}: the Retry-After was honoured",
            started.elapsed()
        );
    }

    /// An API server that accepts and never answers: a request fails after the read
    /// timeout, instead of hanging.
    #[tokio::test]
    async fn a_hung_api_server_fails_the_request_after_the_read_timeout() {
        let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", hung.local_addr().expect("addr"));
        let (requests, _) = configure(
            kube::Config::new(url.parse().expect("url")),
            Timeouts {
                connect: Duration::from_secs(1),
                read: Duration::from_millis(300),
            },
        );
        let client = kube::Client::try_from(requests).expect("client");
        let pods: kube::Api<Pod> = kube::Api::namespaced(client, "shop");
        let started = std::time::Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(10), pods.get("web"))
            .await
            .expect("bounded by the read timeout, not the test's");
        assert!(got.is_err(), "{got:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        drop(hung);
    }
}
