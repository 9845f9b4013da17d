//! Checking a response body's array counts before `kafka-protocol` decodes it.
//!
//! `kafka-protocol` (0.18) sizes an array's `Vec` by the count the peer sent
//! (`Vec::with_capacity(n)`) before it reads a single element. A body of a few bytes announcing
//! 2^31 elements makes it ask for hundreds of GiB at once, whatever the frame cap. Where the
//! kernel refuses that reservation (`vm.overcommit_memory` 0 with less RAM + swap, or 2), the
//! failed allocation aborts the process: one response from a hostile broker (or anyone on a
//! plaintext path to one) takes down the scaler or the agent. Seen while writing the
//! `kafka_decode` fuzz target, which then hit it in a member assignment; the upstream fix
//! (bounding the capacity by the bytes left) is not released.
//!
//! [`check`] walks the body with the wire layout of each response the client decodes, at each
//! version, exactly as the generated decoders read it, and refuses an array (or string, or
//! bytes) longer than the bytes left: every array element takes at least one byte, so such a
//! body could never decode anyway. A body it accepts has every count bounded by the frame
//! size. APIs the client never sends are not checked.

use kafka_protocol::messages::ApiKey;

/// Why a body was refused (fixed words: nothing the peer sent is echoed).
pub const TOO_LONG: &str =
    "an array, string or bytes field is longer than the rest of the response";
const SHORT: &str = "the response ends inside a field";
const NEGATIVE: &str = "a negative length";

type R = Result<(), &'static str>;

struct Walk<'a> {
    b: &'a [u8],
    /// A flexible version: compact lengths and tagged fields.
    flex: bool,
}

impl Walk<'_> {
    fn take(&mut self, n: usize) -> R {
        if n > self.b.len() {
            return Err(SHORT);
        }
        self.b = &self.b[n..];
        Ok(())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let (head, rest) = self.b.split_first_chunk::<N>().ok_or(SHORT)?;
        self.b = rest;
        Ok(*head)
    }

    fn i16(&mut self) -> R {
        self.take(2)
    }
    fn i32(&mut self) -> R {
        self.take(4)
    }
    fn i64(&mut self) -> R {
        self.take(8)
    }
    fn bool(&mut self) -> R {
        self.take(1)
    }
    fn uuid(&mut self) -> R {
        self.take(16)
    }

    /// `kafka-protocol`'s `UnsignedVarInt`: at most 5 bytes, high bits dropped.
    fn uvarint(&mut self) -> Result<u32, &'static str> {
        let mut value = 0u32;
        for i in 0..5 {
            let [b] = self.fixed::<1>()?;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length that must fit in what is left (`None`: null).
    fn len(&mut self, wide: bool) -> Result<Option<usize>, &'static str> {
        let n = if self.flex {
            match self.uvarint()? {
                0 => return Ok(None),
                n => (n - 1) as usize,
            }
        } else {
            let n = if wide {
                i32::from_be_bytes(self.fixed::<4>()?)
            } else {
                i32::from(i16::from_be_bytes(self.fixed::<2>()?))
            };
            match n {
                -1 => return Ok(None),
                n if n < 0 => return Err(NEGATIVE),
                n => n as usize,
            }
        };
        if n > self.b.len() {
            return Err(TOO_LONG);
        }
        Ok(Some(n))
    }

    fn string(&mut self) -> R {
        let n = self.len(false)?.unwrap_or(0);
        self.take(n)
    }

    fn bytes(&mut self) -> R {
        let n = self.len(true)?.unwrap_or(0);
        self.take(n)
    }

    fn array(&mut self, mut element: impl FnMut(&mut Self) -> R) -> R {
        for _ in 0..self.len(true)?.unwrap_or(0) {
            element(self)?;
        }
        Ok(())
    }

    /// The tagged fields of a flexible version; `known` walks the tags the decoder reads
    /// itself (`None`: skipped by its size, as the decoder does).
    fn tagged_with(&mut self, mut known: impl FnMut(&mut Self, u32) -> Option<R>) -> R {
        if !self.flex {
            return Ok(());
        }
        for _ in 0..self.uvarint()? {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            match known(self, tag) {
                Some(r) => r?,
                None => self.take(size)?,
            }
        }
        Ok(())
    }

    fn tagged(&mut self) -> R {
        self.tagged_with(|_, _| None)
    }

    fn when(&mut self, cond: bool, f: impl FnOnce(&mut Self) -> R) -> R {
        if cond { f(self) } else { Ok(()) }
    }
}

/// Checks a response body (after its header) of API `api_key` at `version`; returns the bytes
/// the response's fields take (the decoder reads the same). `Ok` for APIs and versions it does
/// not know: the decoder refuses an unknown version before reading anything.
pub fn check(api_key: i16, version: i16, body: &[u8]) -> Result<usize, &'static str> {
    let v = version;
    let Ok(api) = ApiKey::try_from(api_key) else {
        return Ok(0);
    };
    let (range, flex_from) = match api {
        ApiKey::ApiVersions => (0..=4, 3),
        ApiKey::Metadata => (0..=13, 9),
        ApiKey::ListOffsets => (1..=10, 6),
        ApiKey::OffsetFetch => (1..=10, 6),
        ApiKey::FindCoordinator => (0..=6, 3),
        ApiKey::DescribeGroups => (0..=6, 5),
        ApiKey::ListGroups => (0..=5, 3),
        ApiKey::SaslHandshake => (0..=1, i16::MAX),
        ApiKey::SaslAuthenticate => (0..=2, 2),
        _ => return Ok(0),
    };
    if !range.contains(&v) {
        return Ok(0);
    }
    let mut w = Walk {
        b: body,
        flex: v >= flex_from,
    };
    match api {
        ApiKey::ApiVersions => api_versions(&mut w, v),
        ApiKey::Metadata => metadata(&mut w, v),
        ApiKey::ListOffsets => list_offsets(&mut w, v),
        ApiKey::OffsetFetch => offset_fetch(&mut w, v),
        ApiKey::FindCoordinator => find_coordinator(&mut w, v),
        ApiKey::DescribeGroups => describe_groups(&mut w, v),
        ApiKey::ListGroups => list_groups(&mut w, v),
        ApiKey::SaslHandshake => {
            w.i16()?;
            w.array(|w| w.string())
        }
        _ => sasl_authenticate(&mut w, v),
    }?;
    Ok(body.len() - w.b.len())
}

/// Checks a consumer group member's assignment (`ConsumerProtocolAssignment`, after its
/// 2-byte version; versions 0-3 share one layout, none flexible) the same way; returns the
/// bytes its fields take.
pub fn check_assignment(body: &[u8]) -> Result<usize, &'static str> {
    let mut w = Walk {
        b: body,
        flex: false,
    };
    w.array(|w| {
        w.string()?;
        w.array(|w| w.i32())
    })?;
    w.bytes()?;
    Ok(body.len() - w.b.len())
}

fn api_versions(w: &mut Walk<'_>, v: i16) -> R {
    w.i16()?;
    w.array(|w| {
        w.i16()?;
        w.i16()?;
        w.i16()?;
        w.tagged()
    })?;
    w.when(v >= 1, |w| w.i32())?;
    // Tags 0 and 2: supported and finalized features ({name, i16, i16}); 1: an epoch; 3: a
    // flag.
    w.tagged_with(|w, tag| {
        let feature = |w: &mut Walk<'_>| -> R {
            w.string()?;
            w.i16()?;
            w.i16()?;
            w.tagged()
        };
        match tag {
            0 | 2 => Some(w.array(feature)),
            1 => Some(w.i64()),
            3 => Some(w.bool()),
            _ => None,
        }
    })
}

fn metadata(w: &mut Walk<'_>, v: i16) -> R {
    w.when(v >= 3, |w| w.i32())?;
    w.array(|w| {
        w.i32()?;
        w.string()?;
        w.i32()?;
        w.when(v >= 1, |w| w.string())?;
        w.tagged()
    })?;
    w.when(v >= 2, |w| w.string())?;
    w.when(v >= 1, |w| w.i32())?;
    w.array(|w| {
        w.i16()?;
        w.string()?;
        w.when(v >= 10, |w| w.uuid())?;
        w.when(v >= 1, |w| w.bool())?;
        w.array(|w| {
            w.i16()?;
            w.i32()?;
            w.i32()?;
            w.when(v >= 7, |w| w.i32())?;
            w.array(|w| w.i32())?;
            w.array(|w| w.i32())?;
            w.when(v >= 5, |w| w.array(|w| w.i32()))?;
            w.tagged()
        })?;
        w.when(v >= 8, |w| w.i32())?;
        w.tagged()
    })?;
    w.when((8..=10).contains(&v), |w| w.i32())?;
    w.when(v >= 13, |w| w.i16())?;
    w.tagged()
}

fn list_offsets(w: &mut Walk<'_>, v: i16) -> R {
    w.when(v >= 2, |w| w.i32())?;
    w.array(|w| {
        w.string()?;
        w.array(|w| {
            w.i32()?;
            w.i16()?;
            w.i64()?;
            w.i64()?;
            w.when(v >= 4, |w| w.i32())?;
            w.tagged()
        })?;
        w.tagged()
    })?;
    w.tagged()
}

fn offset_fetch(w: &mut Walk<'_>, v: i16) -> R {
    w.when(v >= 3, |w| w.i32())?;
    w.when(v <= 7, |w| {
        w.array(|w| {
            w.string()?;
            w.array(|w| {
                w.i32()?;
                w.i64()?;
                w.when(v >= 5, |w| w.i32())?;
                w.string()?;
                w.i16()?;
                w.tagged()
            })?;
            w.tagged()
        })
    })?;
    w.when((2..=7).contains(&v), |w| w.i16())?;
    w.when(v >= 8, |w| {
        w.array(|w| {
            w.string()?;
            w.array(|w| {
                w.when(v <= 9, |w| w.string())?;
                w.when(v >= 10, |w| w.uuid())?;
                w.array(|w| {
                    w.i32()?;
                    w.i64()?;
                    w.i32()?;
                    w.string()?;
                    w.i16()?;
                    w.tagged()
                })?;
                w.tagged()
            })?;
            w.i16()?;
            w.tagged()
        })
    })?;
    w.tagged()
}

fn find_coordinator(w: &mut Walk<'_>, v: i16) -> R {
    w.when(v >= 1, |w| w.i32())?;
    w.when(v <= 3, |w| {
        w.i16()?;
        w.when(v >= 1, |w| w.string())?;
        w.i32()?;
        w.string()?;
        w.i32()
    })?;
    w.when(v >= 4, |w| {
        w.array(|w| {
            w.string()?;
            w.i32()?;
            w.string()?;
            w.i32()?;
            w.i16()?;
            w.string()?;
            w.tagged()
        })
    })?;
    w.tagged()
}

fn describe_groups(w: &mut Walk<'_>, v: i16) -> R {
    w.when(v >= 1, |w| w.i32())?;
    w.array(|w| {
        w.i16()?;
        w.when(v >= 6, |w| w.string())?;
        for _ in 0..4 {
            w.string()?; // group id, state, protocol type, protocol data
        }
        w.array(|w| {
            w.string()?;
            w.when(v >= 4, |w| w.string())?;
            w.string()?;
            w.string()?;
            w.bytes()?;
            w.bytes()?;
            w.tagged()
        })?;
        w.when(v >= 3, |w| w.i32())?;
        w.tagged()
    })?;
    w.tagged()
}

fn list_groups(w: &mut Walk<'_>, v: i16) -> R {
    w.when(v >= 1, |w| w.i32())?;
    w.i16()?;
    w.array(|w| {
        w.string()?;
        w.string()?;
        w.when(v >= 4, |w| w.string())?;
        w.when(v >= 5, |w| w.string())?;
        w.tagged()
    })?;
    w.tagged()
}

fn sasl_authenticate(w: &mut Walk<'_>, v: i16) -> R {
    w.i16()?;
    w.string()?;
    w.bytes()?;
    w.when(v >= 1, |w| w.i64())?;
    w.tagged()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::api_versions_response::*;
    use kafka_protocol::messages::describe_groups_response::*;
    use kafka_protocol::messages::find_coordinator_response::*;
    use kafka_protocol::messages::list_groups_response::*;
    use kafka_protocol::messages::list_offsets_response::*;
    use kafka_protocol::messages::metadata_response::*;
    use kafka_protocol::messages::offset_fetch_response::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
    use std::collections::BTreeMap;

    fn s(v: &'static str) -> StrBytes {
        StrBytes::from_static_str(v)
    }

    fn tags() -> BTreeMap<i32, Bytes> {
        BTreeMap::from([(7, Bytes::from_static(b"xyz"))])
    }

    /// Every version of `M` at which one of `variants` encodes: `check` walks exactly the
    /// encoded bytes, and the decoder reads them too. Each version must encode once.
    fn walks_every_version<M: Encodable + Decodable + Message>(api: ApiKey, variants: &[M]) {
        for v in M::VERSIONS.min..=M::VERSIONS.max {
            let mut encoded = 0;
            for m in variants {
                let mut b = BytesMut::new();
                if m.encode(&mut b, v).is_err() {
                    continue;
                }
                encoded += 1;
                let n = check(api as i16, v, &b).unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
                assert_eq!(n, b.len(), "{api:?} v{v}: walked {n} of {} bytes", b.len());
                M::decode(&mut b.freeze(), v).unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
            }
            assert!(encoded > 0, "{api:?} v{v}: no variant encodes");
        }
    }

    #[test]
    fn every_response_the_client_decodes_is_walked_exactly_at_every_version() {
        let partition = |tagged: bool| {
            MetadataResponsePartition::default()
                .with_replica_nodes(vec![1.into(), 2.into()])
                .with_isr_nodes(vec![1.into()])
                .with_unknown_tagged_fields(if tagged { tags() } else { BTreeMap::new() })
        };
        let metadata = |tagged: bool, offline: bool| {
            MetadataResponse::default()
                .with_brokers(vec![
                    MetadataResponseBroker::default()
                        .with_host(s("h1"))
                        .with_port(9092),
                    MetadataResponseBroker::default().with_host(s("h2")),
                ])
                .with_topics(vec![
                    MetadataResponseTopic::default()
                        .with_name(Some(s("t").into()))
                        .with_partitions(vec![
                            partition(tagged),
                            partition(false).with_offline_replicas(if offline {
                                vec![3.into()]
                            } else {
                                vec![]
                            }),
                        ]),
                ])
                .with_unknown_tagged_fields(if tagged { tags() } else { BTreeMap::new() })
        };
        walks_every_version(
            ApiKey::Metadata,
            &[
                metadata(true, true),
                metadata(false, true),
                metadata(false, false),
            ],
        );

        let api_versions = |flex: bool| {
            let r = ApiVersionsResponse::default().with_api_keys(vec![
                ApiVersion::default().with_api_key(3).with_max_version(12),
                ApiVersion::default().with_api_key(18),
            ]);
            if flex {
                r.with_supported_features(vec![
                    SupportedFeatureKey::default().with_name(s("kraft.version")),
                ])
                .with_finalized_features_epoch(5)
                .with_finalized_features(vec![
                    FinalizedFeatureKey::default().with_name(s("metadata.version")),
                ])
                .with_zk_migration_ready(true)
                .with_unknown_tagged_fields(tags())
            } else {
                r
            }
        };
        walks_every_version(
            ApiKey::ApiVersions,
            &[api_versions(true), api_versions(false)],
        );

        let list_offsets = ListOffsetsResponse::default().with_topics(vec![
            ListOffsetsTopicResponse::default()
                .with_name(s("t").into())
                .with_partitions(vec![
                    ListOffsetsPartitionResponse::default().with_offset(42),
                    ListOffsetsPartitionResponse::default().with_partition_index(1),
                ]),
        ]);
        walks_every_version(ApiKey::ListOffsets, &[list_offsets]);

        let old = OffsetFetchResponse::default().with_topics(vec![
            OffsetFetchResponseTopic::default()
                .with_name(s("t").into())
                .with_partitions(vec![
                    OffsetFetchResponsePartition::default()
                        .with_committed_offset(7)
                        .with_metadata(Some(s("m"))),
                    OffsetFetchResponsePartition::default(),
                ]),
        ]);
        let topics = |name: bool| {
            OffsetFetchResponseTopics::default()
                .with_name(if name {
                    s("t").into()
                } else {
                    Default::default()
                })
                .with_partitions(vec![
                    OffsetFetchResponsePartitions::default().with_committed_offset(7),
                    OffsetFetchResponsePartitions::default().with_metadata(Some(s("m"))),
                ])
        };
        let new = |name: bool| {
            OffsetFetchResponse::default().with_groups(vec![
                OffsetFetchResponseGroup::default()
                    .with_group_id(s("g").into())
                    .with_topics(vec![topics(name), topics(name)]),
                OffsetFetchResponseGroup::default().with_group_id(s("h").into()),
            ])
        };
        walks_every_version(ApiKey::OffsetFetch, &[old, new(true), new(false)]);

        let coordinator_old = FindCoordinatorResponse::default()
            .with_host(s("broker"))
            .with_port(9092)
            .with_error_message(Some(s("none")));
        let coordinator_new = FindCoordinatorResponse::default().with_coordinators(vec![
            Coordinator::default().with_key(s("g")).with_host(s("b")),
            Coordinator::default()
                .with_key(s("h"))
                .with_error_message(None),
        ]);
        walks_every_version(ApiKey::FindCoordinator, &[coordinator_old, coordinator_new]);

        let group = |instance: bool| {
            DescribeGroupsResponse::default().with_groups(vec![
                DescribedGroup::default()
                    .with_group_id(s("g").into())
                    .with_group_state(s("Stable"))
                    .with_members(vec![
                        DescribedGroupMember::default()
                            .with_member_id(s("m1"))
                            .with_group_instance_id(if instance { Some(s("i")) } else { None })
                            .with_member_assignment(Bytes::from_static(&[0, 3, 0, 0, 0, 0])),
                        DescribedGroupMember::default().with_client_host(s("/10.0.0.1")),
                    ]),
                DescribedGroup::default(),
            ])
        };
        walks_every_version(ApiKey::DescribeGroups, &[group(true), group(false)]);

        let listed = |state: bool, kind: bool| {
            let g = ListedGroup::default()
                .with_group_id(s("g").into())
                .with_protocol_type(s("consumer"))
                .with_group_state(if state { s("Stable") } else { s("") })
                .with_group_type(if kind { s("classic") } else { s("") });
            ListGroupsResponse::default().with_groups(vec![g.clone(), g])
        };
        walks_every_version(
            ApiKey::ListGroups,
            &[
                listed(true, true),
                listed(true, false),
                listed(false, false),
            ],
        );

        walks_every_version(
            ApiKey::SaslHandshake,
            &[SaslHandshakeResponse::default()
                .with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-512")])],
        );
        walks_every_version(
            ApiKey::SaslAuthenticate,
            &[SaslAuthenticateResponse::default()
                .with_error_message(Some(s("x")))
                .with_auth_bytes(Bytes::from_static(b"r=abc,s=c2FsdA==,i=4096"))],
        );
    }

    #[test]
    fn assignments_are_walked_exactly_and_long_counts_refused() {
        use kafka_protocol::messages::consumer_protocol_assignment::*;
        let a = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(vec![
                TopicPartition::default()
                    .with_topic(s("t").into())
                    .with_partitions(vec![0, 1, 2]),
                TopicPartition::default().with_topic(s("u").into()),
            ])
            .with_user_data(Some(Bytes::from_static(b"data")));
        for v in 0..=3 {
            let mut b = BytesMut::new();
            a.encode(&mut b, v).expect("encodes");
            assert_eq!(check_assignment(&b), Ok(b.len()), "v{v}");
        }
        // Found by fuzzing (`kafka_decode`): 0x53535353 topics in 5 bytes.
        assert_eq!(
            check_assignment(&[0x53, 0x53, 0x53, 0x53, 0x53, 0x53, 0x64]),
            Err(TOO_LONG)
        );
    }

    #[test]
    fn counts_longer_than_the_body_are_refused() {
        // Metadata v0: throttle-less, brokers = i32::MAX elements in 0 bytes.
        let body = [0x7f, 0xff, 0xff, 0xff];
        assert_eq!(check(ApiKey::Metadata as i16, 0, &body), Err(TOO_LONG));
        // Metadata v12 (flexible): throttle, then a compact array of u32::MAX - 1 brokers.
        let body = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(check(ApiKey::Metadata as i16, 12, &body), Err(TOO_LONG));
        // A nested count: one topic whose partition array claims 1,000,000 elements.
        let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b't'];
        body.extend_from_slice(&1_000_000i32.to_be_bytes());
        assert_eq!(check(ApiKey::Metadata as i16, 0, &body), Err(TOO_LONG));
        // A string longer than the rest.
        let body = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, b'h'];
        assert_eq!(check(ApiKey::Metadata as i16, 0, &body), Err(TOO_LONG));
        // APIs and versions it does not know are left to the decoder.
        assert_eq!(check(ApiKey::Produce as i16, 3, &body), Ok(0));
        assert_eq!(check(ApiKey::Metadata as i16, 99, &body), Ok(0));
    }
}
