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
