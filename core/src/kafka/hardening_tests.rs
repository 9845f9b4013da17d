//! The client against a scripted fake broker (`fake.rs`): frame caps, the round deadline, the
//! per-round caps and status messages that do not echo what a server sent. A real broker cannot
//! be made to send a 200 MiB length prefix, 10,000 advertised brokers or slow replies.

use std::time::{Duration, Instant};

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsResponse};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

use super::client::{Client, ClientConfig, Selection};
use super::conn::Connection;
use super::error::KafkaError;
use super::fake::{Action, Fake, Req, api_versions, api_versions_body, frame, metadata};
use super::limits::{Cap, DEFAULT_MAX_FRAME_BYTES};

const MIB: usize = 1 << 20;
const API_VERSIONS: i16 = 18;
const METADATA: i16 = 3;
const LIST_GROUPS: i16 = 16;

fn config(addrs: &[&str]) -> ClientConfig {
    let mut cfg = ClientConfig::new("fake", addrs);
    cfg.request_timeout = Duration::from_secs(2);
    cfg.round_timeout = Duration::from_secs(5);
    cfg
}

/// The single error inside a NoBrokerReachable.
fn only_attempt(err: KafkaError) -> KafkaError {
    match err {
        KafkaError::NoBrokerReachable { mut attempts, .. } if attempts.len() == 1 => {
            attempts.remove(0)
        }
        other => panic!("expected one attempt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_200_mib_length_prefix_is_refused_fast_naming_the_broker_and_the_cap() {
    let fake = Fake::start(|_| Action::Send((200 * MIB as i32).to_be_bytes().to_vec())).await;
    let mut client = Client::new(config(&[&fake.addr])).expect("client");
    let t0 = Instant::now();
    let err = client.collect(&Selection::All).await.expect_err("refused");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    let msg = err.to_string();
    let inner = only_attempt(err);
    assert!(
        matches!(&inner, KafkaError::FrameTooLarge { broker, api: "ApiVersions", len, max }
            if *broker == fake.addr && *len == 200 * MIB as u64 && *max == DEFAULT_MAX_FRAME_BYTES),
        "{inner:?}"
    );
    assert_eq!(inner.reason(), "frame_too_large");
    assert!(
        msg.contains(&fake.addr) && msg.contains("16777216") && msg.contains("max_frame_bytes"),
        "{msg}"
    );
    assert!(!msg.contains(&(200 * MIB).to_string()), "no echo: {msg}");
}

#[tokio::test]
async fn a_frame_just_under_or_at_the_cap_is_read_one_byte_over_is_refused() {
    let fake = Fake::start(|r| Action::Send(api_versions(r))).await;
    // The body length of the fake's ApiVersions answer (the frame minus its prefix).
    let req = Req {
        api_key: API_VERSIONS,
        version: 3,
        correlation: 1,
    };
    let len = api_versions(req).len() - 4;
    for cap in [len + 1, len] {
        let conn =
            Connection::connect(&fake.addr, "t", Duration::from_secs(2), cap, None, None).await;
        assert!(conn.is_ok(), "cap {cap}, frame {len}: {:?}", conn.err());
    }
    let err = Connection::connect(&fake.addr, "t", Duration::from_secs(2), len - 1, None, None)
        .await
        .err()
        .expect("one byte over the cap");
    assert!(
        matches!(err, KafkaError::FrameTooLarge { max, .. } if max == len - 1),
        "{err:?}"
    );
}

#[tokio::test]
async fn slow_bootstrap_brokers_end_at_the_round_deadline_not_one_timeout_each() {
    // Three bootstrap brokers that accept and never answer: tried one after another, with a
    // 1 s request timeout each, they would take 3 s; the round ends at its 1.5 s deadline.
    let fakes = [
        Fake::start(|_| Action::Stall).await,
        Fake::start(|_| Action::Stall).await,
        Fake::start(|_| Action::Stall).await,
    ];
    let addrs: Vec<&str> = fakes.iter().map(|f| f.addr.as_str()).collect();
    let mut cfg = config(&addrs);
    cfg.request_timeout = Duration::from_secs(1);
    cfg.round_timeout = Duration::from_millis(1500);
    let mut client = Client::new(cfg).expect("client");
    let t0 = Instant::now();
    let err = client.collect(&Selection::All).await.expect_err("deadline");
    let took = t0.elapsed();
    assert!(
        matches!(&err, KafkaError::RoundTimeout { cluster, after } if cluster == "fake" && *after == Duration::from_millis(1500)),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert_eq!(err.reason(), "timeout");
    assert!(err.to_string().contains("round_timeout"), "{err}");
}

#[tokio::test]
async fn a_reply_dribbling_in_slowly_hits_the_round_deadline_and_its_connection_is_dropped() {
    // Metadata is fast; ListGroups arrives one byte every 100 ms, well within the request
    // timeout per byte but not within the 1 s round.
    let fake = Fake::start(|r| match r.api_key {
        API_VERSIONS => Action::Send(api_versions(r)),
        LIST_GROUPS => Action::Dribble {
            bytes: frame(r, &ListGroupsResponse::default()),
            chunk: 1,
            every: Duration::from_millis(100),
        },
        _ => Action::Close,
    })
    .await;
    let port = fake.port as i32;
    let fake = {
        // Metadata advertises the fake itself as node 1.
        let inner = fake;
        let addr = inner.addr.clone();
        let again = Fake::start(move |r| match r.api_key {
            API_VERSIONS => Action::Send(api_versions(r)),
            METADATA => Action::Send(metadata(r, &[(1, "127.0.0.1".into(), port)], 1)),
            _ => Action::Close,
        })
        .await;
        (again, inner, addr)
    };
    let (bootstrap, slow, slow_addr) = fake;
    let mut cfg = config(&[&bootstrap.addr]);
    cfg.request_timeout = Duration::from_secs(10);
    cfg.round_timeout = Duration::from_secs(1);
    let mut client = Client::new(cfg).expect("client");
    let t0 = Instant::now();
    let err = client.collect(&Selection::All).await.expect_err("deadline");
    assert!(matches!(err, KafkaError::RoundTimeout { .. }), "{err:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(1800),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(slow.accepted(), 1, "{slow_addr}");
    // The connection cut mid-frame is dropped, never reused; the bootstrap one is kept.
    assert!(!client.is_connected(&slow_addr), "{slow_addr}");
    assert!(client.is_connected(&bootstrap.addr));
}

#[tokio::test]
async fn ten_thousand_advertised_brokers_hit_the_broker_cap_and_none_is_contacted() {
    let fake = Fake::start(|r| match r.api_key {
        API_VERSIONS => Action::Send(api_versions(r)),
        METADATA => {
            let brokers: Vec<(i32, String, i32)> = (0..10_000)
                .map(|i| (i, "127.0.0.1".to_string(), 1 + i))
                .collect();
            Action::Send(metadata(r, &brokers, 1))
        }
        _ => Action::Close,
    })
    .await;
    let mut client = Client::new(config(&[&fake.addr])).expect("client");
    let t0 = Instant::now();
    let err = client.collect(&Selection::All).await.expect_err("cap");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(
        matches!(&err, KafkaError::TooMany { broker, cap: Cap::Brokers, max: 1000, .. } if *broker == fake.addr),
        "{err:?}"
    );
    assert_eq!(err.reason(), "cap");
    let msg = err.to_string();
    assert!(
        msg.contains("max_brokers") && msg.contains("advertised brokers"),
        "{msg}"
    );
    assert_eq!(fake.accepted(), 1, "only the bootstrap broker");
}

/// A fake that advertises itself as node 1 with `partitions` partitions and lists `groups`.
async fn cluster(partitions: i32, groups: usize) -> Fake {
    let port = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let p = port.clone();
    let fake = Fake::start(move |r| match r.api_key {
        API_VERSIONS => Action::Send(api_versions(r)),
        METADATA => {
            let me = p.load(std::sync::atomic::Ordering::SeqCst);
            Action::Send(metadata(r, &[(1, "127.0.0.1".into(), me)], partitions))
        }
        LIST_GROUPS => Action::Send(frame(
            r,
            &ListGroupsResponse::default().with_groups(
                (0..groups)
                    .map(|i| {
                        ListedGroup::default()
                            .with_group_id(GroupId(StrBytes::from_string(format!("g{i}"))))
                            .with_protocol_type(StrBytes::from_static_str("consumer"))
                    })
                    .collect(),
            ),
        )),
        _ => Action::Close,
    })
    .await;
    port.store(fake.port as i32, std::sync::atomic::Ordering::SeqCst);
    fake
}

#[tokio::test]
async fn partitions_and_groups_over_their_caps_are_refused_naming_the_cap() {
    let fake = cluster(50, 0).await;
    let mut cfg = config(&[&fake.addr]);
    cfg.limits.max_partitions = 10;
    let err = Client::new(cfg)
        .expect("client")
        .collect(&Selection::All)
        .await
        .expect_err("cap");
    assert!(
        matches!(
            err,
            KafkaError::TooMany {
                cap: Cap::Partitions,
                max: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_partitions"), "{err}");

    let fake = cluster(1, 20).await;
    let mut cfg = config(&[&fake.addr]);
    cfg.limits.max_groups = 10;
    let err = Client::new(cfg.clone())
        .expect("client")
        .collect(&Selection::All)
        .await
        .expect_err("cap");
    assert!(
        matches!(
            err,
            KafkaError::TooMany {
                cap: Cap::Groups,
                max: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_groups"), "{err}");
    // Listed groups the selection does not ask for do not count.
    let round = Client::new(cfg)
        .expect("client")
        .collect(&Selection::Groups(vec!["g3".into()]))
        .await
        .expect("under the cap");
    assert!(round.groups.contains_key("g3"), "{:?}", round.groups.keys());
}

#[tokio::test]
async fn errors_do_not_echo_what_a_foreign_server_sent() {
    // An HTTP server: its first 4 bytes ("HTTP") read as a 1.2 GB length prefix.
    let http = Fake::start(|_| {
        Action::Send(b"HTTP/1.1 400 Bad Request\r\nServer: secret-banner\r\n\r\n".to_vec())
    })
    .await;
    // A frame of plausible length full of text (an SSH banner, say).
    let garbage = Fake::start(|_| {
        let text = b"SSH-2.0-OpenSSH_9.6 secret-banner and more text to fill a frame".to_vec();
        let mut f = (text.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&text);
        Action::Send(f)
    })
    .await;
    for (fake, want) in [(&http, "frame_too_large"), (&garbage, "codec")] {
        let err = Client::new(config(&[&fake.addr]))
            .expect("client")
            .collect(&Selection::All)
            .await
            .expect_err("not kafka");
        let msg = err.to_string();
        let inner = only_attempt(err);
        assert_eq!(inner.reason(), want, "{inner:?}");
        assert!(
            msg.contains(&fake.addr) && msg.contains("ApiVersions"),
            "{msg}"
        );
        for secret in ["HTTP", "SSH", "secret-banner", "1213486160", "OpenSSH"] {
            assert!(!msg.contains(secret), "{secret} echoed: {msg}");
        }
    }

    // A Kafka-speaking server advertising a broker whose "host" is a message.
    let port = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let p = port.clone();
    let evil = Fake::start(move |r| match r.api_key {
        API_VERSIONS => Action::Send(api_versions(r)),
        METADATA => {
            let me = p.load(std::sync::atomic::Ordering::SeqCst);
            Action::Send(metadata(
                r,
                &[
                    (1, "127.0.0.1".into(), me),
                    (2, "secret banner\n<b>x</b>".into(), 9092),
                ],
                1,
            ))
        }
        _ => Action::Close,
    })
    .await;
    port.store(evil.port as i32, std::sync::atomic::Ordering::SeqCst);
    let round = Client::new(config(&[&evil.addr]))
        .expect("client")
        .collect(&Selection::All)
        .await
        .expect("a round");
    let all: Vec<String> = round.errors.iter().map(|e| e.to_string()).collect();
    assert!(
        round
            .errors
            .iter()
            .any(|e| matches!(e, KafkaError::BadAdvertisedAddress { node_id: 2, .. })),
        "{all:?}"
    );
    assert!(!all.join(" ").contains("secret"), "{all:?}");
}

#[test]
fn the_fake_api_versions_frame_is_what_the_client_decodes() {
    // Guards the just-under/over test: its length is the encoded body.
    let body = api_versions_body();
    let mut buf = bytes::BytesMut::new();
    body.encode(&mut buf, 3).expect("encodes");
    assert_eq!(
        kafka_protocol::messages::ApiVersionsResponse::header_version(3),
        0
    );
    let req = Req {
        api_key: API_VERSIONS,
        version: 3,
        correlation: 9,
    };
    // prefix (4) + header v0 (4: correlation id) + body
    assert_eq!(api_versions(req).len(), 4 + 4 + buf.len());
}
