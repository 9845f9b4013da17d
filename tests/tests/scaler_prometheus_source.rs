//! The scaler's Prometheus source ([`tidal_scaler::sources::prometheus::PrometheusSource`])
//! against the stack's real Prometheus: instant vectors with labels, NaN-only results as
//! `NoData`, Prometheus's own parse errors, an unreachable server, and batched queries.

use std::time::Duration;

use tidal_e2e::{Stack, free_port};
use tidal_scaler::sources::SourceError;
use tidal_scaler::sources::prometheus::PrometheusSource;

type R = anyhow::Result<()>;

fn source() -> anyhow::Result<PrometheusSource> {
    let stack = Stack::load()?;
    Ok(PrometheusSource::new(
        stack.prometheus_url()?,
        Duration::from_secs(5),
    )?)
}

#[tokio::test]
async fn up_returns_samples_with_a_job_label() -> R {
    let prom = source()?;
    let samples = prom.query("up").await?;
    assert!(!samples.is_empty());
    assert!(
        samples.iter().all(|s| s.labels.contains_key("job")),
        "{samples:?}"
    );
    assert!(samples.iter().all(|s| s.value.is_finite()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    assert!(
        samples
            .iter()
            .all(|s| (s.timestamp_unix_seconds - now).abs() < 60.0),
        "{samples:?}"
    );
    Ok(())
}

#[tokio::test]
async fn nan_only_is_no_data_naming_the_query() -> R {
    let prom = source()?;
    match prom.query("0/0").await {
        Err(e @ SourceError::NoData { .. }) => {
            assert!(e.to_string().contains("\"0/0\""), "{e}");
        }
        other => anyhow::bail!("expected NoData, got {other:?}"),
    }
    match prom.query("up{job=\"no-such-job-tidal\"}").await {
        Err(SourceError::NoData { detail, .. }) => assert_eq!(detail, "empty result"),
        other => anyhow::bail!("expected NoData, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn syntax_error_is_http_with_prometheus_message_and_the_query() -> R {
    let prom = source()?;
    match prom.query("sum(").await {
        Err(e @ SourceError::Http { .. }) => {
            let msg = e.to_string();
            eprintln!("{msg}");
            assert!(msg.contains("parse error"), "{msg}");
            assert!(msg.contains("\"sum(\""), "{msg}");
            assert!(msg.contains("HTTP 400"), "{msg}");
            assert_eq!(e.label(), "http_error");
        }
        other => anyhow::bail!("expected an Http error, got {other:?}"),
    }
    match prom.query("up[1m]").await {
        Err(e @ SourceError::Malformed { .. }) => {
            assert!(e.to_string().contains("matrix"), "{e}");
        }
        other => anyhow::bail!("expected Malformed for a matrix, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn unreachable_server() -> R {
    let port = free_port()?;
    let prom = PrometheusSource::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2))?;
    match prom.query("up").await {
        Err(e @ SourceError::Unreachable { .. }) => {
            eprintln!("{e}");
            assert!(
                e.to_string()
                    .contains(&format!("http://127.0.0.1:{port}/api/v1/query")),
                "{e}"
            );
        }
        other => anyhow::bail!("expected Unreachable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn query_all_runs_each_distinct_query_once() -> R {
    let prom = source()?;
    let queries: Vec<String> = ["up", "count(up)", "sum(", "up"]
        .iter()
        .map(|q| q.to_string())
        .collect();
    let results = prom.query_all(&queries).await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(matches!(&results["up"], Ok(s) if !s.is_empty()));
    let count = results["count(up)"]
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(count.len(), 1);
    assert!(count[0].value >= 1.0);
    assert!(matches!(&results["sum("], Err(SourceError::Http { .. })));
    Ok(())
}

/// A bearer token and a CA file against a real server that checks bearer tokens over TLS: the
/// stack's API server (no Prometheus API lives there, so an accepted token meets a 404 and a
/// wrong one a 401). A Prometheus's own `web.config.file` has no bearer tokens; they are
/// checked by the proxies in front of it, which check them as the API server does.
#[tokio::test]
async fn a_bearer_token_from_a_file_is_sent_and_checked_by_a_real_server() -> R {
    use tidal_scaler::sources::http::PrometheusAuth;
    let stack = Stack::load()?;
    let ca = stack.var("TIDAL_CA_FILE")?;
    let auth = |token_file: &str| PrometheusAuth {
        bearer_token_file: Some(token_file.into()),
        basic: None,
        tls: tidal_core::tls::TlsFiles {
            ca_file: Some(ca.into()),
            ..Default::default()
        },
    };
    let apiserver = stack.var("TIDAL_APISERVER")?;
    let status_of = |source: PrometheusSource| async move {
        match source.query("vector(1)").await {
            Err(SourceError::Http { status, .. }) => Ok(status),
            other => Err(anyhow::anyhow!("expected an HTTP error, got {other:?}")),
        }
    };
    let admin = auth(stack.var("TIDAL_ADMIN_TOKEN_FILE")?);
    let accepted = PrometheusSource::with_auth(apiserver, Duration::from_secs(5), admin.clone())?;
    assert_eq!(status_of(accepted).await?, 404, "the token is accepted");
    let wrong = std::env::temp_dir().join(tidal_e2e::unique("tidal-wrong-token"));
    std::fs::write(&wrong, "not-a-token-5d1e\n")?;
    let refused = PrometheusSource::with_auth(
        apiserver,
        Duration::from_secs(5),
        auth(&wrong.display().to_string()),
    )?;
    let err = refused.query("vector(1)").await.expect_err("refused");
    let _ = std::fs::remove_file(&wrong);
    let msg = err.to_string();
    assert!(msg.contains("HTTP 401"), "{msg}");
    assert!(!msg.contains("not-a-token-5d1e"), "{msg}");
    // Without the CA the server's certificate is not trusted: no token leaves the process.
    let untrusted = PrometheusSource::with_auth(
        apiserver,
        Duration::from_secs(5),
        PrometheusAuth {
            tls: Default::default(),
            ..admin
        },
    )?;
    match untrusted.query("vector(1)").await {
        Err(e @ SourceError::Unreachable { .. }) => {
            assert!(e.to_string().contains("certificate"), "{e}")
        }
        other => anyhow::bail!("expected an untrusted certificate, got {other:?}"),
    }
    Ok(())
}
