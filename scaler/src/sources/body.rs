//! Response bodies read with a size cap: a server cannot make the scaler hold more than the
//! cap (plus one chunk as it arrives) in memory, whatever it announces or sends.
//!
//! A `Content-Length` over the cap fails before any of the body is read; otherwise the body
//! is read chunk by chunk and reading stops at the first chunk that takes it past the cap.
//! Past the cap the answer is [`SourceError::TooLarge`] naming the URL, the cap and the flag
//! that sets it, and nothing of that body is used.

use super::{SourceError, error_chain};

/// The default cap of one agent scrape (`--agent-max-body-bytes`): a node with 1,000
/// containers serves about 3.5 MB.
pub const DEFAULT_AGENT_MAX_BODY_BYTES: usize = 64 << 20;
/// The default cap of one Prometheus answer (`--prometheus-max-body-bytes`).
pub const DEFAULT_PROMETHEUS_MAX_BODY_BYTES: usize = 16 << 20;

/// A size cap on one backend's response bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyCap {
    /// The most bytes a body may have.
    pub bytes: usize,
    /// The flag that sets it, for the error message.
    pub flag: &'static str,
}

/// A body being collected under a cap.
#[derive(Debug)]
pub struct Capped {
    buf: Vec<u8>,
    cap: usize,
}

/// The body went past the cap (the chunk that did so was not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCap;

impl Capped {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
        }
    }

    /// Appends `chunk`, or refuses it when the body would then be larger than the cap.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), OverCap> {
        if chunk.len() > self.cap.saturating_sub(self.buf.len()) {
            return Err(OverCap);
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads `resp`'s body as text (invalid UTF-8 replaced) under `cap`. `backend` and `url`
/// name the source in errors; a failed read is [`SourceError::Unreachable`] with `context`
/// before the cause.
pub async fn read_text(
    mut resp: reqwest::Response,
    cap: BodyCap,
    backend: &'static str,
    url: &str,
    context: &str,
) -> Result<String, SourceError> {
    let too_large = || SourceError::TooLarge {
        backend,
        url: url.to_string(),
        cap: cap.bytes,
        flag: cap.flag,
    };
    if resp.content_length().is_some_and(|n| n > cap.bytes as u64) {
        return Err(too_large());
    }
    let mut body = Capped::new(cap.bytes);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.push(&chunk).map_err(|OverCap| too_large())?,
            Ok(None) => break,
            Err(e) => {
                return Err(SourceError::Unreachable {
                    backend,
                    url: url.to_string(),
                    detail: format!("{context}{}", error_chain(&e.without_url())),
                });
            }
        }
    }
    Ok(match String::from_utf8(body.into_bytes()) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn capped_keeps_up_to_the_cap_and_refuses_the_chunk_past_it() {
        let mut c = Capped::new(10);
        assert_eq!(c.push(b"12345"), Ok(()));
        assert_eq!(c.push(b"67890"), Ok(()), "exactly the cap is fine");
        assert_eq!(c.push(b"x"), Err(OverCap));
        assert_eq!(c.len(), 10, "the refused chunk was not kept");
        let mut c = Capped::new(10);
        assert_eq!(c.push(&[0; 11]), Err(OverCap));
        assert!(c.is_empty());
    }

    /// How a test server sends its body.
    #[derive(Clone, Copy, Debug)]
    pub(crate) enum Framing {
        /// With a `Content-Length`.
        Length,
        /// Without one: the body ends when the connection closes.
        Close,
    }

    /// An HTTP server on 127.0.0.1 that answers every request with `head_delay`, then `len`
    /// bytes made by repeating `body` (written in 64 KiB chunks), counting the bytes it
    /// managed to write in the returned counter.
    pub(crate) async fn serve_body(
        body: Vec<u8>,
        len: usize,
        framing: Framing,
        head_delay: Duration,
    ) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let written = Arc::new(AtomicUsize::new(0));
        let counter = written.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (body, counter) = (body.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut req = [0u8; 8192];
                    let _ = s.read(&mut req).await;
                    tokio::time::sleep(head_delay).await;
                    let length = match framing {
                        Framing::Length => format!("content-length: {len}\r\n"),
                        Framing::Close => String::new(),
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n{length}connection: close\r\n\r\n"
                    );
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut chunk = Vec::with_capacity(64 << 10);
                    let mut sent = 0;
                    while sent < len {
                        chunk.clear();
                        while chunk.len() < (64 << 10).min(len - sent) {
                            let take = body.len().min((64 << 10).min(len - sent) - chunk.len());
                            chunk.extend_from_slice(&body[..take]);
                        }
                        if s.write_all(&chunk).await.is_err() {
                            return;
                        }
                        sent += chunk.len();
                        counter.fetch_add(chunk.len(), Ordering::Relaxed);
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        (url, written, task)
    }

    async fn get(url: &str, cap: usize) -> Result<String, SourceError> {
        let resp = crate::sources::http::client_builder()
            .build()
            .expect("client")
            .get(url)
            .send()
            .await
            .expect("response");
        read_text(
            resp,
            BodyCap {
                bytes: cap,
                flag: "--test-max-body-bytes",
            },
            "test",
            url,
            "",
        )
        .await
    }

    /// Both framings: a body of exactly the cap is read whole; one byte more is `TooLarge`
    /// naming the URL, the cap and the flag.
    #[tokio::test]
    async fn at_the_cap_is_read_and_one_byte_over_is_too_large() {
        const CAP: usize = 300_000;
        for framing in [Framing::Length, Framing::Close] {
            let (url, _, task) = serve_body(b"x".to_vec(), CAP, framing, Duration::ZERO).await;
            let got = get(&url, CAP).await.expect("at the cap");
            assert_eq!(got.len(), CAP, "{framing:?}");
            task.abort();
            let (url, _, task) = serve_body(b"x".to_vec(), CAP + 1, framing, Duration::ZERO).await;
            match get(&url, CAP).await {
                Err(e @ SourceError::TooLarge { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&url)
                            && msg.contains("300000 bytes")
                            && msg.contains("--test-max-body-bytes"),
                        "{msg}"
                    );
                    assert_eq!(e.label(), "too_large");
                }
                other => panic!("{framing:?}: {other:?}"),
            }
            task.abort();
        }
    }

    /// A 256 MiB body without a length: the read stops at the cap, long before the server
    /// could send it all (what it managed to write is the cap plus the sockets' buffers).
    #[tokio::test]
    async fn reading_stops_at_the_cap() {
        const CAP: usize = 1 << 20;
        let (url, written, task) =
            serve_body(b"y".to_vec(), 256 << 20, Framing::Close, Duration::ZERO).await;
        let started = std::time::Instant::now();
        let got = get(&url, CAP).await;
        assert!(matches!(got, Err(SourceError::TooLarge { .. })), "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = written.load(Ordering::Relaxed);
        assert!(
            sent < CAP + (32 << 20),
            "the server wrote {sent} bytes of 256 MiB: the client kept reading"
        );
        task.abort();
    }
}
