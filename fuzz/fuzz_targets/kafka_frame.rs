//! Kafka response framing (`tidal_core::kafka::frame::read_frame`).
//!
//! The input is what a broker sends: a 4-byte big-endian length prefix and then the body (the
//! first two bytes choose the cap). Checks: the read never panics; a body comes back only when
//! the prefix is within the cap, and it is exactly the announced bytes; whatever the prefix
//! announces (up to the 16 MiB default cap and beyond), the buffer grows with the bytes that
//! actually arrived, never with the announced length.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tidal_core::kafka::frame::{FrameError, MIN_GROWTH_STEP, read_frame};
use tidal_core::kafka::limits::DEFAULT_MAX_FRAME_BYTES;

/// Polls `f` to completion. An in-memory `&[u8]` is always ready, so this never waits.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("read_frame did not finish on an in-memory reader");
}

fuzz_target!(|data: &[u8]| {
    let Some((sel, wire)) = data.split_first() else {
        return;
    };
    // The default cap, a tiny one (so both sides of the check are reached), or one from the
    // input.
    let max = match sel % 4 {
        0 => DEFAULT_MAX_FRAME_BYTES,
        1 => 0,
        2 => 16,
        _ => usize::from(*sel) * 4,
    };
    let mut reader: &[u8] = wire;
    let mut buf = Vec::new();
    let result = block_on(read_frame(&mut reader, max, &mut buf));
    let received = wire.len().saturating_sub(4);
    match result {
        Ok(body) => {
            let len = i32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]);
            assert!(
                len >= 0 && len as usize <= max,
                "accepted length {len} over cap {max}"
            );
            assert_eq!(body.len(), len as usize);
            assert_eq!(&body[..], &wire[4..4 + len as usize]);
        }
        Err(FrameError::TooLarge { len, max: m }) => {
            assert!(len > m as u64);
            assert_eq!(
                buf.capacity(),
                0,
                "allocated before refusing an over-cap frame"
            );
        }
        Err(FrameError::Invalid { len }) => assert!(len < 0),
        Err(FrameError::Io(_)) => {
            // Short input: the buffer holds what arrived, and at most one growth step more.
            assert!(buf.len() <= received);
            assert!(
                buf.capacity() <= 2 * received + MIN_GROWTH_STEP,
                "capacity {} after {received} bytes",
                buf.capacity()
            );
        }
    }
});
