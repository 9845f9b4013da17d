//! tidal-core's Kafka lag client against the real Apache Kafka broker of the stack (issue #4).
//!
//! Producers and consumers are librdkafka (rdkafka), an independent client, so a bug in
//! Tidal's protocol code cannot hide by being on both sides. Every expected lag below is
//! computed from what the test produced and committed, never hard-coded from a run.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tidal_core::kafka::{
    Client, ClientConfig, Credentials, KafkaError, Mechanism, ResetPolicy, Selection, TlsConfig,
    partition_lag,
};
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::{Stack, free_port, unique};

type R = anyhow::Result<()>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_lag_per_partition_in_one_batched_round() -> R {
    let stack = Stack::load()?;
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let (a, b) = (unique("lag-a"), unique("lag-b"));
    create_topic(&bootstrap, &a, 3).await?;
    create_topic(&bootstrap, &b, 2).await?;
    let produced_a = [10i64, 20, 5];
    let produced_b = [7i64, 0];
    produce(&bootstrap, &a, &produced_a).await?;
    produce(&bootstrap, &b, &produced_b).await?;

    // g1 commits some offsets; b/1 is never committed.
    let g1 = unique("lag-g1");
    let committed_g1 = [
        (a.as_str(), 0, 4i64),
        (a.as_str(), 1, 20),
        (a.as_str(), 2, 0),
        (b.as_str(), 0, 7),
    ];
    commit(&bootstrap, &g1, &committed_g1)?;

    // g2 is a live member subscribed to `a` that never commits.
    let g2 = unique("lag-g2");
    let live: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &g2)
        .set("client.id", "tidal-e2e-live")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .create()?;
    live.subscribe(&[&a])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while live.assignment()?.count() < 3 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "consumer of {g2} got no assignment"
        );
        let _ = live.poll(Duration::from_millis(200));
    }

    let mut client = Client::new(ClientConfig::new("stack", &[&bootstrap]))?;
    let round = client
        .collect(&Selection::Groups(vec![g1.clone(), g2.clone()]))
        .await?;
    assert!(round.errors.is_empty(), "errors: {:?}", round.errors);

    // Log end offsets are exactly what was produced.
    for (topic, produced) in [(&a, &produced_a[..]), (&b, &produced_b[..])] {
        for (p, n) in produced.iter().enumerate() {
            let info = &round.partitions[&(topic.to_string(), p as i32)];
            let o = info
                .offsets
                .ok_or_else(|| anyhow::anyhow!("{topic}/{p}: no offsets"))?;
            assert_eq!((o.log_start, o.log_end), (0, *n), "{topic}/{p}");
        }
    }

    // g1: lag = produced - committed per committed partition; b/1 follows the reset policy.
    let info1 = &round.groups[&g1];
    assert_eq!(info1.error, None);
    assert!(info1.members.is_empty(), "g1 has no live members");
    let expected: BTreeMap<(String, i32), u64> = committed_g1
        .iter()
        .map(|(t, p, c)| {
            let produced = if *t == a {
                produced_a[*p as usize]
            } else {
                produced_b[*p as usize]
            };
            ((t.to_string(), *p), (produced - c) as u64)
        })
        .collect();
    for ((t, p), want) in &expected {
        let got = partition_lag(
            info1.committed.get(&(t.clone(), *p)).copied(),
            round.partitions[&(t.clone(), *p)].offsets,
            ResetPolicy::Latest,
        );
        assert_eq!(got, Some(*want), "g1 {t}/{p}");
    }
    assert!(
        !info1.committed.contains_key(&(b.clone(), 1)),
        "b/1 was never committed"
    );

    // g2: live, Stable, one member owning all of `a`, nothing committed.
    let info2 = &round.groups[&g2];
    assert_eq!(info2.state, "Stable");
    assert_eq!(info2.members.len(), 1);
    assert_eq!(info2.members[0].client_id, "tidal-e2e-live");
    let mut owned = info2.members[0].assignment.clone();
    owned.sort();
    assert_eq!(owned, (0..3).map(|p| (a.clone(), p)).collect::<Vec<_>>());
    assert!(info2.committed.is_empty());
    for p in 0..3 {
        let o = round.partitions[&(a.clone(), p)].offsets;
        let n = produced_a[p as usize] as u64;
        assert_eq!(
            partition_lag(None, o, ResetPolicy::Latest),
            Some(1),
            "KEDA latest: 1"
        );
        assert_eq!(
            partition_lag(None, o, ResetPolicy::Earliest),
            Some(n),
            "earliest: whole log"
        );
        assert_eq!(partition_lag(None, o, ResetPolicy::Zero), Some(0));
    }

    // The round is batched: 1 broker, 1 coordinator ->
    // Metadata 1 + ListGroups 1 + DescribeGroups 1 + OffsetFetch 1 + ListOffsets 2 = 6.
    let r = &round.requests.0;
    assert_eq!(r.get("Metadata"), Some(&1), "{r:?}");
    assert_eq!(r.get("ListGroups"), Some(&1), "{r:?}");
    assert_eq!(r.get("DescribeGroups"), Some(&1), "{r:?}");
    assert_eq!(r.get("OffsetFetch"), Some(&1), "{r:?}");
    assert_eq!(r.get("ListOffsets"), Some(&2), "{r:?}");
    assert_eq!(round.requests.total(), 6, "{r:?}");

    // Discovery of all groups finds both, with the same per-round cost (+ nothing per group).
    let all = client.collect(&Selection::All).await?;
    assert!(all.groups.contains_key(&g1) && all.groups.contains_key(&g2));
    assert_eq!(all.requests.total(), 6, "{:?}", all.requests);
    drop(live);
    Ok(())
}

#[tokio::test]
async fn a_named_group_unknown_to_discovery_costs_one_batched_find_coordinator() -> R {
    let stack = Stack::load()?;
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let mut client = Client::new(ClientConfig::new("stack", &[&bootstrap]))?;
    let ghosts: Vec<String> = (0..5).map(|i| unique(&format!("ghost{i}"))).collect();
    let round = client.collect(&Selection::Groups(ghosts.clone())).await?;
    assert_eq!(
        round.requests.0.get("FindCoordinator"),
        Some(&1),
        "{:?}",
        round.requests
    );
    for g in &ghosts {
        let info = &round.groups[g];
        assert!(
            info.committed.is_empty() && info.members.is_empty(),
            "{g}: {info:?}"
        );
        assert_eq!(info.state, "Dead", "a group that does not exist is Dead");
    }
    Ok(())
}

#[tokio::test]
async fn an_unreachable_broker_is_a_clear_error_not_zero_lag() -> R {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut cfg = ClientConfig::new("unreachable", &[&addr]);
    cfg.request_timeout = Duration::from_secs(2);
    let mut client = Client::new(cfg)?;
    let err = client
        .collect(&Selection::All)
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(err, KafkaError::NoBrokerReachable { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("unreachable") && msg.contains(&addr), "{msg}");
    assert_eq!(err.reason(), "unreachable");
    Ok(())
}

fn sasl_config(
    stack: &Stack,
    mechanism: Mechanism,
    password: &str,
) -> anyhow::Result<ClientConfig> {
    let bootstrap = stack.var("TIDAL_KAFKA_SASL_BOOTSTRAP")?;
    let mut cfg = ClientConfig::new("stack-sasl", &[bootstrap]);
    cfg.sasl = Some(Credentials {
        mechanism,
        username: stack.var("TIDAL_KAFKA_SASL_USER")?.to_string(),
        password: password.to_string(),
    });
    Ok(cfg)
}

#[tokio::test]
async fn sasl_plain_and_scram_authenticate_on_the_sasl_listener() -> R {
    let stack = Stack::load()?;
    let password = stack.var("TIDAL_KAFKA_SASL_PASSWORD")?.to_string();
    // A committed group made over PLAINTEXT must read the same through the SASL listener.
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("sasl-t");
    create_topic(&bootstrap, &topic, 1).await?;
    produce(&bootstrap, &topic, &[9]).await?;
    let group = unique("sasl-g");
    commit(&bootstrap, &group, &[(topic.as_str(), 0, 2)])?;
    for mechanism in [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ] {
        let mut client = Client::new(sasl_config(&stack, mechanism, &password)?)?;
        let round = client
            .collect(&Selection::Groups(vec![group.clone()]))
            .await?;
        assert!(round.errors.is_empty(), "{mechanism:?}: {:?}", round.errors);
        let committed = round.groups[&group]
            .committed
            .get(&(topic.clone(), 0))
            .copied();
        let lag = partition_lag(
            committed,
            round.partitions[&(topic.clone(), 0)].offsets,
            ResetPolicy::Latest,
        );
        assert_eq!(lag, Some(7), "{mechanism:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_bad_password_is_a_clear_authentication_error() -> R {
    let stack = Stack::load()?;
    for mechanism in [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ] {
        let mut client = Client::new(sasl_config(&stack, mechanism, "not-the-password")?)?;
        let err = client
            .collect(&Selection::All)
            .await
            .expect_err("wrong password");
        assert!(
            matches!(err, KafkaError::Auth { .. }),
            "{mechanism:?}: {err:?}"
        );
        assert_eq!(err.reason(), "auth");
        let msg = err.to_string();
        assert!(msg.contains("authentication failed"), "{msg}");
        assert!(
            msg.contains(stack.var("TIDAL_KAFKA_SASL_BOOTSTRAP")?),
            "names the broker: {msg}"
        );
        assert!(
            !msg.contains("not-the-password"),
            "never prints the password: {msg}"
        );
        eprintln!("{mechanism:?}, bad password: {msg}");
    }
    // A mechanism the listener does not offer is named as such.
    let plaintext = stack.kafka_bootstrap()?.to_string();
    let mut cfg = ClientConfig::new("plaintext", &[&plaintext]);
    cfg.sasl = Some(Credentials {
        mechanism: Mechanism::ScramSha256,
        username: "tidal".into(),
        password: "x".into(),
    });
    let err = Client::new(cfg)?
        .collect(&Selection::All)
        .await
        .expect_err("PLAINTEXT has no SASL");
    assert!(err.to_string().contains(&plaintext), "{err}");
    Ok(())
}

fn tls_config(stack: &Stack, ca: Option<std::path::PathBuf>, bootstrap: &str) -> ClientConfig {
    let _ = stack;
    let mut cfg = ClientConfig::new("stack-tls", &[bootstrap]);
    cfg.tls = Some(TlsConfig {
        ca_file: ca,
        ..TlsConfig::default()
    });
    cfg.request_timeout = Duration::from_secs(3);
    cfg
}

#[tokio::test]
async fn tls_with_the_right_ca_reads_exact_lag_and_a_wrong_ca_is_refused() -> R {
    let stack = Stack::load()?;
    let plaintext = stack.kafka_bootstrap()?.to_string();
    let ssl = stack.var("TIDAL_KAFKA_SSL_BOOTSTRAP")?.to_string();
    let ca = std::path::PathBuf::from(stack.var("TIDAL_CA_FILE")?);
    let topic = unique("tls-t");
    create_topic(&plaintext, &topic, 1).await?;
    produce(&plaintext, &topic, &[12]).await?;
    let group = unique("tls-g");
    commit(&plaintext, &group, &[(topic.as_str(), 0, 5)])?;

    let mut client = Client::new(tls_config(&stack, Some(ca), &ssl))?;
    let round = client
        .collect(&Selection::Groups(vec![group.clone()]))
        .await?;
    assert!(round.errors.is_empty(), "{:?}", round.errors);
    let committed = round.groups[&group]
        .committed
        .get(&(topic.clone(), 0))
        .copied();
    let lag = partition_lag(
        committed,
        round.partitions[&(topic.clone(), 0)].offsets,
        ResetPolicy::Latest,
    );
    assert_eq!(lag, Some(7), "lag read over TLS");

    // A CA that did not sign the broker's certificate.
    let dir = std::env::temp_dir().join(unique("tidal-wrong-ca"));
    std::fs::create_dir_all(&dir)?;
    let wrong = dir.join("ca.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not-the-stack-ca",
        ])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(&wrong)
        .output()?;
    anyhow::ensure!(
        ok.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let err = Client::new(tls_config(&stack, Some(wrong), &ssl))?
        .collect(&Selection::All)
        .await
        .expect_err("an unknown issuer must be refused");
    let msg = err.to_string();
    eprintln!("wrong CA: {msg}");
    assert!(matches!(err, KafkaError::TlsHandshake { .. }), "{err:?}");
    assert_eq!(err.reason(), "tls");
    assert!(
        msg.contains(&ssl) && msg.contains("TLS handshake failed"),
        "{msg}"
    );

    // TLS against the PLAINTEXT listener fails cleanly too (no hang, a named broker).
    let err = Client::new(tls_config(
        &stack,
        Some(std::path::PathBuf::from(stack.var("TIDAL_CA_FILE")?)),
        &plaintext,
    ))?
    .collect(&Selection::All)
    .await
    .expect_err("plaintext port");
    assert!(err.to_string().contains(&plaintext), "{err}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
