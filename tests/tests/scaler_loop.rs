//! tidal-scaler's closed loop on the real stack (issue #6): the real scaler binary, running
//! with exactly the manifests' RBAC (a token of a ServiceAccount bound to the rendered
//! ClusterRole and Role), against the real kube-apiserver, controller-manager and KWOK nodes,
//! reading a real tidal-agent that samples real cgroups with a real busy loop inside, and the
//! real Kafka broker.
//!
//! Needs root (cgroups) and the binaries (`cargo build --bins`, as scripts/test.sh does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::DynamicObject;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;
use tidal_e2e::builders::{deployment, policy};
use tidal_e2e::cgroups::{CgroupGuard, hierarchies, provision_pods, spawn_burner};
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::manifests::{ScalerRbac, ensure_crd, kubectl};
use tidal_e2e::scaler::policy_status as status;
use tidal_e2e::{
    ChildGuard, Stack, free_port, in_namespace, spawn_node_agent, unique, wait_for, workspace_bin,
};
use tidal_scaler::actuators::replicas::{ObservedScale, ScaleOutcome, ScaleTarget, put_scale};
use tidal_scaler::api::{ScalingPolicy, ScalingPolicyCheckpoint};

type R = anyhow::Result<()>;

/// A running `tidal-scaler run`, its log, and its metrics URL.
struct Scaler {
    child: ChildGuard,
    log: PathBuf,
    metrics: String,
}

impl Scaler {
    fn start(kubeconfig: &Path, ns: &str, name: &str, args: &[&str]) -> anyhow::Result<Self> {
        let bin = workspace_bin("tidal-scaler");
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: run `cargo build --bins` first",
            bin.display()
        );
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
        let file = std::fs::File::create(&log)?;
        let child = ChildGuard::spawn(
            Command::new(&bin)
                .arg("run")
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--namespace", ns, "--lease-namespace", ns])
                .args(["--identity", name])
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env("RUST_LOG", "info,tidal_scaler=debug")
                .stdout(file.try_clone()?)
                .stderr(file),
        )?;
        Ok(Self {
            child,
            log,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        })
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The value of an unlabelled (or first matching) sample of `metric`.
    async fn metric(&self, metric: &str) -> Option<f64> {
        let body = tidal_e2e::http_get(&self.metrics)
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.lines()
            .find(|l| l.starts_with(metric) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Sum of every sample of `metric`.
    async fn sum(&self, metric: &str) -> f64 {
        let Some(body) = async {
            tidal_e2e::http_get(&self.metrics)
                .await
                .ok()?
                .text()
                .await
                .ok()
        }
        .await
        else {
            return 0.0;
        };
        body.lines()
            .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

async fn replicas(deploys: &Api<Deployment>, name: &str) -> Option<i32> {
    deploys.get(name).await.ok()?.spec?.replicas
}

/// Waits until the deployment controller is done with `name` at `want` replicas (it observed
/// the generation and every replica is available), so it writes no more status while a test
/// times its own writes; returns the settled object's resourceVersion.
async fn settled(deploys: &Api<Deployment>, name: &str, want: i32) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = deploys.get(name).await?;
        let st = d.status.clone().unwrap_or_default();
        if st.observed_generation == d.metadata.generation
            && st.replicas == Some(want)
            && st.updated_replicas == Some(want)
            && st.available_replicas == Some(want)
        {
            return d
                .metadata
                .resource_version
                .ok_or_else(|| anyhow::anyhow!("{name}: no resourceVersion"));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} did not settle at {want} replicas in 60 s: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `name` has `want` replicas; the error includes the scaler's log.
async fn wait_replicas(
    deploys: &Api<Deployment>,
    name: &str,
    want: i32,
    secs: u64,
    scaler: &Scaler,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    wait_for(
        &format!("deployment {name} at {want} replicas"),
        Duration::from_secs(secs),
        || async { (replicas(deploys, name).await == Some(want)).then_some(()) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; replicas now unknown; scaler log:\n{}", scaler.tail()))?;
    Ok(started.elapsed())
}

fn condition<'a>(status: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// A KWOK node of the stack, the first or the last.
#[derive(Clone, Copy)]
enum Node {
    First,
    Last,
}

/// Runs `body(stack, client, namespace, node, kubeconfig)` in a new namespace, with the CRD
/// installed and the scaler's RBAC (plus the `overlay`'s rules) bound to a ServiceAccount
/// whose kubeconfig the scaler runs with; the RBAC is removed after.
async fn with_scaler_rbac(
    prefix: &str,
    which: Node,
    overlay: Option<&str>,
    body: impl AsyncFnOnce(&Stack, &kube::Client, &str, &str, &Path) -> R,
) -> R {
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    ensure_crd(&stack)?;
    let mut nodes = stack.kwok_nodes()?.into_iter();
    let node = match which {
        Node::First => nodes.next(),
        Node::Last => nodes.last(),
    }
    .ok_or_else(|| anyhow::anyhow!("no KWOK node"))?;
    let client = admin.clone();
    in_namespace(&admin, prefix, |ns| async move {
        let rbac = match overlay {
            Some(o) => ScalerRbac::install_with(&stack, &client, &ns, o).await?,
            None => ScalerRbac::install(&stack, &client, &ns).await?,
        };
        let result = body(&stack, &client, &ns, &node, &rbac.kubeconfig).await;
        rbac.remove(&stack)?;
        result
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_load_scales_up_within_seconds_and_back_down_after_the_window() -> R {
    with_scaler_rbac("loop-cpu", Node::First, None, cpu_loop).await
}

async fn cpu_loop(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(&PostParams::default(), &deployment("web", node, 1, "100m")?)
        .await?;
    let bases = hierarchies(Path::new("/sys/fs/cgroup"));
    anyhow::ensure!(
        !bases.is_empty(),
        "no cgroup hierarchy under /sys/fs/cgroup"
    );
    let guard = Arc::new(Mutex::new(CgroupGuard(Vec::new())));
    let done = Arc::new(Mutex::new(BTreeMap::new()));
    let provisioner = tokio::spawn(provision_pods(
        pods.clone(),
        "app=web".into(),
        bases.clone(),
        guard.clone(),
        done.clone(),
    ));
    let result = async {
        let first = wait_for("the first pod's cgroup", Duration::from_secs(60), || async {
            done.lock().ok()?.iter().next().map(|(u, c)| (u.clone(), c.clone()))
        })
        .await?;
        let agent_port = free_port()?;
        let _agent = spawn_node_agent(stack, node, &format!("127.0.0.1:{agent_port}"), "0.5")?;
        let scaler = Scaler::start(
            kubeconfig,
            ns,
            "scaler-cpu",
            &[
                "--leader-elect=false",
                "--agent-url",
                &format!("http://127.0.0.1:{agent_port}"),
            ],
        )?;
        // 50% of 100m per pod; scale-down waits 10s (a short window, so the test is quick).
        policies
            .create(
                &PostParams::default(),
                &policy(
                    "web",
                    json!({
                        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "minReplicas": 1, "maxReplicas": 4,
                        "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}}],
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}
                    }),
                )?,
            )
            .await?;
        // Idle first: the loop sees ~0 usage and holds at 1 (minReplicas).
        wait_for("an idle decision in the status", Duration::from_secs(60), || async {
            let s = status(&policies, "web").await;
            (s["desiredReplicas"] == 1 && s["currentMetrics"][0]["value"].is_string())
                .then_some(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;

        // A real busy loop in the first pod: 1 core against 100m, 20x the target.
        let (uid, cid) = first;
        let burner = spawn_burner(
            &bases,
            Path::new(&format!("kubepods/burstable/pod{uid}/{cid}")),
        )?;
        let up = wait_replicas(&deploys, "web", 4, 60, &scaler).await?;
        eprintln!("load step -> 4 replicas in {:.1}s", up.as_secs_f64());
        anyhow::ensure!(up < Duration::from_secs(15), "slower than the HPA's 15s loop: {up:?}");

        // The status is written at the end of the cycle that scaled.
        let s = wait_for("the status of the scale-up", Duration::from_secs(15), || async {
            let s = status(&policies, "web").await;
            (s["desiredReplicas"] == 4 && s["lastScaleTime"].is_string()).then_some(s)
        })
        .await?;
        let able = condition(&s, "AbleToScale").ok_or_else(|| anyhow::anyhow!("{s}"))?;
        anyhow::ensure!(able["status"] == "True", "{s}");
        let events: Api<Event> = Api::namespaced(client.clone(), ns);
        let rescale = wait_for("a SuccessfulRescale Event", Duration::from_secs(10), || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("SuccessfulRescale")
                        && e.note.as_deref().is_some_and(|n| n.starts_with("New size: 4; reason: "))
                })
        })
        .await?;
        anyhow::ensure!(
            rescale.reporting_controller.as_deref() == Some("tidal-scaler"),
            "{rescale:?}"
        );

        // Load removed: every pod idles. The count comes down only after the 10s window.
        let all_provisioned = wait_for("all 4 pods with cgroups", Duration::from_secs(60), || async {
            (done.lock().ok()?.len() >= 4).then_some(())
        })
        .await;
        all_provisioned?;
        drop(burner);
        let down = wait_replicas(&deploys, "web", 1, 90, &scaler).await?;
        eprintln!("load removed -> 1 replica in {:.1}s", down.as_secs_f64());
        anyhow::ensure!(
            down >= Duration::from_secs(9),
            "scaled down before the 10s stabilization window: {down:?}"
        );
        let ups = scaler.sum("tidal_scaler_scale_events_total").await;
        anyhow::ensure!(ups >= 2.0, "scale events counted: {ups}");
        for outcome in ["scaled_up", "scaled_down", "unchanged"] {
            let series = format!(
                "tidal_scaler_policy_decisions_total{{namespace=\"{ns}\",policy=\"web\",outcome=\"{outcome}\"}}"
            );
            let n = scaler.metric(&series).await.unwrap_or(0.0);
            anyhow::ensure!(n >= 1.0, "{series} = {n}");
        }
        Ok(())
    }
    .await;
    provisioner.abort();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_dry_run_and_every_uncertain_input_hold_safely() -> R {
    with_scaler_rbac("loop-lag", Node::Last, None, lag_loop).await
}

async fn lag_loop(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("loop-t");
    let group = unique("loop-g");
    create_topic(&bootstrap, &topic, 3).await?;
    commit(
        &bootstrap,
        &group,
        &[(&topic, 0, 0), (&topic, 1, 0), (&topic, 2, 0)],
    )?;
    produce(&bootstrap, &topic, &[40, 40, 40]).await?;

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    for (name, n) in [
        ("consumer", 1),
        ("dry", 1),
        ("zero", 2),
        ("prom", 2),
        ("bad", 2),
    ] {
        deploys
            .create(&PostParams::default(), &deployment(name, node, n, "50m")?)
            .await?;
    }
    // Prometheus "stopped": nothing listens on this port.
    let dead_prometheus = format!("http://127.0.0.1:{}", free_port()?);
    let scaler = Scaler::start(
        kubeconfig,
        ns,
        "scaler-lag",
        &[
            "--leader-elect=false",
            "--kafka-cluster",
            &format!("stack={bootstrap}"),
            "--prometheus-url",
            &dead_prometheus,
            "--prometheus-interval-seconds",
            "2",
        ],
    )?;
    let target = |name: &str| json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": name});
    let lag = |cluster: &str| json!([{"name": "lag", "kafkaLag": {"cluster": cluster, "group": group, "topics": [topic], "lagPerReplica": 10}}]);
    let specs = [
        (
            "consumer",
            json!({"targetRef": target("consumer"), "minReplicas": 1, "maxReplicas": 10, "metrics": lag("stack")}),
        ),
        (
            "dry",
            json!({"targetRef": target("dry"), "minReplicas": 1, "maxReplicas": 10, "metrics": lag("stack"), "dryRun": true}),
        ),
        // A raw address, refused (not a --kafka-cluster name, no --kafka-allow-raw-addresses):
        // the lag is unknown, so never scale to zero; the condition names the address.
        (
            "zero",
            json!({"targetRef": target("zero"), "minReplicas": 0, "maxReplicas": 10, "metrics": lag("127.0.0.1:1")}),
        ),
        (
            "prom",
            json!({"targetRef": target("prom"), "minReplicas": 1, "maxReplicas": 10,
                        "metrics": [{"name": "rps", "prometheus": {"query": "vector(1)", "targetValue": "1"}}]}),
        ),
        // Parses as YAML, passes the schema, but does not type-check.
        (
            "bad",
            json!({"targetRef": target("bad"), "minReplicas": 1, "maxReplicas": 10, "metrics": lag("stack"),
                       "formula": "lag.value + \"x\""}),
        ),
    ];
    for (name, spec) in specs {
        policies
            .create(&PostParams::default(), &policy(name, spec)?)
            .await?;
    }

    // 120 messages of lag at 10 per replica is 12, capped at the topic's 3 partitions.
    let took = wait_replicas(&deploys, "consumer", 3, 60, &scaler).await?;
    eprintln!(
        "lag backlog -> 3 replicas (partition cap) in {:.1}s",
        took.as_secs_f64()
    );
    // The proposal is the cap; the reasons say which metric chose it (the status is written
    // at the end of the cycle that scaled).
    wait_for(
        "the lag decision in the status",
        Duration::from_secs(15),
        || async {
            let s = status(&policies, "consumer").await;
            (s["currentMetrics"][0]["proposedReplicas"] == 3
                && s["lastDecision"]["dominantMetric"] == "lag")
                .then_some(())
        },
    )
    .await?;

    // Dry run: the decision is recorded, nothing else changes.
    let s = wait_for("the dry-run decision", Duration::from_secs(30), || async {
        let s = status(&policies, "dry").await;
        (s["desiredReplicas"] == 3).then_some(s)
    })
    .await?;
    let reasons = s["lastDecision"]["reasons"].to_string();
    anyhow::ensure!(reasons.contains("dryRun: would scale 1 -> 3"), "{s}");

    // Unknown lag, a stopped Prometheus and a formula that does not type-check: each holds,
    // and its condition names the broker, the URL or the field.
    let holds = [
        ("zero", "spec.metrics[0].kafkaLag.cluster: \"127.0.0.1:1\""),
        ("prom", dead_prometheus.as_str()),
        ("bad", "spec.formula"),
    ];
    for (name, needle) in holds {
        let s = wait_for(
            &format!("{name}: ScalingActive=False"),
            Duration::from_secs(30),
            || async {
                let s = status(&policies, name).await;
                let c = condition(&s, "ScalingActive")?;
                (c["status"] == "False" && c["message"].as_str()?.contains(needle))
                    .then_some(s.clone())
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;
        eprintln!(
            "{name}: {}",
            condition(&s, "ScalingActive")
                .map(|c| c["message"].to_string())
                .unwrap_or_default()
        );
    }
    let bad = status(&policies, "bad").await;
    anyhow::ensure!(
        condition(&bad, "ScalingActive").is_some_and(|c| c["reason"] == "InvalidFormula"),
        "{bad}"
    );
    // Several more cycles later, nothing was applied to any of them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (name, want) in [("dry", 1), ("zero", 2), ("prom", 2), ("bad", 2)] {
        let got = replicas(&deploys, name).await;
        anyhow::ensure!(got == Some(want), "{name}: replicas {got:?}, want {want}");
    }
    let errors = scaler.sum("tidal_scaler_errors_total").await;
    anyhow::ensure!(errors > 0.0, "errors were counted");
    // Per policy: each hold counted under its policy and condition reason, and the dry run's
    // decided change as not applied.
    for (name, series) in [
        (
            "bad",
            format!(
                "tidal_scaler_policy_errors_total{{namespace=\"{ns}\",policy=\"bad\",reason=\"InvalidFormula\"}}"
            ),
        ),
        (
            "bad",
            format!(
                "tidal_scaler_policy_decisions_total{{namespace=\"{ns}\",policy=\"bad\",outcome=\"held\"}}"
            ),
        ),
        (
            "zero",
            format!(
                "tidal_scaler_policy_errors_total{{namespace=\"{ns}\",policy=\"zero\",reason=\"FailedGetExternalMetric\"}}"
            ),
        ),
        (
            "dry",
            format!(
                "tidal_scaler_policy_decisions_total{{namespace=\"{ns}\",policy=\"dry\",outcome=\"not_applied\"}}"
            ),
        ),
    ] {
        let n = scaler.metric(&series).await.unwrap_or(0.0);
        anyhow::ensure!(n >= 1.0, "{name}: {series} = {n}");
    }
    anyhow::ensure!(scaler.metric("tidal_scaler_leader").await == Some(1.0));
    drop(scaler.child);
    Ok(())
}

/// `lagSampling` against the real broker: a group whose committed lag saws (100 messages
/// produced, committed about 1.3 s later, every 5 s), two Deployments, one policy each with
/// `lagPerReplica` 10 and a scale-down window that holds the highest count. `latest` sizes on
/// the tooth's peak (100 → 10 replicas; a round a second sees every tooth). `commitInterval`
/// sizes on the mean over the 5 s cadence, whose 5 rounds hold at most 3 on a tooth of under
/// 2 s (≤ 60 → ≤ 6 replicas; about 30 → 3 on average), once the scaler has read the idle group
/// for 5 s (a mean starts from the rounds it has).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_interval_sampling_sizes_a_real_sawtooth_on_its_mean() -> R {
    with_scaler_rbac("loop-saw", Node::Last, None, sawtooth_loop).await
}

async fn sawtooth_loop(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    const TEETH: usize = 8;
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("saw-t");
    let group = unique("saw-g");
    create_topic(&bootstrap, &topic, 1).await?;
    commit(&bootstrap, &group, &[(&topic, 0, 0)])?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    let scaler = Scaler::start(
        kubeconfig,
        ns,
        "scaler-saw",
        &[
            "--leader-elect=false",
            "--kafka-cluster",
            &format!("stack={bootstrap}"),
        ],
    )?;
    for (name, sampling) in [("latest", "latest"), ("mean", "commitInterval")] {
        deploys
            .create(&PostParams::default(), &deployment(name, node, 1, "50m")?)
            .await?;
        let spec = json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1, "maxReplicas": 20,
            "metrics": [{"name": "lag", "kafkaLag": {"cluster": "stack", "group": group,
                "topics": [topic], "lagPerReplica": 10, "allowIdleConsumers": true,
                "lagSampling": sampling}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 20, "periodSeconds": 1}]},
                "scaleDown": {"stabilizationWindowSeconds": 600}
            }
        });
        policies
            .create(&PostParams::default(), &policy(name, spec)?)
            .await?;
    }
    // The scaler reads the idle group for a cadence's worth of rounds first: a mean starts
    // from the rounds it has (at its first round, the latest alone).
    for name in ["latest", "mean"] {
        wait_for(
            &format!("policy {name}'s first decision"),
            Duration::from_secs(30),
            || async {
                status(&policies, name).await["lastDecision"]
                    .is_object()
                    .then_some(())
            },
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut end = 0i64;
    // How long a tooth stood: from the produce to the commit's answer.
    let mut longest = Duration::ZERO;
    for _ in 0..TEETH {
        let tooth = Instant::now();
        produce(&bootstrap, &topic, &[100]).await?;
        end += 100;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let (b, g, t) = (bootstrap.clone(), group.clone(), topic.clone());
        tokio::task::spawn_blocking(move || commit(&b, &g, &[(&t, 0, end)])).await??;
        longest = longest.max(tooth.elapsed());
        tokio::time::sleep(Duration::from_secs(5).saturating_sub(tooth.elapsed())).await;
    }
    // A tooth of s seconds holds at most floor(s) + 1 of the cadence's 5 rounds, one more
    // when a round is late: 1.3 s plus a commit under 0.7 s is at most 3 (60 -> 6).
    let on_tooth = longest.as_secs() + 2;
    anyhow::ensure!(
        on_tooth < 5,
        "a tooth stood {:.1} s of its 5: the machine is too slow for this test to tell a mean \
         from a peak",
        longest.as_secs_f64()
    );
    let most = i32::try_from(on_tooth * 100 / 5 / 10)?;
    let read = || async {
        wait_for("both replica counts", Duration::from_secs(15), || async {
            Some((
                replicas(&deploys, "latest").await?,
                replicas(&deploys, "mean").await?,
            ))
        })
        .await
    };
    let (latest, mean) = read().await?;
    eprintln!(
        "a sawtooth of 100 messages (teeth up to {:.1} s): latest sized {latest}, \
         commitInterval {mean} (at most {most})",
        longest.as_secs_f64()
    );
    anyhow::ensure!(
        latest == 10,
        "latest: {latest} replicas, want 10 (the peak); scaler log:\n{}",
        scaler.tail()
    );
    // At least 2: the round that saw the peak saw it in the mean too (>= 100 / 6).
    anyhow::ensure!(
        (2..=most).contains(&mean),
        "commitInterval: {mean} replicas, want 2..={most} (the mean); scaler log:\n{}",
        scaler.tail()
    );
    Ok(())
}

/// The conditional PUT of the scale subresource meets a real 409 on the real API server
/// (someone changed the Deployment after the decision was based on it, but not its
/// replicas) and retries on a fresh read; the scaler's ClusterRole allows exactly these calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_conflict_is_retried_on_a_fresh_read() -> R {
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    let node = first_node(&stack)?;
    let client = admin.clone();
    in_namespace(&admin, "loop-409", |ns| async move {
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deploys
            .create(&PostParams::default(), &deployment("web", &node, 1, "10m")?)
            .await?;
        // Our read, once the deployment controller is done with the new Deployment (its
        // status writes would add conflicts of their own).
        let observed = ObservedScale {
            replicas: 1,
            resource_version: Some(settled(&deploys, "web", 1).await?),
        };
        // Someone else changes the Deployment after our read, but not its replicas: our
        // resourceVersion is stale, the decision's basis is not.
        deploys
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"e2e/touched": "1"}}})),
            )
            .await?;
        settled(&deploys, "web", 1).await?;
        let (api, target) = scale_api(&client, &ns);
        let calls = Mutex::new(Vec::new());
        let out = put_scale(
            &api,
            &target,
            &observed,
            3,
            || true,
            |v| {
                if let Ok(mut c) = calls.lock() {
                    c.push(v);
                }
            },
        )
        .await?;
        // At least one 409 and a fresh read; the deployment controller's own status updates
        // can move the resourceVersion once more before the retry lands.
        anyhow::ensure!(
            matches!(out, ScaleOutcome::Applied { attempts } if attempts >= 2),
            "{out:?}"
        );
        let calls = calls
            .into_inner()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        anyhow::ensure!(
            calls.starts_with(&["put_scale", "get_scale", "put_scale"]),
            "{calls:?}"
        );
        anyhow::ensure!(replicas(&deploys, "web").await == Some(3));
        Ok(())
    })
    .await
}

/// The fence on the real API server: another writer scales the Deployment between the
/// scaler's read (the observed replicas and resourceVersion the decision was based on) and
/// its write. The write meets a 409, the fresh read shows the other writer's count, and the
/// scaler stops with `Superseded` without writing: the other writer's count stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writers_scale_between_read_and_write_is_not_overwritten() -> R {
    use tidal_scaler::actuators::ActuateError;

    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    let node = first_node(&stack)?;
    let client = admin.clone();
    in_namespace(&admin, "loop-fence", |ns| async move {
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deploys
            .create(&PostParams::default(), &deployment("web", &node, 1, "10m")?)
            .await?;
        // The scaler's read: 1 replica at this resourceVersion; it decides 3.
        let observed = ObservedScale {
            replicas: 1,
            resource_version: Some(settled(&deploys, "web", 1).await?),
        };
        // Another writer (a person, a GitOps tool) scales to 2 before the scaler writes.
        deploys
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 2}})),
            )
            .await?;
        settled(&deploys, "web", 2).await?;
        let (api, target) = scale_api(&client, &ns);
        let calls = Mutex::new(Vec::new());
        let out = put_scale(
            &api,
            &target,
            &observed,
            3,
            || true,
            |v| {
                if let Ok(mut c) = calls.lock() {
                    c.push(v);
                }
            },
        )
        .await;
        anyhow::ensure!(
            matches!(
                &out,
                Err(ActuateError::Superseded {
                    expected: 1,
                    found: 2,
                    ..
                })
            ),
            "{out:?}"
        );
        let calls = calls
            .into_inner()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        anyhow::ensure!(
            calls == ["put_scale", "get_scale"],
            "one write, no retry: {calls:?}"
        );
        anyhow::ensure!(
            replicas(&deploys, "web").await == Some(2),
            "the other writer's count stays"
        );
        // The same through the scaler's single writer (leadership-gated, counted): the
        // label is its own.
        let metrics = tidal_scaler::metrics::Metrics::new();
        let writer = tidal_scaler::actuators::Writer::new(
            client.clone(),
            tidal_core::lease::Leadership::always(),
            metrics,
            "e2e",
        );
        let e = writer
            .scale(&target, &observed, 3)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("the writer wrote over another writer"))?;
        anyhow::ensure!(e.label() == "superseded", "{e}");
        anyhow::ensure!(replicas(&deploys, "web").await == Some(2));
        // Stale but already at the desired count: nothing to write either way.
        let stale = ObservedScale {
            replicas: 2,
            resource_version: observed.resource_version,
        };
        let out = put_scale(&api, &target, &stale, 2, || true, |_| {}).await?;
        anyhow::ensure!(out == ScaleOutcome::Unchanged, "{out:?}");
        Ok(())
    })
    .await
}

fn first_node(stack: &Stack) -> anyhow::Result<String> {
    stack
        .kwok_nodes()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no KWOK node"))
}

/// The Deployment `web`'s scale, as the scaler addresses it.
fn scale_api(client: &kube::Client, ns: &str) -> (Api<DynamicObject>, ScaleTarget) {
    let target = ScaleTarget {
        resource: ApiResource::erase::<Deployment>(&()),
        namespace: ns.to_string(),
        name: "web".into(),
    };
    let api = Api::namespaced_with(client.clone(), ns, &target.resource);
    (api, target)
}

/// Two scalers elect a leader through a Lease; only the leader writes. Killing the leader
/// hands over within 15s, and the new leader carries on from the checkpoint in the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_takes_under_15s_with_no_double_action() -> R {
    with_scaler_rbac("loop-ha", Node::First, None, failover).await
}

async fn failover(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("ha-t");
    let group = unique("ha-g");
    create_topic(&bootstrap, &topic, 6).await?;
    let zero: Vec<(&str, i32, i64)> = (0..6).map(|p| (topic.as_str(), p, 0)).collect();
    commit(&bootstrap, &group, &zero)?;
    produce(&bootstrap, &topic, &[10, 10, 10, 0, 0, 0]).await?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(
            &PostParams::default(),
            &deployment("consumer", node, 1, "10m")?,
        )
        .await?;
    let cluster = format!("stack={bootstrap}");
    let a = Scaler::start(kubeconfig, ns, "scaler-a", &["--kafka-cluster", &cluster])?;
    wait_for("scaler-a leads", Duration::from_secs(30), || async {
        (a.metric("tidal_scaler_leader").await == Some(1.0)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; log:\n{}", a.tail()))?;
    let b = Scaler::start(kubeconfig, ns, "scaler-b", &["--kafka-cluster", &cluster])?;
    wait_for("scaler-b follows", Duration::from_secs(30), || async {
        (b.metric("tidal_scaler_leader").await == Some(0.0)).then_some(())
    })
    .await?;
    policies
        .create(
            &PostParams::default(),
            &policy(
                "consumer",
                json!({
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"},
                    "minReplicas": 1, "maxReplicas": 10,
                    "metrics": [{"name": "lag", "kafkaLag": {"cluster": "stack", "group": group, "topics": [topic], "lagPerReplica": 10}}]
                }),
            )?,
        )
        .await?;
    // 30 messages of lag at 10 per replica: 3.
    wait_replicas(&deploys, "consumer", 3, 60, &a).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ea, eb) = (
        a.sum("tidal_scaler_scale_events_total").await,
        b.sum("tidal_scaler_scale_events_total").await,
    );
    anyhow::ensure!(
        ea == 1.0 && eb == 0.0,
        "one action, by the leader: a={ea} b={eb}"
    );

    // Kill the leader (SIGKILL: no graceful release) and time the takeover.
    let killed = Instant::now();
    drop(a);
    wait_for("scaler-b takes over", Duration::from_secs(20), || async {
        (b.metric("tidal_scaler_leader").await == Some(1.0)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; log:\n{}", b.tail()))?;
    let takeover = killed.elapsed();
    eprintln!(
        "leader killed -> follower leads in {:.1}s",
        takeover.as_secs_f64()
    );
    anyhow::ensure!(
        takeover < Duration::from_secs(15),
        "failover took {takeover:?}"
    );

    // The new leader acts: more lag, more replicas (6 partitions).
    produce(&bootstrap, &topic, &[0, 0, 0, 10, 10, 10]).await?;
    wait_replicas(&deploys, "consumer", 6, 60, &b).await?;
    let eb = b.sum("tidal_scaler_scale_events_total").await;
    anyhow::ensure!(eb == 1.0, "the new leader scaled once: {eb}");
    let s = status(&policies, "consumer").await;
    anyhow::ensure!(
        s["checkpoint"]["recommendations"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{s}"
    );
    // Killing the leader must not leave the kubectl view inconsistent: one owner of replicas.
    let managers = kubectl(
        stack,
        &[
            "-n",
            ns,
            "get",
            "deploy",
            "consumer",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ],
        None,
    )?;
    anyhow::ensure!(managers.contains("tidal-scaler"), "{managers}");
    Ok(())
}

/// `spec.vertical` in `Template` mode on real usage: a real busy loop (≈1 core) in a pod that
/// requests 100m. With CPU also a horizontal metric (pinned at one replica), the recommender
/// sizes the request for the horizontal target (mean usage / 80%), writes the recommendation
/// and its histograms to the status, and patches the Deployment's template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertical_template_mode_sizes_the_request_from_real_usage() -> R {
    // Template mode patches the workload: the opt-in overlay's right.
    with_scaler_rbac(
        "loop-vpa",
        Node::First,
        Some("vertical-template"),
        async |stack, client, ns, node, kubeconfig| {
            vertical_loop(stack, client, ns, node, kubeconfig, true).await
        },
    )
    .await
}

/// The same Template-mode policy with the base's RBAC only (no vertical-template overlay):
/// the recommendation is still computed, the template is not patched (403), and the status
/// says so: `AbleToScale=False`, reason `FailedUpdateRequests`, naming the object, the verb
/// and the overlay that grants it; the error is counted as `forbidden`. The RBAC here also
/// lacks the ScalingPolicyCheckpoint rule (a scaler upgraded before its ClusterRole): the
/// histograms then stay in the policy's status, where a new leader finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertical_template_mode_without_its_overlay_reports_the_missing_right() -> R {
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    ensure_crd(&stack)?;
    let node = stack
        .kwok_nodes()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no KWOK node"))?;
    let client = admin.clone();
    in_namespace(&admin, "loop-vpa-403", |ns| async move {
        let rbac = ScalerRbac::install(&stack, &client, &ns).await?;
        let roles: Api<ClusterRole> = Api::all(client.clone());
        let mut role = roles.get(&rbac.cluster_name).await?;
        for rules in role.rules.iter_mut() {
            rules.retain(|r| {
                !r.resources
                    .iter()
                    .flatten()
                    .any(|x| x == "scalingpolicycheckpoints")
            });
        }
        roles
            .replace(&rbac.cluster_name, &PostParams::default(), &role)
            .await?;
        let result = vertical_loop(&stack, &client, &ns, &node, &rbac.kubeconfig, false).await;
        rbac.remove(&stack)?;
        result
    })
    .await
}

/// `granted`: the scaler's RBAC includes the vertical-template overlay.
async fn vertical_loop(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
    granted: bool,
) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(&PostParams::default(), &deployment("web", node, 1, "100m")?)
        .await?;
    let bases = hierarchies(Path::new("/sys/fs/cgroup"));
    anyhow::ensure!(
        !bases.is_empty(),
        "no cgroup hierarchy under /sys/fs/cgroup"
    );
    let guard = Arc::new(Mutex::new(CgroupGuard(Vec::new())));
    let done = Arc::new(Mutex::new(BTreeMap::new()));
    let provisioner = tokio::spawn(provision_pods(
        pods.clone(),
        "app=web".into(),
        bases.clone(),
        guard.clone(),
        done.clone(),
    ));
    let result = async {
        let (uid, cid) = wait_for("the pod's cgroup", Duration::from_secs(60), || async {
            done.lock().ok()?.iter().next().map(|(u, c)| (u.clone(), c.clone()))
        })
        .await?;
        let _burner = spawn_burner(
            &bases,
            Path::new(&format!("kubepods/burstable/pod{uid}/{cid}")),
        )?;
        let agent_port = free_port()?;
        let _agent = spawn_node_agent(stack, node, &format!("127.0.0.1:{agent_port}"), "0.5")?;
        let agent_url = format!("http://127.0.0.1:{agent_port}");
        let args = [
            "--leader-elect=false",
            "--agent-url",
            &agent_url,
            "--vertical-min-samples",
            "5",
            "--vertical-apply-interval-seconds",
            "5",
            "--vertical-checkpoint-interval-seconds",
            "2",
        ];
        let scaler = Scaler::start(kubeconfig, ns, "scaler-vpa", &args)?;
        policies
            .create(
                &PostParams::default(),
                &policy(
                    "web",
                    json!({
                        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "minReplicas": 1, "maxReplicas": 1,
                        "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 80}}],
                        "vertical": {"mode": "Template", "containerPolicies": [
                            {"containerName": "app", "maxAllowed": {"cpu": "3"}, "controlledResources": ["cpu"]}
                        ]}
                    }),
                )?,
            )
            .await?;
        let template_cpu = || async {
            let d = deploys.get("web").await.ok()?;
            let c = d.spec?.template.spec?.containers.into_iter().next()?;
            let q = c.resources?.requests?.get("cpu")?.0.clone();
            tidal_scaler::api::parse_quantity(&q).ok()
        };
        if !granted {
            return refused_template(client, ns, &policies, &scaler, template_cpu).await;
        }
        // Sized for 80% utilization of what the busy loop gets: ≈1 core on an idle machine,
        // less on a loaded 2-core one (a CI run with builds beside it gave the loop ≈0.39 core
        // and the template 488m). More than 3× the 100m it started at is only reachable from
        // the loop's real usage; the upper bound is the policy's maxAllowed.
        let cpu = wait_for("the template's CPU request raised", Duration::from_secs(90), || async {
            template_cpu().await.filter(|c| *c > 0.3)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;
        eprintln!("busy loop at ~1 core, request 100m -> template request {:.0}m", cpu * 1000.0);
        anyhow::ensure!(cpu > 0.3 && cpu <= 3.0, "request {cpu}");
        let s = status(&policies, "web").await;
        anyhow::ensure!(
            s["recommendations"][0]["containerName"] == "app"
                && s["recommendations"][0]["target"]["cpu"].is_string(),
            "{s}"
        );
        // The histograms are in the policy's ScalingPolicyCheckpoint, not in its status.
        anyhow::ensure!(
            s["checkpoint"]["vertical"].is_null() && s["checkpoint"]["recommendations"].is_array(),
            "the status holds the horizontal history only: {s}"
        );
        let uid = policies.get("web").await?.metadata.uid.unwrap_or_default();
        let samples = stored_samples(client, ns, &uid).await?;
        anyhow::ensure!(samples >= 5, "checkpointed samples: {samples}");
        // A new scaler carries on from it: its first checkpoint counts on from the stored
        // samples (a fresh history would start again near zero).
        drop(scaler);
        let before = stored_samples(client, ns, &uid).await?;
        let scaler = Scaler::start(kubeconfig, ns, "scaler-vpa-2", &args)?;
        let after = wait_for(
            "the restarted scaler's checkpoint",
            Duration::from_secs(60),
            || async {
                let n = stored_samples(client, ns, &uid).await.ok()?;
                (n != before).then_some(n)
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;
        eprintln!("vertical checkpoint: {before} samples stored, {after} after the restart");
        anyhow::ensure!(
            after > before,
            "restored from the ScalingPolicyCheckpoint: {before} samples before, {after} after"
        );
        let events: Api<Event> = Api::namespaced(client.clone(), ns);
        wait_for("an UpdatedTemplateRequests Event", Duration::from_secs(10), || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("UpdatedTemplateRequests"))
        })
        .await?;
        Ok(())
    }
    .await;
    provisioner.abort();
    result
}

/// The CPU samples in the ScalingPolicyCheckpoint of the policy `web` (container `app`),
/// checking it is owned by the policy of `uid`.
async fn stored_samples(client: &kube::Client, ns: &str, uid: &str) -> anyhow::Result<u64> {
    let c = Api::<ScalingPolicyCheckpoint>::namespaced(client.clone(), ns)
        .get("web")
        .await?;
    anyhow::ensure!(
        c.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "ScalingPolicy" && o.uid == uid && o.controller == Some(true)),
        "the checkpoint is owned by its policy: {:?}",
        c.metadata.owner_references
    );
    c.spec
        .vertical
        .containers
        .get("app")
        .map(|a| a.total_samples)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no container app in {:?}",
                c.spec.vertical.containers.keys()
            )
        })
}

/// Without the vertical-template overlay: the condition names the overlay, nothing is
/// patched, the recommendation is there, a FailedUpdateRequests Event, `forbidden` counted.
async fn refused_template<F, Fut>(
    client: &kube::Client,
    ns: &str,
    policies: &Api<ScalingPolicy>,
    scaler: &Scaler,
    template_cpu: F,
) -> R
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<f64>>,
{
    let refused = wait_for(
        "AbleToScale=False (FailedUpdateRequests) on the policy",
        Duration::from_secs(90),
        || async {
            let s = status(policies, "web").await;
            let c = condition(&s, "AbleToScale")?;
            (c["status"] == "False" && c["reason"] == "FailedUpdateRequests").then(|| s.clone())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;
    let c = condition(&refused, "AbleToScale")
        .cloned()
        .unwrap_or_default();
    let message = c["message"].as_str().unwrap_or_default();
    eprintln!("AbleToScale=False: {message}");
    for part in [
        format!("patch deployments/web in namespace {ns}"),
        "forbidden (403)".to_string(),
        "kubectl apply -k manifests/overlays/vertical-template".to_string(),
    ] {
        anyhow::ensure!(message.contains(&part), "the condition lacks {part:?}: {c}");
    }
    anyhow::ensure!(
        !message.contains("manifests/base"),
        "the condition points to the base, which does not grant it: {c}"
    );
    anyhow::ensure!(
        refused["recommendations"][0]["containerName"] == "app",
        "the recommendation is still computed: {refused}"
    );
    wait_for(
        "the histograms kept in the status (no right to the ScalingPolicyCheckpoint)",
        Duration::from_secs(30),
        || async {
            let s = status(policies, "web").await;
            s["checkpoint"]["vertical"]["containers"]["app"]
                .is_object()
                .then_some(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;
    anyhow::ensure!(
        scaler.tail().contains("vertical checkpoint not written"),
        "the scaler says why: {}",
        scaler.tail()
    );
    anyhow::ensure!(
        condition(&refused, "ScalingActive").is_some_and(|c| c["status"] == "True"),
        "the horizontal side keeps working: {refused}"
    );
    // Nothing was patched, also a while later (a retry every apply interval, 5 s here).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let cpu = template_cpu().await;
    anyhow::ensure!(
        cpu.is_some_and(|c| (c - 0.1).abs() < 1e-9),
        "the template's request changed without the right: {cpu:?}"
    );
    let still = status(policies, "web").await;
    anyhow::ensure!(
        condition(&still, "AbleToScale")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "FailedUpdateRequests"),
        "the condition stays between retries: {still}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait_for(
        "a FailedUpdateRequests Event",
        Duration::from_secs(10),
        || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("FailedUpdateRequests")
                        && e.note
                            .as_deref()
                            .is_some_and(|n| n.contains("manifests/overlays/vertical-template"))
                })
        },
    )
    .await?;
    let forbidden = scaler
        .metric("tidal_scaler_errors_total{reason=\"forbidden\"}")
        .await
        .unwrap_or(0.0);
    anyhow::ensure!(forbidden >= 1.0, "forbidden errors counted: {forbidden}");
    Ok(())
}

/// A Prometheus query that returns a negative value (a broken exporter or query: no load is
/// below zero) used to drive the count to `minReplicas`. Now the metric is invalid: the count
/// holds, and the condition says `InvalidMetric`, naming the field and how to opt in. The same
/// query with `allowNegative: true` is used as before (and scales down to the minimum). The
/// real scaler, the real Prometheus of the stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_prometheus_value_holds_with_invalid_metric() -> R {
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    ensure_crd(&stack)?;
    let node = first_node(&stack)?;
    let client = admin.clone();
    in_namespace(&admin, "loop-neg", |ns| async move {
        let rbac = ScalerRbac::install(&stack, &client, &ns).await?;
        let result = negative_loop(&stack, &client, &ns, &node, &rbac.kubeconfig).await;
        rbac.remove(&stack)?;
        result
    })
    .await
}

async fn negative_loop(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    for name in ["neg", "optin"] {
        deploys
            .create(&PostParams::default(), &deployment(name, node, 3, "50m")?)
            .await?;
    }
    let target = |name: &str| json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": name});
    let neg = |allow: bool| json!([{"name": "backlog", "prometheus": {"query": "vector(-5)", "targetPerReplica": "1", "allowNegative": allow}}]);
    for (name, allow) in [("neg", false), ("optin", true)] {
        let spec = json!({"targetRef": target(name), "minReplicas": 1, "maxReplicas": 10,
            "metrics": neg(allow), "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}});
        policies
            .create(&PostParams::default(), &policy(name, spec)?)
            .await?;
    }
    let scaler = Scaler::start(
        kubeconfig,
        ns,
        "scaler-neg",
        &[
            "--leader-elect=false",
            "--prometheus-url",
            stack.prometheus_url()?,
            "--prometheus-interval-seconds",
            "1",
        ],
    )?;
    // Opted in: the old behaviour, down to the minimum.
    if let Err(e) = wait_replicas(&deploys, "optin", 1, 60, &scaler).await {
        anyhow::bail!("{e}\noptin status: {}", status(&policies, "optin").await);
    }
    // Not opted in: held at 3, with the reason and the field named.
    let s = wait_for(
        "neg: ScalingActive=False InvalidMetric",
        Duration::from_secs(30),
        || async {
            let s = status(&policies, "neg").await;
            let c = condition(&s, "ScalingActive")?;
            (c["status"] == "False" && c["reason"] == "InvalidMetric").then_some(s.clone())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;
    let message = condition(&s, "ScalingActive")
        .map(|c| c["message"].to_string())
        .unwrap_or_default();
    anyhow::ensure!(
        message.contains("spec.metrics[0].prometheus.query returned a negative value (-5)")
            && message.contains("allowNegative: true"),
        "{message}"
    );
    anyhow::ensure!(
        replicas(&deploys, "neg").await == Some(3),
        "the invalid metric changed the count"
    );
    eprintln!("negative value held at 3: {message}");
    Ok(())
}
