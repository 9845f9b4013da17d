//! The snapshot: everything `/metrics` shows, rebuilt by the sampling loop and swapped
//! atomically (an `Arc` replaced under a lock held only for the swap).
//!
//! Scrapes never do I/O: [`encode_openmetrics`] writes the current `Arc<Snapshot>` (byte for
//! byte what the prometheus-client [`SnapshotCollector`] writes, without its per-series dynamic
//! dispatch), once per snapshot and format: [`Shared::body`] serves the cached bytes to every
//! further scrape of the same snapshot. The loop ([`Runner`]) runs every sampler once per interval, adds
//! the self-metrics (`tidal_agent_sampler_duration_seconds`, `tidal_agent_sampler_success`,
//! `tidal_agent_sample_errors_total`, `tidal_agent_pod_metadata_synced`) and publishes.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tidal_core::schema;

use crate::buffer::{Buffer, Family, Kind};
use crate::pods::PodMetaByUid;
use crate::sampler::Sampler;

/// What one pass of the loop produced.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub families: BTreeMap<&'static str, Family>,
}

/// A snapshot is stale (and `/healthz` fails) when no round has completed for this long,
/// unless [`Shared::new`] set another bound.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30);

/// The published snapshot and the readiness flag, shared with the server.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The snapshot and its generation (bumped by every [`Shared::store`]).
    snap: Arc<RwLock<(u64, Arc<Snapshot>)>>,
    ready: Arc<AtomicBool>,
    /// When the round of the published snapshot started (monotonic), or when this was made
    /// if nothing was published yet.
    round_started: Arc<Mutex<Instant>>,
    /// No round for longer than this: stale.
    stale_after: Duration,
    /// Size of the last `/metrics` body, to size the next one's buffer.
    body_size: Arc<AtomicUsize>,
    /// The `/metrics` bodies of one generation, per format, encoded on first request.
    bodies: Arc<Mutex<Bodies>>,
}

/// Encoded bodies of one snapshot generation.
#[derive(Debug, Default)]
struct Bodies {
    generation: u64,
    openmetrics: Option<Bytes>,
    text_004: Option<Bytes>,
    /// The `ns` part of the usage document ([`encode_usage`]).
    usage: Option<Bytes>,
}

impl Default for Shared {
    fn default() -> Self {
        Self::new(DEFAULT_STALE_AFTER)
    }
}

impl Shared {
    /// Nothing published yet; stale once no round has completed for `stale_after`.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            snap: Arc::default(),
            ready: Arc::default(),
            round_started: Arc::new(Mutex::new(Instant::now())),
            stale_after,
            body_size: Arc::default(),
            bodies: Arc::default(),
        }
    }

    /// Time since the round of the published snapshot started (since creation before the
    /// first), on the monotonic clock: what `tidal_agent_snapshot_age_seconds` reports.
    pub fn age(&self) -> Duration {
        let started = *self.round_started.lock().unwrap_or_else(|p| p.into_inner());
        started.elapsed()
    }

    /// Why the data is stale, if it is: no round completed for longer than the bound.
    pub fn stale(&self) -> Option<String> {
        let age = self.age();
        (age > self.stale_after).then(|| {
            format!(
                "stale: the sampler has not completed a round for {:.1}s (bound {:.1}s)",
                age.as_secs_f64(),
                self.stale_after.as_secs_f64()
            )
        })
    }

    /// The current snapshot (cheap: clones an `Arc`).
    pub fn load(&self) -> Arc<Snapshot> {
        self.load_generation().1
    }

    fn load_generation(&self) -> (u64, Arc<Snapshot>) {
        self.snap.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Publishes a new snapshot, made by a round that started now, and marks the agent ready.
    pub fn store(&self, snap: Snapshot) {
        self.store_at(snap, Instant::now());
    }

    /// Publishes a new snapshot made by the round that started `round_started`.
    pub fn store_at(&self, snap: Snapshot, round_started: Instant) {
        let snap = Arc::new(snap);
        if let Ok(mut s) = self.snap.write() {
            *s = (s.0 + 1, snap);
        }
        *self.round_started.lock().unwrap_or_else(|p| p.into_inner()) = round_started;
        self.ready.store(true, Ordering::Release);
    }

    /// The lines that end every `/metrics` body, written per scrape: the snapshot's age (and
    /// `# EOF` in OpenMetrics). Kept out of the cached body, which serves many scrapes.
    pub fn tail(&self, openmetrics: bool) -> Bytes {
        let mut num = dtoa::Buffer::new();
        let name = schema::AGENT_SNAPSHOT_AGE_SECONDS;
        let mut out = format!(
            "# HELP {name} Seconds since the sampling round whose data this scrape serves started.\n\
             # TYPE {name} gauge\n{name} {}\n",
            num.format(self.age().as_secs_f64())
        );
        if openmetrics {
            out.push_str("# EOF\n");
        }
        Bytes::from(out)
    }

    /// The current snapshot and the bodies encoded from it so far (emptied when a new snapshot
    /// was published since), locked.
    fn current_bodies(&self) -> (Arc<Snapshot>, std::sync::MutexGuard<'_, Bodies>) {
        let (generation, snap) = self.load_generation();
        let mut bodies = match self.bodies.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if bodies.generation != generation {
            *bodies = Bodies {
                generation,
                ..Bodies::default()
            };
        }
        (snap, bodies)
    }

    /// The cached part of the `/metrics` body of the current snapshot in OpenMetrics
    /// (`openmetrics`) or text 0.0.4: build info plus the snapshot, without `# EOF` (a
    /// response appends [`Shared::tail`]). Encoded once per snapshot and format; later
    /// scrapes get the same bytes.
    pub fn body(&self, openmetrics: bool) -> Bytes {
        let (snap, mut bodies) = self.current_bodies();
        let slot = if openmetrics {
            &mut bodies.openmetrics
        } else {
            &mut bodies.text_004
        };
        if let Some(b) = slot {
            return b.clone();
        }
        // Sized like the last body: a scrape is megabytes, and growing a string by doubling
        // copies it again and again.
        let out = encode_body(&snap, openmetrics, self.body_size_hint());
        self.set_body_size_hint(out.len());
        let body = Bytes::from(out);
        *slot = Some(body.clone());
        body
    }

    /// The cached part of the usage document (`/v1/usage`, [`tidal_core::usage`]) of the
    /// current snapshot: its `ns` object, encoded once per snapshot. A response wraps it in
    /// [`Shared::usage_head`] and [`tidal_core::usage::USAGE_TAIL`].
    pub fn usage_body(&self) -> Bytes {
        let (snap, mut bodies) = self.current_bodies();
        bodies
            .usage
            .get_or_insert_with(|| Bytes::from(encode_usage(&snap)))
            .clone()
    }

    /// The part of the usage document written per request: the snapshot's age (the value of
    /// `tidal_agent_snapshot_age_seconds`) and its sample time on the wall clock.
    pub fn usage_head(&self) -> Bytes {
        let age = self.age();
        let sampled = std::time::SystemTime::now()
            .checked_sub(age)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(f64::NAN, |d| d.as_secs_f64());
        Bytes::from(tidal_core::usage::usage_head(age.as_secs_f64(), sampled))
    }

    /// True once the first complete pass has been published.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The size of the last `/metrics` body plus some slack (0 before the first scrape).
    pub fn body_size_hint(&self) -> usize {
        let n = self.body_size.load(Ordering::Relaxed);
        n + n / 8
    }

    /// Records the size of a `/metrics` body.
    pub fn set_body_size_hint(&self, len: usize) {
        self.body_size.store(len, Ordering::Relaxed);
    }
}

/// Encodes the current snapshot on every scrape.
#[derive(Debug)]
pub struct SnapshotCollector(pub Shared);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.0.load();
        for (name, fam) in &snap.families {
            let (base, ty) = match fam.kind {
                // prometheus-client appends `_total` to counter samples itself.
                Kind::Counter => (
                    name.strip_suffix("_total").unwrap_or(name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (*name, MetricType::Gauge),
            };
            let mut metric = encoder.encode_descriptor(base, fam.help, None, ty)?;
            // A single unlabelled series is written without `{}`.
            if let [(labels, v)] = fam.samples.as_slice()
                && labels.is_empty()
            {
                match fam.kind {
                    Kind::Counter => ConstCounter::new(*v).encode(metric)?,
                    Kind::Gauge => ConstGauge::new(*v).encode(metric)?,
                }
                continue;
            }
            for (labels, v) in &fam.samples {
                let set: &[(&str, String)] = labels;
                let series = metric.encode_family(&set)?;
                match fam.kind {
                    Kind::Counter => ConstCounter::new(*v).encode(series)?,
                    Kind::Gauge => ConstGauge::new(*v).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

/// A prometheus-client registry of the build info (`tidal_agent_build_info`, always 1).
fn build_info_registry() -> Registry {
    use prometheus_client::metrics::family::Family as PcFamily;
    use prometheus_client::metrics::gauge::Gauge;
    let mut reg = Registry::default();
    let info = PcFamily::<Vec<(String, String)>, Gauge>::default();
    info.get_or_create(&vec![(
        "version".to_string(),
        tidal_core::build::VERSION.to_string(),
    )])
    .set(1);
    reg.register(
        schema::AGENT_BUILD_INFO,
        "Build information of tidal-agent; always 1",
        info,
    );
    reg
}

/// The registry: build info plus the snapshot collector: the reference encoding, which
/// `/metrics` reproduces byte for byte, faster (see [`encode_openmetrics`]). Unprefixed, since
/// the container series keep their kubelet/cAdvisor names; every name comes from
/// `tidal_core::schema`.
pub fn registry(shared: Shared) -> Registry {
    let mut reg = build_info_registry();
    reg.register_collector(Box::new(SnapshotCollector(shared)));
    reg
}

/// The `tidal_agent_build_info` family, as prometheus-client's registry encodes it (constant).
pub fn build_info() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let reg = build_info_registry();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    })
}

/// The cached part of the `/metrics` body of `snap` (build info, then the snapshot) in
/// OpenMetrics or text 0.0.4 (exactly `tidal_core::exposition::to_text_004` of the
/// OpenMetrics body, written directly), in a string allocated with `capacity`: what the first
/// scrape of a snapshot in that format costs. Without `# EOF`: each response ends with
/// [`Shared::tail`].
pub fn encode_body(snap: &Snapshot, openmetrics: bool, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    // A gauge: the same in both formats.
    out.push_str(build_info());
    encode_families(snap, &mut out, openmetrics);
    out
}

/// Appends `v` to `out` with OpenMetrics label-value escaping (`\\`, `"`, newline).
fn push_escaped(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends the snapshot's families to `out` in the OpenMetrics text format (without `# EOF`):
/// exactly what [`SnapshotCollector`] makes prometheus-client write (a test checks it byte for
/// byte), written directly into one string.
pub fn encode_openmetrics(snap: &Snapshot, out: &mut String) {
    encode_families(snap, out, true);
}

/// [`encode_openmetrics`], or its text 0.0.4 form: counters' `# HELP`/`# TYPE` name the
/// `_total` series.
fn encode_families(snap: &Snapshot, out: &mut String, openmetrics: bool) {
    let mut num = dtoa::Buffer::new();
    for (name, fam) in &snap.families {
        let (base, ty, suffix) = match fam.kind {
            // Counter samples are `<base>_total`, the descriptor is `<base>`.
            Kind::Counter => (
                name.strip_suffix("_total").unwrap_or(name),
                "counter",
                "_total",
            ),
            Kind::Gauge => (*name, "gauge", ""),
        };
        let described = if openmetrics { "" } else { suffix };
        for (head, tail) in [("# HELP ", fam.help), ("# TYPE ", ty)] {
            out.push_str(head);
            out.push_str(base);
            out.push_str(described);
            out.push(' ');
            out.push_str(tail);
            out.push('\n');
        }
        // A single unlabelled series is written without `{}`.
        if let [(labels, v)] = fam.samples.as_slice()
            && labels.is_empty()
        {
            out.push_str(base);
            out.push_str(suffix);
            out.push(' ');
            out.push_str(num.format(*v));
            out.push('\n');
            continue;
        }
        for (labels, v) in &fam.samples {
            out.push_str(base);
            out.push_str(suffix);
            out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                push_escaped(out, val);
                out.push('"');
            }
            out.push_str("} ");
            out.push_str(num.format(*v));
            out.push('\n');
        }
    }
}

/// The `ns` object of the usage document ([`tidal_core::usage`]) for `snap`: every series of
/// the per-container CPU rate and working set (under either name of the working set) with
/// non-empty `namespace`, `pod` and `container` labels, values as they are. Families are read
/// in the snapshot's (name) order and samples in theirs, a later series of the same container
/// replacing an earlier one: what a reader of the `/metrics` text of the same snapshot gets.
pub fn encode_usage(snap: &Snapshot) -> String {
    use tidal_core::usage::{ContainerValues, Namespaces};
    let working_set_compatible =
        schema::compatible_name(schema::CONTAINER_MEMORY_WORKING_SET_BYTES);
    let mut ns = Namespaces::new();
    for (name, fam) in &snap.families {
        let cpu = *name == schema::AGENT_CONTAINER_CPU_USAGE_CORES;
        if !cpu
            && *name != schema::CONTAINER_MEMORY_WORKING_SET_BYTES
            && *name != working_set_compatible
        {
            continue;
        }
        for (labels, v) in &fam.samples {
            let label = |k: &str| {
                labels
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.as_str())
                    .filter(|v| !v.is_empty())
            };
            let (Some(namespace), Some(pod), Some(container)) =
                (label("namespace"), label("pod"), label("container"))
            else {
                continue;
            };
            let values: &mut ContainerValues = ns
                .entry(namespace.to_string())
                .or_default()
                .entry(pod.to_string())
                .or_default()
                .entry(container.to_string())
                .or_default();
            let value = Some(Some(*v));
            if cpu {
                values.cpu_cores = value;
            } else {
                values.working_set_bytes = value;
            }
        }
    }
    serde_json::to_string(&ns).unwrap_or_else(|_| "{}".to_string())
}

/// Runs the samplers and publishes snapshots.
pub struct Runner {
    samplers: Vec<Box<dyn Sampler>>,
    errors: BTreeMap<(&'static str, &'static str), u64>,
    failing: HashSet<&'static str>,
    pods: Option<PodMetaByUid>,
    shared: Shared,
    /// Publish the container and node series under their kubelet/cAdvisor and node_exporter
    /// names (`--compatible-metric-names`).
    compatible: bool,
}

impl Runner {
    /// A runner publishing to `shared`; `pods` is set when the pod watch runs.
    pub fn new(
        samplers: Vec<Box<dyn Sampler>>,
        pods: Option<PodMetaByUid>,
        shared: Shared,
    ) -> Self {
        Self {
            samplers,
            errors: BTreeMap::new(),
            failing: HashSet::new(),
            pods,
            shared,
            compatible: false,
        }
    }

    /// Publishes the series that have a kubelet/cAdvisor or node_exporter equivalent under
    /// that name ([`schema::compatible_name`]) when `on`.
    pub fn compatible_names(mut self, on: bool) -> Self {
        self.compatible = on;
        self
    }

    fn count_error(
        &mut self,
        sampler: &'static str,
        reason: &'static str,
        detail: &dyn std::fmt::Display,
    ) {
        let n = self.errors.entry((sampler, reason)).or_insert(0);
        *n += 1;
        // Rate-limited: the first error of each kind is a warning, the rest are debug.
        if *n == 1 {
            tracing::warn!(sampler, reason, error = %detail, "sampling error (repeats logged at debug)");
        } else {
            tracing::debug!(sampler, reason, error = %detail, "sampling error");
        }
    }

    /// Runs every sampler once, as of `at`, and publishes the result.
    pub fn run_once(&mut self, at: Instant) {
        let mut families: BTreeMap<&'static str, Family> = BTreeMap::new();
        let mut durations = Vec::new();
        let mut successes = Vec::new();
        for i in 0..self.samplers.len() {
            let sampler = &mut self.samplers[i];
            let name = sampler.name();
            let mut buf = Buffer::new(at);
            let start = Instant::now();
            let result = sampler.sample(&mut buf);
            durations.push((name, start.elapsed().as_secs_f64()));
            let (fams, errs) = buf.into_parts();
            for (k, mut fam) in fams {
                let k = if self.compatible {
                    schema::compatible_name(k)
                } else {
                    k
                };
                families
                    .entry(k)
                    .and_modify(|f| f.samples.append(&mut fam.samples))
                    .or_insert(fam);
            }
            for (reason, detail) in errs {
                self.count_error(name, reason, &detail);
            }
            match result {
                Ok(()) => {
                    if self.failing.remove(name) {
                        tracing::info!(sampler = name, "sampler recovered");
                    }
                    successes.push((name, 1.0));
                }
                Err(e) => {
                    if self.failing.insert(name) {
                        tracing::warn!(sampler = name, reason = e.reason(), error = %e, "sampler failed");
                    }
                    let n = self.errors.entry((name, e.reason())).or_insert(0);
                    *n += 1;
                    successes.push((name, 0.0));
                }
            }
        }
        let mut b = Buffer::new(at);
        for (name, secs) in durations {
            b.gauge(
                schema::AGENT_SAMPLER_DURATION_SECONDS,
                "Duration of the last run of each sampler.",
                vec![("sampler", name.to_string())],
                secs,
            );
        }
        for (name, ok) in successes {
            b.gauge(
                schema::AGENT_SAMPLER_SUCCESS,
                "1 if the last run of the sampler succeeded, else 0.",
                vec![("sampler", name.to_string())],
                ok,
            );
        }
        for ((sampler, reason), n) in &self.errors {
            b.counter(
                schema::AGENT_SAMPLE_ERRORS_TOTAL,
                "Errors met while sampling, by sampler and reason.",
                vec![
                    ("sampler", sampler.to_string()),
                    ("reason", reason.to_string()),
                ],
                *n as f64,
            );
        }
        if let Some(pods) = &self.pods {
            b.gauge(
                schema::AGENT_POD_METADATA_SYNCED,
                "1 once the pod watch has listed this node's pods.",
                vec![],
                if pods.synced() { 1.0 } else { 0.0 },
            );
        }
        families.extend(b.into_parts().0);
        self.shared.store_at(Snapshot { families }, at);
    }

    /// Runs forever on the current thread, one pass per `interval`.
    pub fn run_forever(mut self, interval: Duration) {
        loop {
            let start = Instant::now();
            let pass =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_once(start)));
            if pass.is_err() {
                // A stale snapshot must not be served as if it were fresh: exit, and let the
                // kubelet restart the agent (the panic message is already on stderr).
                tracing::error!("sampling pass panicked; exiting");
                std::process::exit(70);
            }
            std::thread::sleep(interval.saturating_sub(start.elapsed()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SampleError;
    use crate::samplers::cgroup::CgroupError;

    struct Fake(u32);
    impl Sampler for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn sample(&mut self, buf: &mut Buffer) -> Result<(), SampleError> {
            self.0 += 1;
            buf.counter(
                schema::CONTAINER_CPU_USAGE_SECONDS_TOTAL,
                "h",
                vec![("pod", "p".into())],
                1.5,
            );
            buf.gauge(schema::NODE_LOAD1, "h", vec![], 0.25);
            buf.error("vanished");
            if self.0 == 2 {
                return Err(CgroupError::NoHierarchy { root: "/x".into() }.into());
            }
            Ok(())
        }
    }

    fn encode(shared: &Shared) -> String {
        let reg = registry(shared.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encodes");
        out
    }

    #[test]
    fn direct_encoding_is_byte_for_byte_prometheus_client() {
        let shared = Shared::default();
        let mut b = Buffer::new(Instant::now());
        b.counter("a_seconds_total", "Help.", vec![("pod", "p".into())], 1.5);
        b.counter(
            "a_seconds_total",
            "Help.",
            vec![("pod", "q\"\\\n\u{e9}".into())],
            2e-6,
        );
        b.counter("lonely_total", "Alone.", vec![], 7.0);
        b.gauge("g", "G.", vec![], 0.25);
        b.gauge("many", "M.", vec![], 1.0);
        b.gauge("many", "M.", vec![], 2.0);
        b.gauge(
            "two",
            "T.",
            vec![("a", String::new()), ("b", "x".into())],
            1e21,
        );
        b.gauge(
            "two",
            "T.",
            vec![("a", "y".into()), ("b", "z".into())],
            -3.0,
        );
        shared.store(Snapshot {
            families: b.into_parts().0,
        });
        let want = encode(&shared);
        let body = shared.body(true);
        let got = std::str::from_utf8(&body).expect("utf8");
        // The cached part ends where the per-scrape tail (the age, then `# EOF`) begins.
        assert_eq!(format!("{got}# EOF\n"), want);
        // Cached: the same bytes, until the next snapshot.
        assert_eq!(shared.body(true).as_ptr(), body.as_ptr());
        assert_eq!(
            std::str::from_utf8(&shared.body(false)).expect("utf8"),
            tidal_core::exposition::to_text_004(&want)
        );
        shared.store(Snapshot::default());
        assert_ne!(&shared.body(true)[..], &body[..]);
    }

    #[test]
    fn snapshot_is_published_and_encoded_with_self_metrics() {
        let shared = Shared::default();
        assert!(!shared.ready());
        let mut r = Runner::new(vec![Box::new(Fake(0))], None, shared.clone());
        r.run_once(Instant::now());
        assert!(shared.ready());
        let body = encode(&shared);
        // Tidal's names by default: nothing a kubelet or node_exporter exports.
        let has = |body: &str, line: &str| body.lines().any(|l| l == line);
        assert!(
            has(
                &body,
                "# TYPE tidal_agent_container_cpu_usage_seconds counter"
            ),
            "{body}"
        );
        assert!(
            has(
                &body,
                "tidal_agent_container_cpu_usage_seconds_total{pod=\"p\"} 1.5"
            ),
            "{body}"
        );
        assert!(has(&body, "tidal_agent_node_load1 0.25"), "{body}");
        assert!(
            !body
                .lines()
                .any(|l| l.starts_with("container_") || l.starts_with("node_")),
            "{body}"
        );
        assert!(
            body.contains("tidal_agent_sampler_success{sampler=\"fake\"} 1.0\n"),
            "{body}"
        );
        assert!(
            body.contains(
                "tidal_agent_sample_errors_total{sampler=\"fake\",reason=\"vanished\"} 1.0\n"
            ),
            "{body}"
        );
        r.run_once(Instant::now());
        let body = encode(&shared);
        assert!(
            body.contains("tidal_agent_sampler_success{sampler=\"fake\"} 0.0\n"),
            "{body}"
        );
        assert!(
            body.contains(
                "tidal_agent_sample_errors_total{sampler=\"fake\",reason=\"no_hierarchy\"} 1.0\n"
            ),
            "{body}"
        );
        assert!(
            body.contains(
                "tidal_agent_sample_errors_total{sampler=\"fake\",reason=\"vanished\"} 2.0\n"
            ),
            "{body}"
        );
    }

    /// `--compatible-metric-names`: the same series under the kubelet/cAdvisor and
    /// node_exporter names, and the agent's own series unchanged.
    #[test]
    fn compatible_names_are_the_upstream_ones() {
        let shared = Shared::default();
        let mut r =
            Runner::new(vec![Box::new(Fake(0))], None, shared.clone()).compatible_names(true);
        r.run_once(Instant::now());
        let body = encode(&shared);
        let has = |line: &str| body.lines().any(|l| l == line);
        assert!(has("# TYPE container_cpu_usage_seconds counter"), "{body}");
        assert!(
            has("container_cpu_usage_seconds_total{pod=\"p\"} 1.5"),
            "{body}"
        );
        assert!(has("node_load1 0.25"), "{body}");
        assert!(
            !body.contains("tidal_agent_container_cpu_usage_seconds"),
            "{body}"
        );
        assert!(!body.contains("tidal_agent_node_load1"), "{body}");
        assert!(
            has("tidal_agent_sampler_success{sampler=\"fake\"} 1.0"),
            "{body}"
        );
    }
}
