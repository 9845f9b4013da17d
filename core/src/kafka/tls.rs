//! TLS for broker connections: the connector built from the shared client settings
//! ([`crate::tls::TlsFiles`], CA, client certificate and key), plus the name to verify.
//!
//! The name checked is the broker's host from its advertised address, or `server_name` when
//! the certificate is issued for another name.

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::error::KafkaError;
use crate::tls::{TlsFieldNames, TlsFiles};

/// TLS settings of a cluster (the config file's `tls` object).
pub type TlsConfig = TlsFiles;

/// A ready-to-use TLS connector plus the name override.
#[derive(Clone)]
pub struct Tls {
    pub(crate) connector: TlsConnector,
    server_name: Option<String>,
}

impl Tls {
    /// Builds the connector once per client. Errors name the cluster, the field and the file.
    pub fn new(cluster: &str, cfg: &TlsConfig) -> Result<Self, KafkaError> {
        let config = cfg
            .client_config(TlsFieldNames::FILE)
            .map_err(|detail| KafkaError::Tls {
                cluster: cluster.to_string(),
                detail,
            })?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: cfg.server_name.clone(),
        })
    }

    /// The name to verify for a broker at `addr` (`host:port`).
    pub fn server_name(&self, addr: &str) -> Result<ServerName<'static>, String> {
        let host = match &self.server_name {
            Some(n) => n.as_str(),
            None => addr
                .rsplit_once(':')
                .map_or(addr, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']'),
        };
        ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
    }
}

/// Why a TLS handshake failed, in fixed words: the certificate's names, the alert and the
/// bytes the server sent are not echoed (they go to the debug log).
pub fn handshake_failure(e: &std::io::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return format!("connection failed during the handshake ({})", e.kind());
    };
    let cert = |c: &C| match c {
        C::UnknownIssuer => "unknown issuer",
        C::NotValidForName | C::NotValidForNameContext { .. } => "not valid for the server name",
        C::Expired | C::ExpiredContext { .. } => "expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet",
        C::BadSignature => "bad signature",
        C::Revoked => "revoked",
        C::BadEncoding => "malformed",
        _ => "rejected",
    };
    match tls {
        E::InvalidCertificate(c) => format!("invalid peer certificate: {}", cert(c)),
        E::NoCertificatesPresented => "the server presented no certificate".into(),
        E::AlertReceived(_) => "the server ended the handshake with an alert".into(),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::PeerSentOversizedRecord => "the server does not speak TLS on this port".into(),
        E::PeerIncompatible(_) => "no TLS version or cipher suite in common".into(),
        _ => "TLS protocol error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_names_the_field_and_path() {
        let cfg = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = Tls::new("prod", &cfg)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("prod")
                && err.contains("tls.ca_file")
                && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        let empty = std::env::temp_dir().join(format!("tidal-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = Tls::new(
            "prod",
            &TlsConfig {
                ca_file: Some(empty.clone()),
                ..TlsConfig::default()
            },
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("no certificate"), "{err}");
        let _ = std::fs::remove_file(empty);
    }
}
