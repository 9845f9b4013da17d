//! Client-side TLS, one place for every connection Tidal opens (Kafka brokers, Prometheus):
//! rustls with the ring provider (as kube-rs uses).
//!
//! The server certificate is verified against a CA file (PEM) when one is given, else against
//! the system trust store. A client certificate and its key (PEM) are presented when both are
//! given (mutual TLS). Errors name the field and the file, never a file's contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// TLS settings of a client, as read from a config file or flags. Field names are those of
/// the Kafka config file (`tls.ca_file`, ...); `field` prefixes in errors say where they came
/// from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file with the CA certificate(s) to trust; None: the system trust store.
    pub ca_file: Option<PathBuf>,
    /// PEM file with the client certificate chain (mutual TLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Name to verify instead of the server's host.
    pub server_name: Option<String>,
}

/// Names of the settings in errors: the Kafka config file's (`tls.ca_file`) or a binary's
/// flags (`--prometheus-ca-file`).
#[derive(Clone, Copy, Debug)]
pub struct TlsFieldNames {
    pub ca_file: &'static str,
    pub cert_file: &'static str,
    pub key_file: &'static str,
}

impl TlsFieldNames {
    /// The Kafka config file's names.
    pub const FILE: TlsFieldNames = TlsFieldNames {
        ca_file: "tls.ca_file",
        cert_file: "tls.cert_file",
        key_file: "tls.key_file",
    };
}

impl TlsFiles {
    /// Checks that the files exist and that a certificate comes with its key, naming the
    /// field; used when a config is read, so a typo fails at start and not at first connect.
    pub fn check(&self, names: TlsFieldNames) -> Result<(), String> {
        for (field, file) in [
            (names.ca_file, &self.ca_file),
            (names.cert_file, &self.cert_file),
            (names.key_file, &self.key_file),
        ] {
            if let Some(f) = file
                && !f.is_file()
            {
                return Err(format!("{field}: {} is not a readable file", f.display()));
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(format!(
                "{}: a client certificate needs {}",
                names.cert_file, names.key_file
            )),
            (None, Some(_)) => Err(format!(
                "{}: a client key needs {}",
                names.key_file, names.cert_file
            )),
            _ => Ok(()),
        }
    }

    /// Builds the rustls client configuration (reads the files now).
    pub fn client_config(&self, names: TlsFieldNames) -> Result<rustls::ClientConfig, String> {
        self.check(names)?;
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in load_certs(names.ca_file, path)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {}: {e}", names.ca_file, path.display()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(format!(
                        "{}: none given, and the system trust store is empty",
                        names.ca_file
                    ));
                }
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = load_certs(names.cert_file, cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!(
                        "{}: {}: no private key read ({e})",
                        names.key_file,
                        key.display()
                    )
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "{}: the key of {} does not fit this certificate ({e})",
                        names.cert_file, names.key_file
                    )
                })
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }
}

/// The crypto provider of every TLS client Tidal builds.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that trusts the system store only: the default of HTTP clients
/// that are given no TLS settings (an `http://` URL never uses it).
pub fn default_client_config() -> rustls::ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn load_certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{field}: {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{field}: {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{field}: {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(files: &TlsFiles) -> String {
        files
            .client_config(TlsFieldNames::FILE)
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn every_error_names_the_field_and_the_path() {
        let missing = TlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        assert_eq!(
            err(&missing),
            "tls.ca_file: /nonexistent/ca.pem is not a readable file"
        );
        let dir = tempfile::tempdir().expect("tmp dir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").expect("write");
        let empty = TlsFiles {
            ca_file: Some(junk.clone()),
            ..TlsFiles::default()
        };
        assert!(
            err(&empty).contains("no certificate in the file"),
            "{}",
            err(&empty)
        );
        let half = TlsFiles {
            cert_file: Some(junk.clone()),
            ..TlsFiles::default()
        };
        assert_eq!(
            err(&half),
            "tls.cert_file: a client certificate needs tls.key_file"
        );
        let flags = TlsFieldNames {
            ca_file: "--prometheus-ca-file",
            cert_file: "--prometheus-cert-file",
            key_file: "--prometheus-key-file",
        };
        let half = TlsFiles {
            key_file: Some(junk),
            ..TlsFiles::default()
        };
        assert_eq!(
            half.check(flags).err().unwrap_or_default(),
            "--prometheus-key-file: a client key needs --prometheus-cert-file"
        );
    }
}
