//! The HTTP client of the sources (Prometheus, the agents), and the Prometheus source's
//! credentials.
//!
//! reqwest is built with rustls and no crypto provider of its own (`rustls-no-provider`):
//! every client Tidal builds gets its rustls configuration from [`tidal_core::tls`] (ring, as
//! kube-rs and the Kafka client use), so there is one TLS stack in the binary. A
//! `reqwest::Client` made any other way would panic at build; clippy's `disallowed-methods`
//! (clippy.toml) points at [`client_builder`] instead.
//!
//! Credentials are read from their files before every request, so a rotated token or
//! password is used without a restart. They are sent only as headers, and no error says
//! what a file holds.

use std::path::PathBuf;

use tidal_core::tls::{TlsFieldNames, TlsFiles};

/// A client builder with Tidal's TLS (the system trust store, no client certificate).
#[allow(clippy::disallowed_methods)]
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(tidal_core::tls::default_client_config())
}

/// A client builder with the given TLS settings.
#[allow(clippy::disallowed_methods)]
pub fn client_builder_with(tls: rustls::ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}

/// The names of the Prometheus TLS flags, for errors.
pub const PROMETHEUS_TLS_FLAGS: TlsFieldNames = TlsFieldNames {
    ca_file: "--prometheus-ca-file",
    cert_file: "--prometheus-cert-file",
    key_file: "--prometheus-key-file",
};

/// Basic authentication: a user name and the file of its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password_file: PathBuf,
}

/// How the Prometheus source authenticates. At most one of bearer and basic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrometheusAuth {
    /// File holding a bearer token.
    pub bearer_token_file: Option<PathBuf>,
    pub basic: Option<BasicAuth>,
    /// CA, client certificate and key (an `https://` URL).
    pub tls: TlsFiles,
}

impl PrometheusAuth {
    /// Checks the combination and that the files exist, naming the flags.
    pub fn check(&self) -> Result<(), String> {
        if self.bearer_token_file.is_some() && self.basic.is_some() {
            return Err(
                "--prometheus-bearer-token-file and --prometheus-basic-auth-username \
                        are exclusive: set one"
                    .into(),
            );
        }
        let files = [
            (
                "--prometheus-bearer-token-file",
                self.bearer_token_file.as_ref(),
            ),
            (
                "--prometheus-basic-auth-password-file",
                self.basic.as_ref().map(|b| &b.password_file),
            ),
        ];
        for (flag, file) in files {
            if let Some(f) = file
                && !f.is_file()
            {
                return Err(format!("{flag}: {} is not a readable file", f.display()));
            }
        }
        if let Some(b) = &self.basic
            && b.username.is_empty()
        {
            return Err("--prometheus-basic-auth-username: must not be empty".into());
        }
        self.tls.check(PROMETHEUS_TLS_FLAGS)
    }

    /// Whether any TLS setting is given (they need an `https://` URL).
    pub fn has_tls_settings(&self) -> bool {
        self.tls != TlsFiles::default()
    }

    /// Whether credentials are sent.
    pub fn has_credentials(&self) -> bool {
        self.bearer_token_file.is_some() || self.basic.is_some()
    }

    /// Adds the credentials to a request, reading their files now. An error names the flag
    /// and the file, not what it holds.
    pub async fn apply(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        if let Some(file) = &self.bearer_token_file {
            let token = read_secret("--prometheus-bearer-token-file", file).await?;
            return Ok(req.bearer_auth(token));
        }
        if let Some(b) = &self.basic {
            let password =
                read_secret("--prometheus-basic-auth-password-file", &b.password_file).await?;
            return Ok(req.basic_auth(&b.username, Some(password)));
        }
        Ok(req)
    }
}

/// A secret file's content without its trailing newline; an empty one is an error.
async fn read_secret(flag: &str, file: &std::path::Path) -> Result<String, String> {
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|e| format!("{flag} {}: {}", file.display(), e.kind()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{flag} {}: the file is empty", file.display()));
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_combinations_name_the_flags() {
        let dir = tempfile::tempdir().expect("tmp dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t0k3n\n").expect("write");
        let both = PrometheusAuth {
            bearer_token_file: Some(token.clone()),
            basic: Some(BasicAuth {
                username: "u".into(),
                password_file: token.clone(),
            }),
            tls: TlsFiles::default(),
        };
        assert!(both.check().err().unwrap_or_default().contains("exclusive"));
        let missing = PrometheusAuth {
            bearer_token_file: Some("/nonexistent/token".into()),
            ..PrometheusAuth::default()
        };
        assert_eq!(
            missing.check().err().unwrap_or_default(),
            "--prometheus-bearer-token-file: /nonexistent/token is not a readable file"
        );
        let half_tls = PrometheusAuth {
            tls: TlsFiles {
                cert_file: Some(token),
                ..TlsFiles::default()
            },
            ..PrometheusAuth::default()
        };
        assert_eq!(
            half_tls.check().err().unwrap_or_default(),
            "--prometheus-cert-file: a client certificate needs --prometheus-key-file"
        );
    }

    #[tokio::test]
    async fn credentials_are_read_per_request_and_never_echoed() {
        let dir = tempfile::tempdir().expect("tmp dir");
        let token = dir.path().join("bearer");
        std::fs::write(&token, "first\n").expect("write");
        let auth = PrometheusAuth {
            bearer_token_file: Some(token.clone()),
            ..PrometheusAuth::default()
        };
        let http = client_builder().build().expect("client");
        let header = |req: reqwest::RequestBuilder| {
            req.build()
                .expect("request")
                .headers()
                .get(reqwest::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or_default().to_string())
        };
        let req = auth
            .apply(http.get("http://127.0.0.1:1/"))
            .await
            .expect("read");
        assert_eq!(header(req).as_deref(), Some("Bearer first"));
        std::fs::write(&token, "rotated").expect("rotate");
        let req = auth
            .apply(http.get("http://127.0.0.1:1/"))
            .await
            .expect("read");
        assert_eq!(header(req).as_deref(), Some("Bearer rotated"));
        std::fs::write(&token, "\n").expect("empty");
        let e = auth
            .apply(http.get("http://127.0.0.1:1/"))
            .await
            .err()
            .unwrap_or_default();
        assert!(e.ends_with("the file is empty"), "{e}");
        let pw = dir.path().join("password");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let basic = PrometheusAuth {
            basic: Some(BasicAuth {
                username: "tidal".into(),
                password_file: pw,
            }),
            ..PrometheusAuth::default()
        };
        let req = basic
            .apply(http.get("http://127.0.0.1:1/"))
            .await
            .expect("read");
        // base64("tidal:s3cret")
        assert_eq!(header(req).as_deref(), Some("Basic dGlkYWw6czNjcmV0"));
        let debug = format!("{basic:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
