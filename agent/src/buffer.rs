//! [`Buffer`]: what one run of a sampler produces, before it becomes part of a snapshot.
//!
//! A buffer holds metric families (name, help, kind, samples) plus the per-item errors the
//! sampler met without failing as a whole (a container that vanished between listing and
//! reading, say). It carries the instant the run started, so rate computations take time as
//! an input and tests can drive them with a synthetic clock.

use std::collections::BTreeMap;
use std::time::Instant;

/// The labels of one series, in a fixed order.
pub type Labels = std::sync::Arc<[(&'static str, String)]>;

/// Counter or gauge (the only two kinds the agent exports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Labels, f64)>,
}

/// The output of one sampler run.
#[derive(Clone, Debug)]
pub struct Buffer {
    at: Instant,
    families: BTreeMap<&'static str, Family>,
    errors: Vec<&'static str>,
    details: Vec<String>,
}

impl Buffer {
    /// An empty buffer for a run that started `at`.
    pub fn new(at: Instant) -> Self {
        Self {
            at,
            families: BTreeMap::new(),
            errors: Vec::new(),
            details: Vec::new(),
        }
    }

    /// When the run started.
    pub fn at(&self) -> Instant {
        self.at
    }

    fn push(&mut self, name: &'static str, help: &'static str, kind: Kind, labels: Labels, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.families
            .entry(name)
            .or_insert_with(|| Family {
                help,
                kind,
                samples: Vec::new(),
            })
            .samples
            .push((labels, v));
    }

    /// Adds a whole batch of samples of one family (non-finite values are dropped).
    pub fn extend(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        mut samples: Vec<(Labels, f64)>,
    ) {
        samples.retain(|(_, v)| v.is_finite());
        if samples.is_empty() {
            return;
        }
        match self.families.entry(name) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                e.get_mut().samples.append(&mut samples)
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Family {
                    help,
                    kind,
                    samples,
                });
            }
        }
    }

    /// Adds a counter sample (`name` ends in `_total`, as in the schema).
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: impl Into<Labels>,
        v: f64,
    ) {
        self.push(name, help, Kind::Counter, labels.into(), v);
    }

    /// Adds a gauge sample.
    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: impl Into<Labels>,
        v: f64,
    ) {
        self.push(name, help, Kind::Gauge, labels.into(), v);
    }

    /// Records an error that did not fail the whole run (its fixed reason label).
    pub fn error(&mut self, reason: &'static str) {
        self.error_detail(reason, String::new());
    }

    /// Records an error with a human-readable detail (path, cause) for the log.
    pub fn error_detail(&mut self, reason: &'static str, detail: impl std::fmt::Display) {
        self.errors.push(reason);
        self.details.push(detail.to_string());
    }

    /// The families collected so far.
    pub fn families(&self) -> &BTreeMap<&'static str, Family> {
        &self.families
    }

    /// The per-item errors recorded so far.
    pub fn errors(&self) -> &[&'static str] {
        &self.errors
    }

    /// Splits into families and `(reason, detail)` errors.
    #[allow(clippy::type_complexity)]
    pub fn into_parts(self) -> (BTreeMap<&'static str, Family>, Vec<(&'static str, String)>) {
        (
            self.families,
            self.errors.into_iter().zip(self.details).collect(),
        )
    }

    /// The value of the series `name` whose labels include every pair of `want`.
    /// Used by tests and by diagnostics; returns the first match.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.families
            .get(name)?
            .samples
            .iter()
            .find_map(|(labels, v)| {
                want.iter()
                    .all(|(k, val)| labels.iter().any(|(lk, lv)| lk == k && lv == val))
                    .then_some(*v)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_families_and_drops_non_finite_values() {
        let mut b = Buffer::new(Instant::now());
        b.gauge("g", "help", vec![("a", "1".into())], 2.5);
        b.gauge("g", "help", vec![("a", "2".into())], f64::NAN);
        b.counter("c_total", "help", vec![], 7.0);
        b.error("vanished");
        assert_eq!(b.value("g", &[("a", "1")]), Some(2.5));
        assert_eq!(b.value("g", &[("a", "2")]), None);
        assert_eq!(b.value("c_total", &[]), Some(7.0));
        assert_eq!(b.families()["g"].samples.len(), 1);
        assert_eq!(b.families()["c_total"].kind, Kind::Counter);
        assert_eq!(b.errors(), ["vanished"]);
    }
}
