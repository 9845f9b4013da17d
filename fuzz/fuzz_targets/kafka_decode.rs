//! Kafka response decoding: `tidal_core::kafka::conn::decode_response` for every API the client
//! sends (at each version it can negotiate), and `client::decode_assignment` (a consumer
//! group member's assignment bytes).
//!
//! The input is a response body as a broker would send it after the length prefix, plus one
//! byte choosing the API and version. Checks: arbitrary bytes give an error or a value, never a
//! panic, and decoding never allocates beyond what the body could hold (the libFuzzer
//! `-malloc_limit_mb` that `scripts/fuzz.sh` sets turns an allocation sized by an announced
//! count, not by the bytes, into a crash).
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiVersionsRequest, DescribeGroupsRequest, FindCoordinatorRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::Request;
use libfuzzer_sys::fuzz_target;
use tidal_core::kafka::client::decode_assignment;
use tidal_core::kafka::conn::decode_response;

/// Decodes `body` as `R`'s response at the version `pick` selects among `R::VERSIONS`, with
/// the correlation id the body itself carries (so the decoder gets past the header).
fn decode<R: Request>(pick: u8, body: &[u8]) {
    let (min, max) = (R::VERSIONS.min, R::VERSIONS.max);
    let version = min + (i16::from(pick) % (max - min + 1));
    let correlation = body
        .get(..4)
        .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let _ = decode_response::<R>(Bytes::copy_from_slice(body), version, correlation);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let pick = sel >> 4;
    match sel % 10 {
        0 => decode::<ApiVersionsRequest>(pick, body),
        1 => decode::<MetadataRequest>(pick, body),
        2 => decode::<ListOffsetsRequest>(pick, body),
        3 => decode::<OffsetFetchRequest>(pick, body),
        4 => decode::<FindCoordinatorRequest>(pick, body),
        5 => decode::<DescribeGroupsRequest>(pick, body),
        6 => decode::<ListGroupsRequest>(pick, body),
        7 => decode::<SaslHandshakeRequest>(pick, body),
        8 => decode::<SaslAuthenticateRequest>(pick, body),
        _ => {
            let parts = decode_assignment(Bytes::copy_from_slice(body));
            // Each assigned partition takes at least 4 bytes of the input.
            assert!(parts.len() <= body.len() / 4, "{} partitions", parts.len());
        }
    }
});
