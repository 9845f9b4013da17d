//! A scripted fake broker for tests: a tokio `TcpListener` on 127.0.0.1 whose answers a test
//! decides per request. Only for what a real broker cannot be made to do (a 200 MiB length
//! prefix, 10,000 advertised brokers, deliberately slow or garbage replies).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, MetadataResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the fake saw it.
#[derive(Clone, Copy, Debug)]
pub struct Req {
    pub api_key: i16,
    pub version: i16,
    pub correlation: i32,
}

/// What the fake does with one request.
pub enum Action {
    /// Write these bytes (a whole frame, or anything at all).
    Send(Vec<u8>),
    /// Write these bytes `chunk` at a time, sleeping `every` between chunks.
    Dribble {
        bytes: Vec<u8>,
        chunk: usize,
        every: Duration,
    },
    /// Keep the connection open and never answer.
    Stall,
    /// Close the connection.
    Close,
}

type Script = Arc<dyn Fn(Req) -> Action + Send + Sync>;

/// A running fake broker; the task ends when the test's runtime does.
pub struct Fake {
    pub addr: String,
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Fake {
    /// Listens on 127.0.0.1 (an ephemeral port) and answers with `script`.
    pub async fn start(script: impl Fn(Req) -> Action + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let script: Script = Arc::new(script);
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, script.clone()));
            }
        });
        Self {
            addr: format!("127.0.0.1:{port}"),
            port,
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, script: Script) {
    loop {
        let Ok(len) = stream.read_i32().await else {
            return;
        };
        let mut body = vec![0u8; usize::try_from(len).unwrap_or(0)];
        if stream.read_exact(&mut body).await.is_err() || body.len() < 8 {
            return;
        }
        let req = Req {
            api_key: i16::from_be_bytes([body[0], body[1]]),
            version: i16::from_be_bytes([body[2], body[3]]),
            correlation: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        };
        match script(req) {
            Action::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Action::Dribble {
                bytes,
                chunk,
                every,
            } => {
                for piece in bytes.chunks(chunk.max(1)) {
                    if stream.write_all(piece).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            }
            Action::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Action::Close => return,
        }
    }
}

/// `[length][response header][body]` for `req`, at the request's version.
pub fn frame<T: Encodable + HeaderVersion>(req: Req, body: &T) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    ResponseHeader::default()
        .with_correlation_id(req.correlation)
        .encode(&mut buf, T::header_version(req.version))
        .expect("header");
    body.encode(&mut buf, req.version).expect("body");
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// The ApiVersions answer of a Kafka 3.x broker for the APIs the client uses.
pub fn api_versions(req: Req) -> Vec<u8> {
    frame(req, &api_versions_body())
}

pub fn api_versions_body() -> ApiVersionsResponse {
    let keys = [
        (2, 1, 7),  // ListOffsets
        (3, 1, 12), // Metadata
        (9, 1, 8),  // OffsetFetch
        (10, 0, 4), // FindCoordinator
        (15, 0, 5), // DescribeGroups
        (16, 0, 4), // ListGroups
        (18, 0, 3), // ApiVersions
    ];
    ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

/// A Metadata answer with `brokers` (node id, host, port) and one topic of `partitions`
/// partitions led by the first broker.
pub fn metadata(req: Req, brokers: &[(i32, String, i32)], partitions: i32) -> Vec<u8> {
    let leader = brokers.first().map_or(-1, |b| b.0);
    let body = MetadataResponse::default()
        .with_brokers(
            brokers
                .iter()
                .map(|(id, host, port)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(*id))
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_port(*port)
                })
                .collect(),
        )
        .with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(leader))
                        })
                        .collect(),
                ),
        ]);
    frame(req, &body)
}
