//! A Prometheus of the stack's build that answers only over TLS (the stack's server
//! certificate, whose SAN holds 127.0.0.1 and the node IP), to a client certificate of the
//! stack CA that also sends basic auth `tidal` / [`PASSWORD`] (a bcrypt hash in its
//! `--web.config.file`), for the scaler's secured-source tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tidal_core::tls::TlsFiles;
use tidal_scaler::sources::http::{PROMETHEUS_TLS_FLAGS, client_builder_with};

use crate::{ChildGuard, Stack, free_port_on, unique, wait_for};

/// The basic-auth user the server accepts.
pub const USERNAME: &str = "tidal";
/// Its password.
pub const PASSWORD: &str = "prom-Secret-7f3a";

/// A running secured Prometheus; killed, and its directory removed, on drop.
pub struct SecuredPrometheus {
    _child: ChildGuard,
    /// `https://<host>:<port>`.
    pub url: String,
    /// Its config, data and log; tests may put their own files here (removed with it).
    pub dir: PathBuf,
}

impl Drop for SecuredPrometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The stack CA, and the client certificate and key it signed.
pub fn client_tls(stack: &Stack) -> anyhow::Result<TlsFiles> {
    Ok(TlsFiles {
        ca_file: Some(stack.var("TIDAL_CA_FILE")?.into()),
        cert_file: Some(stack.var("TIDAL_CLIENT_CERT_FILE")?.into()),
        key_file: Some(stack.var("TIDAL_CLIENT_KEY_FILE")?.into()),
        server_name: None,
    })
}

/// Starts the server on `host` (127.0.0.1, or the node IP for pods of the real node) and a
/// free port; returns once it is ready, having checked that it refuses a request without
/// basic auth (401) and a connection without a client certificate.
pub async fn start(stack: &Stack, host: &str) -> anyhow::Result<SecuredPrometheus> {
    let dir = std::env::temp_dir().join(unique("tidal-secured-prom"));
    std::fs::create_dir_all(&dir)?;
    let hash = bcrypt::hash(PASSWORD, 5)?;
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\nbasic_auth_users:\n  {USERNAME}: {hash}\n",
            stack.var("TIDAL_SERVER_CERT_FILE")?,
            stack.var("TIDAL_SERVER_KEY_FILE")?,
            stack.var("TIDAL_CA_FILE")?,
        ),
    )?;
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 15s\n",
    )?;
    let port = free_port_on(host)?;
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let child = ChildGuard::spawn(
        Command::new(stack.var("TIDAL_PROMETHEUS_BIN")?)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--web.config.file={}",
                dir.join("web.yml").display()
            ))
            .arg(format!("--web.listen-address={host}:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    // From here on, a failure kills the server and removes its directory.
    let prom = SecuredPrometheus {
        _child: child,
        url: format!("https://{host}:{port}"),
        dir,
    };
    let http = client_builder_with(
        client_tls(stack)?
            .client_config(PROMETHEUS_TLS_FLAGS)
            .map_err(anyhow::Error::msg)?,
    )
    .timeout(Duration::from_secs(2))
    .build()?;
    let ready = format!("{}/-/ready", prom.url);
    wait_for(
        "the secured Prometheus is ready",
        Duration::from_secs(60),
        || async {
            let resp = http
                .get(&ready)
                .basic_auth(USERNAME, Some(PASSWORD))
                .send()
                .await
                .ok()?;
            resp.status().is_success().then_some(())
        },
    )
    .await
    .map_err(|e| {
        let log = std::fs::read_to_string(prom.dir.join("prometheus.log")).unwrap_or_default();
        anyhow::anyhow!("{e}\nprometheus log:\n{log}")
    })?;
    // The server refuses what it should: no password (401), no client certificate.
    let anonymous = http
        .get(format!("{}/api/v1/query?query=vector(1)", prom.url))
        .send()
        .await?;
    anyhow::ensure!(
        anonymous.status() == 401,
        "without basic auth: {}",
        anonymous.status()
    );
    let no_cert = client_builder_with(
        TlsFiles {
            ca_file: Some(stack.var("TIDAL_CA_FILE")?.into()),
            ..TlsFiles::default()
        }
        .client_config(PROMETHEUS_TLS_FLAGS)
        .map_err(anyhow::Error::msg)?,
    )
    .build()?
    .get(&ready)
    .basic_auth(USERNAME, Some(PASSWORD))
    .send()
    .await;
    anyhow::ensure!(
        no_cert.is_err(),
        "without a client certificate: {no_cert:?}"
    );
    Ok(prom)
}
