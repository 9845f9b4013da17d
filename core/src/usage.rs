//! The compact usage document (issue #13, "a compact fast path"): what `tidal-agent` serves at
//! [`USAGE_PATH`] for the scaler, rendered from the same snapshot as its `/metrics`, holding
//! only what the scaler's fast path reads there.
//!
//! One JSON object, no whitespace:
//!
//! ```text
//! {"a":"0.137","t":"1764820000.25","ns":{"shop":{"web-1":{"app":{"c":"0.5","w":"52428800"}}}}}
//! ```
//!
//! - `a`: the snapshot's age in seconds when the response was made (on the agent's monotonic
//!   clock): the value `/metrics` reports as `tidal_agent_snapshot_age_seconds`.
//! - `t`: the snapshot's sample time, Unix seconds (the agent's wall clock minus `a`);
//!   informational, the scaler stamps samples with its own clock minus `a`.
//! - `ns`: namespace → pod → container → values, for every series of
//!   `tidal_agent_container_cpu_usage_cores` (`c`, cores) and
//!   `tidal_agent_container_memory_working_set_bytes` (`w`, bytes; also under its
//!   `--compatible-metric-names` name) whose `namespace`, `pod` and `container` labels are all
//!   non-empty. A key is absent when the snapshot has no such series for that container (the
//!   CPU rate exists only from the agent's second sample on). Values are passed through
//!   unjudged: the scaler applies the same rule to both formats (a negative or non-finite
//!   value is absent, never 0).
//!
//! Numbers are strings, as the Prometheus HTTP API writes sample values: the shortest decimal
//! that reads back to the same `f64` (`NaN`, `+Inf`, `-Inf` for the others), read with Rust's
//! correctly rounded parser, as the scaler reads the `/metrics` text, so both give the same
//! bits (a JSON number would go through the JSON parser's own float reading). A reader also
//! takes a JSON number, and `null` as a non-finite value.
//!
//! The version is in the path: a change that older scalers could misread gets a new path;
//! unknown keys are ignored.

use std::collections::BTreeMap;

use serde::de::{self, Visitor};

use crate::exposition::parse_sample_value;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the agent serves the document.
pub const USAGE_PATH: &str = "/v1/usage";

/// Its content type.
pub const USAGE_CONTENT_TYPE: &str = "application/json";

/// One container's values. The outer `Option` is whether the snapshot has the series; the
/// inner one is its value (`None`: written as `null`; the agent writes every value it has).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerValues {
    /// `tidal_agent_container_cpu_usage_cores`.
    #[serde(
        rename = "c",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_present",
        deserialize_with = "read_present"
    )]
    pub cpu_cores: Option<Option<f64>>,
    /// `tidal_agent_container_memory_working_set_bytes`.
    #[serde(
        rename = "w",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_present",
        deserialize_with = "read_present"
    )]
    pub working_set_bytes: Option<Option<f64>>,
}

/// The text of a value: the shortest decimal that reads back to `v`, or the exposition's
/// spelling of a non-finite value.
pub fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        // Rust's `Display` of a float is the shortest decimal that parses back to it.
        v.to_string()
    }
}

fn write_value<S: Serializer>(v: Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&value_text(v)),
        None => s.serialize_none(),
    }
}

fn write_present<S: Serializer>(v: &Option<Option<f64>>, s: S) -> Result<S::Ok, S::Error> {
    write_value(v.flatten(), s)
}

fn write_number<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    write_value(*v, s)
}

/// Reads a value: a string ([`parse_sample_value`]), a JSON number, or `null` (`None`).
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number as a string, a number, or null")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_sample_value(v)
            .map(Some)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A key that is there, even as `null`, is `Some`.
fn read_present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    d.deserialize_any(ValueVisitor).map(Some)
}

fn read_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(ValueVisitor)
}

/// Namespace → pod → container → values.
pub type Namespaces = BTreeMap<String, BTreeMap<String, BTreeMap<String, ContainerValues>>>;

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageDocument {
    /// `a`: the snapshot's age in seconds (`null` or absent: unknown).
    #[serde(
        rename = "a",
        default,
        serialize_with = "write_number",
        deserialize_with = "read_number"
    )]
    pub age_seconds: Option<f64>,
    /// `t`: the snapshot's sample time, Unix seconds.
    #[serde(
        rename = "t",
        default,
        serialize_with = "write_number",
        deserialize_with = "read_number"
    )]
    pub sampled_unix_seconds: Option<f64>,
    /// `ns`: the values.
    #[serde(rename = "ns", default)]
    pub namespaces: Namespaces,
}

/// Writes the head of a response: `{"a":<age>,"t":<time>,"ns":`; the serialized
/// [`Namespaces`] and [`USAGE_TAIL`] follow. The agent caches the namespaces part per
/// snapshot and writes this per request.
pub fn usage_head(age_seconds: f64, sampled_unix_seconds: f64) -> String {
    format!(
        "{{\"a\":\"{}\",\"t\":\"{}\",\"ns\":",
        value_text(age_seconds),
        value_text(sampled_unix_seconds)
    )
}

/// The byte that ends a response.
pub const USAGE_TAIL: &str = "}";

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> UsageDocument {
        let mut ns = Namespaces::new();
        let pod = ns
            .entry("shop".into())
            .or_default()
            .entry("web-1".into())
            .or_default();
        pod.insert(
            "app".into(),
            ContainerValues {
                cpu_cores: Some(Some(0.123_456_789_012_345_68)),
                working_set_bytes: Some(Some(52_428_800.0)),
            },
        );
        pod.insert(
            "new".into(),
            ContainerValues {
                cpu_cores: None,
                working_set_bytes: Some(Some(1e-300)),
            },
        );
        pod.insert(
            "odd".into(),
            ContainerValues {
                cpu_cores: Some(Some(f64::INFINITY)),
                working_set_bytes: Some(Some(-1.5)),
            },
        );
        UsageDocument {
            age_seconds: Some(0.137),
            sampled_unix_seconds: Some(1_764_820_000.25),
            namespaces: ns,
        }
    }

    #[test]
    fn round_trips_and_keeps_absent_apart_from_present() {
        let d = doc();
        let text = serde_json::to_string(&d).expect("serializes");
        assert_eq!(
            text,
            format!(
                "{{\"a\":\"0.137\",\"t\":\"1764820000.25\",\"ns\":{{\"shop\":{{\"web-1\":{{\
                 \"app\":{{\"c\":\"0.12345678901234568\",\"w\":\"52428800\"}},\
                 \"new\":{{\"w\":\"{}\"}},\"odd\":{{\"c\":\"+Inf\",\"w\":\"-1.5\"}}}}}}}}}}",
                1e-300
            )
        );
        let back: UsageDocument = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, d);
    }

    /// Every value reads back bit for bit, as the exposition text's does.
    #[test]
    fn values_read_back_to_the_same_bits() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match i % 3 {
                0 => f64::from_bits(x),
                1 => (x >> 11) as f64 / (1u64 << 53) as f64 * 64.0,
                _ => (x >> 20) as f64,
            };
            let back = parse_sample_value(&value_text(v)).expect("parses");
            assert!(
                back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()),
                "{v:e}"
            );
        }
        for (v, text) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.5, "0.5"),
            (3.0, "3"),
        ] {
            assert_eq!(value_text(v), text);
        }
    }

    #[test]
    fn the_head_and_tail_around_the_namespaces_make_the_document() {
        let d = doc();
        let text = format!(
            "{}{}{USAGE_TAIL}",
            usage_head(0.137, 1_764_820_000.25),
            serde_json::to_string(&d.namespaces).expect("serializes")
        );
        assert_eq!(text, serde_json::to_string(&d).expect("serializes"));
        // Numbers, null and missing keys are read too.
        let other: UsageDocument = serde_json::from_str(
            "{\"a\":0.5,\"t\":null,\"x\":[1],\"ns\":{\"n\":{\"p\":{\"c\":{\"c\":2,\"w\":null}}}}}",
        )
        .expect("parses");
        assert_eq!(other.age_seconds, Some(0.5));
        assert_eq!(other.sampled_unix_seconds, None);
        assert_eq!(
            other.namespaces["n"]["p"]["c"],
            ContainerValues {
                cpu_cores: Some(Some(2.0)),
                working_set_bytes: Some(None),
            }
        );
        let empty: UsageDocument = serde_json::from_str("{}").expect("parses");
        assert_eq!(empty, UsageDocument::default());
        for bad in [
            "{\"a\":\"x\"}",
            "{\"ns\":{\"n\":{\"p\":{\"c\":{\"c\":\"1,5\"}}}}}",
        ] {
            assert!(serde_json::from_str::<UsageDocument>(bad).is_err(), "{bad}");
        }
    }
}
