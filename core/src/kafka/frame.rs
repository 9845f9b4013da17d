//! Reading one size-prefixed response frame without trusting its size.
//!
//! The 4-byte length prefix is checked against the cap before anything is allocated, and the
//! body buffer then grows only as bytes arrive: each growth step is at most
//! [`MAX_GROWTH_STEP`] and at most the bytes already received (but at least
//! [`MIN_GROWTH_STEP`]), so a peer announcing 200 MiB and sending nothing, or sending slowly,
//! costs at most what it sent plus one step.
//!
//! The cap bounds one frame; a [`FrameBudget`] shared by several clients bounds the frames of
//! all of them together: a frame's announced length is reserved from the budget (waiting,
//! within the request's timeout, while other frames hold it) before its body is read, and
//! stays reserved until the caller has decoded it. Without it, N clusters answering frames at
//! the cap at once cost N times the cap (the scaler collects up to 8 clusters concurrently).

use std::sync::Arc;

use bytes::{BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The first growth step (and the smallest).
pub const MIN_GROWTH_STEP: usize = 64 << 10;
/// The largest growth step.
pub const MAX_GROWTH_STEP: usize = 1 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length is above the cap (`len` is the peer's number: keep it out of
    /// messages shown to users).
    #[error("the response frame is larger than the cap of {max} bytes")]
    TooLarge { len: u64, max: usize },
    /// The announced length is negative.
    #[error("the response frame has an invalid length")]
    Invalid { len: i32 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Bytes of response frames that every connection sharing it may hold at once (see the module
/// documentation). Cloning shares the budget.
#[derive(Clone, Debug)]
pub struct FrameBudget {
    semaphore: Arc<Semaphore>,
    bytes: u32,
}

impl FrameBudget {
    /// A budget of `bytes` (at least 1, at most `u32::MAX`).
    pub fn new(bytes: usize) -> Self {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        Self {
            semaphore: Arc::new(Semaphore::new(bytes as usize)),
            bytes,
        }
    }

    /// The whole budget, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// The bytes no frame holds now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Waits until `len` bytes are free and holds them. A frame larger than the whole budget
    /// takes all of it, so every frame the cap allows is read eventually.
    async fn reserve(&self, len: usize) -> FramePermit {
        let n = u32::try_from(len).unwrap_or(u32::MAX).min(self.bytes);
        if n == 0 {
            return FramePermit(None);
        }
        // The semaphore is never closed.
        FramePermit(self.semaphore.clone().acquire_many_owned(n).await.ok())
    }
}

/// A frame's share of a [`FrameBudget`], given back when dropped.
#[derive(Debug)]
pub struct FramePermit(Option<OwnedSemaphorePermit>);

impl FramePermit {
    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits())
    }
}

/// Reads one frame (`[i32 length][body]`) from `r` into `buf` (cleared first) and returns the
/// body. `buf` is the caller's so the growth policy is observable; on error or cancellation it
/// holds what had arrived.
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<Bytes, FrameError> {
    read_frame_within(r, max, buf, None)
        .await
        .map(|(body, _)| body)
}

/// [`read_frame`], reserving the announced length from `budget` (waiting for it) before
/// reading the body; the permit returned holds it until dropped (after decoding the body).
pub async fn read_frame_within<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
    budget: Option<&FrameBudget>,
) -> Result<(Bytes, FramePermit), FrameError> {
    buf.clear();
    let raw = r.read_i32().await?;
    let len = usize::try_from(raw).map_err(|_| FrameError::Invalid { len: raw })?;
    if len > max {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max,
        });
    }
    let permit = match budget {
        Some(b) => b.reserve(len).await,
        None => FramePermit(None),
    };
    while buf.len() < len {
        let remaining = len - buf.len();
        if buf.capacity() == buf.len() {
            let step = buf
                .len()
                .clamp(MIN_GROWTH_STEP, MAX_GROWTH_STEP)
                .min(remaining);
            buf.reserve_exact(step);
        }
        // Reads into the spare capacity only (never past the frame's end).
        let n = r.read_buf(&mut (&mut *buf).limit(remaining)).await?;
        if n == 0 {
            return Err(FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed inside a response frame",
            )));
        }
    }
    Ok((Bytes::from(std::mem::take(buf)), permit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn a_200_mib_prefix_over_the_cap_is_refused_before_any_allocation() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        tx.write_all(&(200 * MIB as i32).to_be_bytes())
            .await
            .expect("write");
        let mut buf = Vec::new();
        let t0 = Instant::now();
        let err = read_frame(
            &mut rx,
            super::super::limits::DEFAULT_MAX_FRAME_BYTES,
            &mut buf,
        )
        .await
        .expect_err("over the cap");
        assert!(
            matches!(err, FrameError::TooLarge { len, max } if len == 200 * MIB as u64 && max == 16 * MIB),
            "{err:?}"
        );
        assert_eq!(buf.capacity(), 0, "nothing allocated");
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert!(!err.to_string().contains(&(200 * MIB).to_string()), "{err}");
    }

    #[tokio::test]
    async fn a_negative_prefix_is_invalid() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        tx.write_all(&(-5i32).to_be_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let err = read_frame(&mut rx, MIB, &mut buf)
            .await
            .expect_err("negative");
        assert!(matches!(err, FrameError::Invalid { len: -5 }), "{err:?}");
    }

    /// Writes `[len][body]` from a task (the duplex pipe is small, so the reader must drain).
    fn send(len: usize, body: Vec<u8>) -> tokio::io::DuplexStream {
        let (mut tx, rx) = tokio::io::duplex(64 << 10);
        tokio::spawn(async move {
            let _ = tx.write_all(&(len as i32).to_be_bytes()).await;
            let _ = tx.write_all(&body).await;
        });
        rx
    }

    #[tokio::test]
    async fn frames_just_under_and_at_the_default_cap_are_read_one_byte_over_is_refused() {
        let cap = super::super::limits::DEFAULT_MAX_FRAME_BYTES;
        for len in [cap - 1, cap] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut rx = send(len, body.clone());
            let mut buf = Vec::new();
            let got = read_frame(&mut rx, cap, &mut buf).await.expect("under");
            assert_eq!(got.len(), len);
            assert!(got[..] == body[..], "body intact at {len}");
        }
        let mut rx = send(cap + 1, Vec::new());
        let mut buf = Vec::new();
        let err = read_frame(&mut rx, cap, &mut buf)
            .await
            .expect_err("one over");
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err:?}");
        assert_eq!(buf.capacity(), 0);
    }

    #[tokio::test]
    async fn slow_bytes_grow_the_buffer_only_as_they_arrive() {
        // The cap is raised to 256 MiB, so a 200 MiB prefix is accepted: the body buffer must
        // still follow the bytes that actually came, not the announced length.
        let (mut tx, mut rx) = tokio::io::duplex(64 << 10);
        tx.write_all(&(200 * MIB as i32).to_be_bytes())
            .await
            .expect("write");
        tx.write_all(&[7u8; 1000]).await.expect("write");
        let mut buf = Vec::new();
        let r = tokio::time::timeout(
            Duration::from_millis(200),
            read_frame(&mut rx, 256 * MIB, &mut buf),
        )
        .await;
        assert!(r.is_err(), "the peer stalls: the read is still waiting");
        assert_eq!(buf.len(), 1000);
        assert!(
            buf.capacity() <= 1000 + MIN_GROWTH_STEP,
            "capacity {} after 1000 bytes",
            buf.capacity()
        );

        // 3 MiB more, in 64 KiB pieces: capacity stays within one step of what arrived.
        let (mut tx, mut rx) = tokio::io::duplex(64 << 10);
        let writer = tokio::spawn(async move {
            tx.write_all(&(200 * MIB as i32).to_be_bytes()).await?;
            for _ in 0..48 {
                tx.write_all(&[1u8; 64 << 10]).await?;
            }
            // Keep the pipe open: the reader waits for the rest that never comes.
            tokio::time::sleep(Duration::from_secs(2)).await;
            std::io::Result::Ok(tx)
        });
        let mut buf = Vec::new();
        let r = tokio::time::timeout(
            Duration::from_millis(500),
            read_frame(&mut rx, 256 * MIB, &mut buf),
        )
        .await;
        assert!(r.is_err(), "still waiting for the 197 MiB never sent");
        assert_eq!(buf.len(), 3 * MIB);
        assert!(
            buf.capacity() <= 3 * MIB + MAX_GROWTH_STEP,
            "capacity {} after 3 MiB",
            buf.capacity()
        );
        writer.abort();
    }

    #[tokio::test]
    async fn a_peer_closing_inside_a_frame_is_an_eof_error() {
        let mut rx = send(10, vec![1, 2, 3]);
        let mut buf = Vec::new();
        let err = read_frame(&mut rx, MIB, &mut buf).await.expect_err("short");
        assert!(
            matches!(&err, FrameError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_shared_budget_holds_a_second_frame_until_the_first_is_decoded() {
        let budget = FrameBudget::new(4096);
        let mut first = send(3000, vec![7; 3000]);
        let (mut buf1, mut buf2) = (Vec::new(), Vec::new());
        let (body, permit) = read_frame_within(&mut first, MIB, &mut buf1, Some(&budget))
            .await
            .expect("first");
        assert_eq!((body.len(), permit.bytes()), (3000, 3000));
        assert_eq!(budget.available(), 1096);
        // 3000 more do not fit while the first frame is held: its body is not read.
        let mut second = send(3000, vec![8; 3000]);
        let waiting = tokio::time::timeout(
            Duration::from_millis(300),
            read_frame_within(&mut second, MIB, &mut buf2, Some(&budget)),
        )
        .await;
        assert!(waiting.is_err(), "the second frame waits for the budget");
        assert_eq!(buf2.capacity(), 0, "nothing allocated while waiting");
        drop(permit);
        let mut second = send(3000, vec![8; 3000]);
        let (body, permit) = tokio::time::timeout(
            Duration::from_secs(2),
            read_frame_within(&mut second, MIB, &mut buf2, Some(&budget)),
        )
        .await
        .expect("read once the first is given back")
        .expect("second");
        assert_eq!((body.len(), permit.bytes()), (3000, 3000));
        drop(permit);
        assert_eq!(budget.available(), 4096);
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_budget_takes_all_of_it_and_is_read() {
        let budget = FrameBudget::new(1000);
        let mut rx = send(5000, vec![1; 5000]);
        let mut buf = Vec::new();
        let (body, permit) = tokio::time::timeout(
            Duration::from_secs(2),
            read_frame_within(&mut rx, MIB, &mut buf, Some(&budget)),
        )
        .await
        .expect("not stuck")
        .expect("read");
        assert_eq!(
            (body.len(), permit.bytes(), budget.available()),
            (5000, 1000, 0)
        );
        drop(permit);
        assert_eq!(budget.available(), 1000);
    }

    #[tokio::test]
    async fn a_refused_frame_takes_nothing_from_the_budget() {
        let budget = FrameBudget::new(MIB);
        let mut rx = send(2 * MIB, Vec::new());
        let mut buf = Vec::new();
        let err = read_frame_within(&mut rx, MIB, &mut buf, Some(&budget))
            .await
            .expect_err("over the cap");
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err:?}");
        assert_eq!(budget.available(), MIB);
    }
}
