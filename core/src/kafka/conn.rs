//! One connection to one Kafka broker: framing, correlation ids, timeouts and API-version
//! negotiation (an `ApiVersions` exchange on connect, then every request is sent at
//! `min(our newest, broker's newest)` of its API).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::{Credentials, Mechanism, Scram, ScramError, new_nonce, plain_message};
use super::error::KafkaError;
use super::frame::{FrameBudget, FrameError, FramePermit, read_frame_within};
use super::tls::{Tls, handshake_failure};

/// A byte stream to a broker: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// ApiVersions is sent at v3 (flexible); every Kafka ≥ 2.4 answers it, and Kafka 4 needs it.
const API_VERSIONS_VERSION: i16 = 3;

/// A negotiated connection to one broker.
pub struct Connection {
    addr: String,
    stream: Box<dyn Io>,
    next_correlation: i32,
    /// api key -> (min, max) version the broker supports.
    versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
    client_id: StrBytes,
    /// Responses announcing more than this are refused ([`KafkaError::FrameTooLarge`]).
    max_frame_bytes: usize,
    /// Shared with other connections: a response's bytes are reserved from it while it is
    /// read and decoded.
    budget: Option<FrameBudget>,
}

/// How a request failed between writing it and having its body.
enum WireError {
    Io(std::io::Error),
    Frame(FrameError),
}

impl Connection {
    /// Connects to `addr`, negotiates API versions and, with `sasl`, authenticates; each step
    /// is bounded by `timeout`, and every response frame by `max_frame_bytes`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        max_frame_bytes: usize,
        sasl: Option<&Credentials>,
        tls: Option<&Tls>,
    ) -> Result<Self, KafkaError> {
        Self::connect_within(addr, client_id, timeout, max_frame_bytes, None, sasl, tls).await
    }

    /// [`connect`](Self::connect), every response frame (ApiVersions and SASL included) also
    /// reserved from `budget` while it is read and decoded (waiting for it counts against the
    /// request's timeout).
    pub async fn connect_within(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        max_frame_bytes: usize,
        budget: Option<FrameBudget>,
        sasl: Option<&Credentials>,
        tls: Option<&Tls>,
    ) -> Result<Self, KafkaError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| KafkaError::Timeout {
                broker: addr.to_string(),
                api: "connect",
            })?
            .map_err(|source| KafkaError::Connect {
                broker: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Io> = match tls {
            None => Box::new(stream),
            Some(tls) => {
                let handshake_err = |detail: String| KafkaError::TlsHandshake {
                    broker: addr.to_string(),
                    detail,
                };
                let name = tls.server_name(addr).map_err(handshake_err)?;
                let s = tokio::time::timeout(timeout, tls.connector.connect(name, stream))
                    .await
                    .map_err(|_| KafkaError::Timeout {
                        broker: addr.to_string(),
                        api: "TLS handshake",
                    })?
                    .map_err(|e| {
                        tracing::debug!(broker = addr, error = %e, "TLS handshake failed");
                        handshake_err(handshake_failure(&e))
                    })?;
                Box::new(s)
            }
        };
        let mut conn = Self {
            addr: addr.to_string(),
            stream,
            next_correlation: 1,
            versions: HashMap::new(),
            timeout,
            client_id: StrBytes::from_string(client_id.to_string()),
            max_frame_bytes,
            budget,
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("tidal"))
            .with_client_software_version(StrBytes::from_static_str(crate::build::VERSION));
        let resp = conn.send_at(&req, API_VERSIONS_VERSION).await?;
        super::error::check(&conn.addr, "ApiVersions", resp.error_code)?;
        conn.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(c) = sasl {
            conn.authenticate(c).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1, then the mechanism's messages in SaslAuthenticate (KIP-152).
    async fn authenticate(&mut self, c: &Credentials) -> Result<(), KafkaError> {
        let auth_err = |broker: &str, detail: String| KafkaError::Auth {
            broker: broker.to_string(),
            detail,
        };
        let hs = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(c.mechanism.name()));
        let resp = self.send_at(&hs, 1).await?;
        if resp.error_code != 0 {
            // Only mechanism names Tidal knows are repeated; anything else is counted.
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            let known: Vec<&str> = offered
                .iter()
                .copied()
                .filter(|m| Mechanism::parse(m).is_some())
                .collect();
            let others = offered.len() - known.len();
            let mut list = known.join(", ");
            if others > 0 {
                if !list.is_empty() {
                    list.push_str(", ");
                }
                list.push_str(&format!("{others} other(s)"));
            }
            if list.is_empty() {
                list.push_str("none");
            }
            return Err(auth_err(
                &self.addr,
                format!(
                    "mechanism {} is not enabled on this listener (it offers: {list})",
                    c.mechanism.name()
                ),
            ));
        }
        match c.mechanism {
            Mechanism::Plain => {
                self.sasl_step(plain_message(c)).await?;
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let mut scram = Scram::new(c, &new_nonce());
                let server_first = self.sasl_step(scram.client_first()).await?;
                let client_final = scram
                    .client_final(&server_first)
                    .map_err(|e| auth_err(&self.addr, scram_failure(&self.addr, &e)))?;
                let server_final = self.sasl_step(client_final).await?;
                scram
                    .verify_server_final(&server_final)
                    .map_err(|e| auth_err(&self.addr, scram_failure(&self.addr, &e)))?;
            }
        }
        Ok(())
    }

    async fn sasl_step(&mut self, bytes: Vec<u8>) -> Result<Bytes, KafkaError> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let v = self.version::<SaslAuthenticateRequest>(0)?.min(2);
        let resp = self.send_at(&req, v).await?;
        if resp.error_code != 0 {
            // The server's message is its own text: logged, not put in the error.
            tracing::debug!(
                broker = %self.addr,
                code = resp.error_code,
                message = ?resp.error_message.as_ref().map(|m| m.as_str()),
                "SaslAuthenticate refused"
            );
            let name = match kafka_protocol::ResponseError::try_from_code(resp.error_code) {
                Some(kafka_protocol::ResponseError::Unknown(_)) | None => "rejected".to_string(),
                Some(e) => format!("{e} (code {})", resp.error_code),
            };
            return Err(KafkaError::Auth {
                broker: self.addr.clone(),
                detail: format!("{name}: check the username and password"),
            });
        }
        Ok(resp.auth_bytes)
    }

    /// The broker address this connection talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The version to use for `R`: the newest both sides support, at least `min_needed`.
    pub fn version<R: Request>(&self, min_needed: i16) -> Result<i16, KafkaError> {
        let api = api_name(R::KEY);
        let (bmin, bmax) =
            self.versions
                .get(&R::KEY)
                .copied()
                .ok_or_else(|| KafkaError::Unsupported {
                    broker: self.addr.clone(),
                    api,
                    detail: "not offered".into(),
                })?;
        let v = bmax.min(R::VERSIONS.max);
        if v < bmin.max(R::VERSIONS.min) || v < min_needed {
            // The broker's range is its own numbers: logged, not put in the error.
            tracing::debug!(broker = %self.addr, api, bmin, bmax, "no common version");
            return Err(KafkaError::Unsupported {
                broker: self.addr.clone(),
                api,
                detail: format!(
                    "no version in common (Tidal needs v{}..v{}, at least v{min_needed})",
                    R::VERSIONS.min,
                    R::VERSIONS.max
                ),
            });
        }
        Ok(v)
    }

    /// Sends `req` at the negotiated version (at least `min_needed`) and decodes the response.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        min_needed: i16,
    ) -> Result<(R::Response, i16), KafkaError> {
        let v = self.version::<R>(min_needed)?;
        Ok((self.send_at(req, v).await?, v))
    }

    /// Sends `req` at exactly `version`.
    pub async fn send_at<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        let api = api_name(R::KEY);
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = encode_frame(req, version, correlation, &self.client_id).map_err(|detail| {
            KafkaError::Codec {
                broker: self.addr.clone(),
                api,
                detail,
            }
        })?;
        let timeout = self.timeout;
        // `_permit` holds the frame's share of the budget until it is decoded.
        let (body, _permit) = tokio::time::timeout(timeout, self.roundtrip(&frame))
            .await
            .map_err(|_| KafkaError::Timeout {
                broker: self.addr.clone(),
                api,
            })?
            .map_err(|e| match e {
                WireError::Io(source) | WireError::Frame(FrameError::Io(source)) => {
                    KafkaError::Io {
                        broker: self.addr.clone(),
                        api,
                        source,
                    }
                }
                WireError::Frame(FrameError::TooLarge { len, max }) => {
                    tracing::debug!(broker = %self.addr, api, len, max, "response frame over the cap");
                    KafkaError::FrameTooLarge {
                        broker: self.addr.clone(),
                        api,
                        len,
                        max,
                    }
                }
                WireError::Frame(FrameError::Invalid { len }) => {
                    tracing::debug!(broker = %self.addr, api, len, "invalid response frame length");
                    KafkaError::Codec {
                        broker: self.addr.clone(),
                        api,
                        detail: format!("frame length {len}"),
                    }
                }
            })?;
        decode_response::<R>(body, version, correlation).map_err(|detail| {
            tracing::debug!(broker = %self.addr, api, %detail, "malformed response");
            KafkaError::Codec {
                broker: self.addr.clone(),
                api,
                detail,
            }
        })
    }

    async fn roundtrip(&mut self, frame: &[u8]) -> Result<(Bytes, FramePermit), WireError> {
        self.stream.write_all(frame).await.map_err(WireError::Io)?;
        let mut buf = Vec::new();
        read_frame_within(
            &mut self.stream,
            self.max_frame_bytes,
            &mut buf,
            self.budget.as_ref(),
        )
        .await
        .map_err(WireError::Frame)
    }
}

/// A failed SCRAM exchange in fixed words (the server's `e=` text goes to the debug log).
fn scram_failure(broker: &str, e: &ScramError) -> String {
    match e {
        ScramError::ServerFinal(text) => {
            tracing::debug!(broker, error = %text, "SCRAM server-final error");
            "the server refused the SCRAM proof: check the username and password".into()
        }
        ScramError::ServerFirst(_) => {
            tracing::debug!(broker, error = %e, "SCRAM server-first message");
            "the server's first SCRAM message is malformed".into()
        }
        ScramError::Nonce | ScramError::ServerSignature => e.to_string(),
    }
}

/// Encodes `[size][header][body]` for one request.
pub fn encode_frame<R: Request>(
    req: &R,
    version: i16,
    correlation: i32,
    client_id: &StrBytes,
) -> Result<BytesMut, String> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(client_id.clone()));
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(|e| e.to_string())?;
    req.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Decodes a response body (the frame without its size prefix), checking the correlation id.
pub fn decode_response<R: Request>(
    mut body: Bytes,
    version: i16,
    correlation: i32,
) -> Result<R::Response, String> {
    let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
        .map_err(|e| e.to_string())?;
    if header.correlation_id != correlation {
        return Err(format!(
            "correlation id {} does not match request {correlation}",
            header.correlation_id
        ));
    }
    // Before the decoder sizes any array by a count the peer chose (see `bounds`).
    super::bounds::check(R::KEY, version, &body)?;
    R::Response::decode(&mut body, version).map_err(|e| e.to_string())
}

/// A fixed name for an API key (used in errors and metric labels).
pub fn api_name(key: i16) -> &'static str {
    match key {
        2 => "ListOffsets",
        3 => "Metadata",
        9 => "OffsetFetch",
        10 => "FindCoordinator",
        15 => "DescribeGroups",
        16 => "ListGroups",
        17 => "SaslHandshake",
        18 => "ApiVersions",
        36 => "SaslAuthenticate",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest};

    #[test]
    fn frame_has_size_prefix_and_header() {
        let req = MetadataRequest::default();
        let frame = encode_frame(&req, 12, 7, &StrBytes::from_static_str("t")).expect("encodes");
        let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4);
        // api key 3 (Metadata), version 12, correlation 7
        assert_eq!(&frame[4..8], &[0, 3, 0, 12]);
        assert_eq!(&frame[8..12], &7i32.to_be_bytes());
    }

    #[test]
    fn wrong_correlation_is_rejected() {
        let mut body = BytesMut::new();
        let header = ResponseHeader::default().with_correlation_id(5);
        header.encode(&mut body, 0).expect("header");
        ApiVersionsResponse::default()
            .encode(&mut body, 3)
            .expect("body");
        let err = decode_response::<ApiVersionsRequest>(body.clone().freeze(), 3, 6)
            .expect_err("mismatch");
        assert!(err.contains("correlation"), "{err}");
        assert!(decode_response::<ApiVersionsRequest>(body.freeze(), 3, 5).is_ok());
    }

    /// The `kafka_decode` fuzz target's bug class (`bounds`): a 4-byte array count made the
    /// decoder reserve `count * size_of::<element>()` (hundreds of GiB) before reading an
    /// element; where the kernel refuses the reservation, the process aborts (`bounds`).
    #[test]
    fn an_array_count_over_the_body_is_an_error_not_an_abort() {
        use kafka_protocol::messages::ListGroupsRequest;
        // [correlation 1] Metadata v0: brokers = i32::MAX elements, and nothing after.
        let body = Bytes::from_static(&[0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff]);
        let err = decode_response::<MetadataRequest>(body, 0, 1).expect_err("refused");
        assert_eq!(err, super::super::bounds::TOO_LONG);
        // Flexible: [correlation 1][no header tags] ListGroups v4: throttle, error code, then
        // a compact array of u32::MAX - 1 groups.
        let body = Bytes::from_static(&[
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ]);
        let err = decode_response::<ListGroupsRequest>(body, 4, 1).expect_err("refused");
        assert_eq!(err, super::super::bounds::TOO_LONG);
    }

    #[test]
    fn truncated_body_is_an_error_not_a_panic() {
        let body = Bytes::from_static(&[0, 0, 0, 1, 0]);
        assert!(decode_response::<ApiVersionsRequest>(body, 3, 1).is_err());
    }
}
