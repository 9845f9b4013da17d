//! Why `tidal-scaler run` is not ready, said plainly.
//!
//! The scaler needs some APIs of the cluster: the ScalingPolicy CRD, Pods, Deployments and
//! StatefulSets (its watch caches), and the Lease API (leader election). When one of them is
//! missing (404) or forbidden (403), the component that hit it records a [`Problem`] here
//! under its own key. `/readyz` answers 503 with every problem in its body, one per line, and
//! the log says the same thing once when it appears, again at most every
//! [`REMIND_EVERY`], and once when it clears. The watches retry with [`RetryBackoff`], so the
//! scaler becomes ready by itself, without a restart, as soon as the API appears or the
//! permission is granted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A standing problem is logged again at most this often.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);

/// The command that installs the ScalingPolicy CRD, as written in every message about it.
pub const CRD_INSTALL: &str = "kubectl apply -f manifests/crd/scalingpolicy.yaml";
/// The full name of the ScalingPolicy CRD.
pub const CRD_NAME: &str = "scalingpolicies.tidal.dev";

/// One API the scaler needs, as named in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeededApi {
    /// The resource's plural (`scalingpolicies`).
    pub plural: &'static str,
    /// The API group (`""` for the core group).
    pub group: &'static str,
    /// The version the scaler reads.
    pub version: &'static str,
    /// What the scaler does with it, for the message ("its watch cache").
    pub purpose: &'static str,
    /// The RBAC object that grants it in `manifests/base/scaler/rbac.yaml`.
    pub granted_by: &'static str,
}

impl NeededApi {
    /// The ScalingPolicy CRD's resource.
    pub const SCALING_POLICIES: Self = Self {
        plural: "scalingpolicies",
        group: "tidal.dev",
        version: "v1alpha1",
        purpose: "the policies to evaluate",
        granted_by: "ClusterRole tidal-scaler",
    };
    pub const PODS: Self = Self {
        plural: "pods",
        group: "",
        version: "v1",
        purpose: "the targets' pods",
        granted_by: "ClusterRole tidal-scaler",
    };
    pub const DEPLOYMENTS: Self = Self {
        plural: "deployments",
        group: "apps",
        version: "v1",
        purpose: "Deployment targets",
        granted_by: "ClusterRole tidal-scaler",
    };
    pub const HPAS: Self = Self {
        plural: "horizontalpodautoscalers",
        group: "autoscaling",
        version: "v2",
        purpose: "other autoscalers of the targets",
        granted_by: "ClusterRole tidal-scaler",
    };
    pub const STATEFULSETS: Self = Self {
        plural: "statefulsets",
        group: "apps",
        version: "v1",
        purpose: "StatefulSet targets",
        granted_by: "ClusterRole tidal-scaler",
    };

    /// `plural.group/version` (`pods/v1` for the core group).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            format!("{}/{}", self.plural, self.version)
        } else {
            format!("{}.{}/{}", self.plural, self.group, self.version)
        }
    }
}

/// What a failed request to a needed API means for the scaler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The message for `/readyz` and the log: what is wrong, and how to fix it.
    pub message: String,
    /// True for 404 and 403, which do not go away by themselves.
    pub needs_action: bool,
}

/// Explains an API error of `verb` (`"list"`, `"watch"`) on `api`, in `scope` (`"in namespace
/// x"` or `"cluster-wide"`).
pub fn explain(api: &NeededApi, verb: &str, scope: &str, err: &kube::Error) -> Problem {
    let code = match err {
        kube::Error::Api(s) => s.code,
        _ => 0,
    };
    let server_says = match err {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.trim().to_string(),
        other => other.to_string(),
    };
    match code {
        404 if *api == NeededApi::SCALING_POLICIES => Problem {
            message: format!(
                "the ScalingPolicy CRD ({CRD_NAME}, version {}) is not installed: install it with \
                 `{CRD_INSTALL}` (or `tidal-scaler crdgen | kubectl apply -f -`); the scaler \
                 becomes ready by itself once it is served",
                api.version
            ),
            needs_action: true,
        },
        404 => Problem {
            message: format!(
                "the API server does not serve {} (404), needed for {}",
                api.qualified(),
                api.purpose
            ),
            needs_action: true,
        },
        403 => Problem {
            message: format!(
                "forbidden (403): the scaler may not {verb} {} {scope}, needed for {}; grant it \
                 with the {} of manifests/base/scaler/rbac.yaml (the API server says: {server_says})",
                api.qualified(),
                api.purpose,
                api.granted_by
            ),
            needs_action: true,
        },
        _ => Problem {
            message: format!("{verb} {} {scope} failed: {server_says}", api.qualified()),
            needs_action: false,
        },
    }
}

/// The watches' retry delays: exponential from 0.5 s, doubling, capped at 5 s so that an API
/// that appears (a CRD installed, a role granted) is seen within 5 s.
///
/// kube's `StreamBackoff` calls `reset` on every `Ok` item, and the watcher yields an `Ok`
/// `Event::Init` before each relist, even one that then fails: a plain backoff would retry
/// at its first delay forever (the "every second" warnings of issue #12). So `reset` is
/// ignored, and the delays start over only after the consumer saw a real success
/// ([`RetrySuccess::succeeded`]: a completed list or a watch event).
#[derive(Clone, Debug)]
pub struct RetryBackoff {
    next: Duration,
    success: Arc<AtomicBool>,
}

/// Tells a [`RetryBackoff`] that its stream worked.
#[derive(Clone, Debug)]
pub struct RetrySuccess(Arc<AtomicBool>);

impl RetrySuccess {
    pub fn succeeded(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl RetryBackoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> (Self, RetrySuccess) {
        let success = Arc::new(AtomicBool::new(false));
        (
            Self {
                next: Self::FIRST,
                success: success.clone(),
            },
            RetrySuccess(success),
        )
    }
}

impl Iterator for RetryBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        if self.success.swap(false, Ordering::AcqRel) {
            self.next = Self::FIRST;
        }
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for RetryBackoff {
    /// Ignored: see the type's doc.
    fn reset(&mut self) {}
}

#[derive(Debug, Default)]
struct State {
    synced: bool,
    problems: BTreeMap<&'static str, (Problem, Instant)>,
}

/// Shared readiness: the caches' sync, plus the problems by component. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    state: Arc<Mutex<State>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock only means a panic elsewhere; the map itself is always consistent.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Every cache has synced once.
    pub fn mark_synced(&self) {
        self.with(|s| s.synced = true);
    }

    /// Records `problem` for `component`, and logs it when it is new or changed, or when the
    /// same one was last logged [`REMIND_EVERY`] ago.
    pub fn report(&self, component: &'static str, problem: Problem) {
        let now = Instant::now();
        let log = self.with(|s| match s.problems.get_mut(component) {
            Some((old, logged)) if *old == problem => {
                let due = now.duration_since(*logged) >= REMIND_EVERY;
                if due {
                    *logged = now;
                }
                due
            }
            _ => {
                s.problems.insert(component, (problem.clone(), now));
                true
            }
        });
        if log {
            if problem.needs_action {
                tracing::error!(component, "not ready: {}", problem.message);
            } else {
                tracing::warn!(component, "{}; retrying", problem.message);
            }
        }
    }

    /// Records `problem` for `component` without logging it (its owner logs it).
    pub fn note(&self, component: &'static str, problem: Problem) {
        self.with(|s| {
            s.problems.insert(component, (problem, Instant::now()));
        });
    }

    /// `component` works again.
    pub fn clear(&self, component: &'static str) {
        if self.with(|s| s.problems.remove(component)).is_some() {
            tracing::info!(component, "recovered");
        }
    }

    /// Synced, and no component has a problem.
    pub fn is_ready(&self) -> bool {
        self.with(|s| s.synced && s.problems.is_empty())
    }

    /// The caches have synced (problems may have appeared since).
    pub fn is_synced(&self) -> bool {
        self.with(|s| s.synced)
    }

    /// `/readyz`'s body: `ok`, or one line per reason.
    pub fn body(&self) -> String {
        self.with(|s| {
            if s.synced && s.problems.is_empty() {
                return "ok\n".to_string();
            }
            let mut out = String::from("not ready:\n");
            for (component, (p, _)) in &s.problems {
                out.push_str(&format!("- {component}: {}\n", p.message));
            }
            if !s.synced && s.problems.is_empty() {
                out.push_str("- caches not synced yet\n");
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16, message: &str) -> kube::Error {
        let mut s = Status::failure(message, "");
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn a_missing_crd_names_it_and_the_command_that_installs_it() {
        let p = explain(
            &NeededApi::SCALING_POLICIES,
            "list",
            "cluster-wide",
            &api_error(404, "404 page not found"),
        );
        assert!(p.needs_action);
        assert!(
            p.message.contains("scalingpolicies.tidal.dev"),
            "{}",
            p.message
        );
        assert!(p.message.contains(CRD_INSTALL), "{}", p.message);
    }

    #[test]
    fn a_403_names_the_verb_the_resource_the_scope_and_the_role() {
        let p = explain(
            &NeededApi::DEPLOYMENTS,
            "list",
            "in namespace shop",
            &api_error(403, "deployments.apps is forbidden: User \"x\" cannot list"),
        );
        assert!(p.needs_action);
        for part in [
            "forbidden (403)",
            "list deployments.apps/v1 in namespace shop",
            "ClusterRole tidal-scaler",
            "User \"x\" cannot list",
        ] {
            assert!(
                p.message.contains(part),
                "{part:?} missing in {}",
                p.message
            );
        }
    }

    #[test]
    fn other_errors_are_transient() {
        let p = explain(
            &NeededApi::PODS,
            "watch",
            "cluster-wide",
            &api_error(500, "etcdserver: leader changed"),
        );
        assert!(!p.needs_action);
        assert!(p.message.contains("pods/v1"), "{}", p.message);
        let p404 = explain(
            &NeededApi::PODS,
            "list",
            "cluster-wide",
            &api_error(404, ""),
        );
        assert!(
            p404.message.contains("does not serve pods/v1"),
            "{}",
            p404.message
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_starts_over_only_after_a_real_success() {
        use kube::runtime::utils::Backoff;
        let (mut b, success) = RetryBackoff::new();
        let first: Vec<_> = b.by_ref().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(first, vec![500, 1000, 2000, 4000, 5000, 5000]);
        // The watcher's Event::Init before a relist makes StreamBackoff call reset: ignored.
        b.reset();
        assert_eq!(b.next(), Some(RetryBackoff::MAX));
        success.succeeded();
        assert_eq!(b.next(), Some(RetryBackoff::FIRST));
        assert_eq!(b.next(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn ready_only_when_synced_and_no_problem_is_left() {
        let r = Readiness::new();
        assert!(!r.is_ready());
        assert!(r.body().contains("caches not synced yet"));
        let p = Problem {
            message: "the ScalingPolicy CRD is not installed".into(),
            needs_action: true,
        };
        r.report("scalingpolicies", p.clone());
        r.report("scalingpolicies", p);
        assert_eq!(
            r.body(),
            "not ready:\n- scalingpolicies: the ScalingPolicy CRD is not installed\n"
        );
        r.mark_synced();
        assert!(!r.is_ready(), "a problem keeps it unready");
        r.clear("scalingpolicies");
        assert!(r.is_ready());
        assert_eq!(r.body(), "ok\n");
    }
}
