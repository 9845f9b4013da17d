//! A parser for the Prometheus text exposition format 0.0.4, and the OpenMetrics text subset
//! `tidal-agent` may serve (`# EOF`, `# TYPE`, `# HELP`, `# UNIT` lines).
//!
//! Built for the fast path, where the scaler reads a few series out of each agent's scrape of
//! thousands: the caller's `keep(name)` filter runs on the metric name before anything else on
//! the line is looked at, so an unwanted series costs one scan of its name. Names and label
//! names borrow from the body; a label value is copied only when it contains an escape.
//!
//! Grammar (one sample per line; blanks are spaces or tabs):
//!
//! ```text
//! name [ "{" [ label "=" "\"" value "\"" { "," label "=" "\"" value "\"" } [ "," ] ] "}" ] value [ timestamp ]
//! ```
//!
//! - Lines starting with `#` are comments (HELP, TYPE, UNIT or free text) and are skipped;
//!   `# EOF` ends the body (anything after it is ignored). Blank lines are skipped.
//! - Label values unescape `\\`, `\"` and `\n`; any other escaped character is kept as written
//!   (backslash included), as Prometheus does.
//! - Values are floats: decimal, exponent, `NaN`, `+Inf`, `-Inf` (any case).
//! - The timestamp, when present, is an integer in milliseconds (format 0.0.4).
//!
//! A malformed line is an [`ExpositionError`] naming its (1-based) line number and the problem.
//! Lines whose name `keep` rejects are not checked past the name.

use std::borrow::Cow;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The metric name, as written (OpenMetrics counters keep their `_total` suffix).
    pub name: &'a str,
    /// The labels in the order written; values are unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The value; may be NaN or ±Inf, as exposed.
    pub value: f64,
    /// The sample's own timestamp (Unix milliseconds), when the line has one.
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The line does not start with a valid metric name.
    #[error("expected a metric name, found {found:?}")]
    MetricName { found: String },
    /// A label name is missing or has a character not allowed in label names.
    #[error("expected a label name, found {found:?}")]
    LabelName { found: String },
    /// A label name is not followed by `=`.
    #[error("label {label:?}: expected '=' after the label name")]
    MissingEquals { label: String },
    /// A label value does not start with `"`.
    #[error("label {label:?}: the value must be a double-quoted string")]
    UnquotedValue { label: String },
    /// The line ends inside a label value.
    #[error("label {label:?}: the value has no closing '\"'")]
    UnterminatedValue { label: String },
    /// A label appears twice in one label set.
    #[error("label {label:?} appears twice")]
    DuplicateLabel { label: String },
    /// The label set is not closed by `}` (or labels are not separated by `,`).
    #[error("expected ',' or '}}' in the label set, found {found:?}")]
    UnclosedLabels { found: String },
    /// No value after the name and labels.
    #[error("metric {name:?}: missing value")]
    MissingValue { name: String },
    /// The value is not a float.
    #[error("metric {name:?}: value {value:?} is not a number")]
    Value { name: String, value: String },
    /// The timestamp is not an integer number of milliseconds.
    #[error("metric {name:?}: timestamp {timestamp:?} is not an integer (milliseconds)")]
    Timestamp { name: String, timestamp: String },
    /// Something follows the timestamp.
    #[error("metric {name:?}: unexpected text after the timestamp: {found:?}")]
    Trailing { name: String, found: String },
}

impl Problem {
    /// A fixed label for the kind of problem (for metrics; never derived from `Debug`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::MetricName { .. } => "metric_name",
            Self::LabelName { .. } => "label_name",
            Self::MissingEquals { .. } => "missing_equals",
            Self::UnquotedValue { .. } => "unquoted_value",
            Self::UnterminatedValue { .. } => "unterminated_value",
            Self::DuplicateLabel { .. } => "duplicate_label",
            Self::UnclosedLabels { .. } => "unclosed_labels",
            Self::MissingValue { .. } => "missing_value",
            Self::Value { .. } => "value",
            Self::Timestamp { .. } => "timestamp",
            Self::Trailing { .. } => "trailing",
        }
    }
}

/// A malformed line: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ExpositionError {
    /// 1-based line number in the body.
    pub line: usize,
    /// What is wrong with it.
    pub problem: Problem,
}

/// Parses `body`, keeping the samples whose metric name `keep` accepts.
///
/// Fails on the first malformed line among the kept ones (see the module docs).
pub fn parse<'a>(
    body: &'a str,
    keep: impl FnMut(&str) -> bool,
) -> Result<Vec<Sample<'a>>, ExpositionError> {
    let mut out = Vec::new();
    for_each(body, keep, |s| out.push(s))?;
    Ok(out)
}

/// Like [`parse`], but hands each kept sample to `on_sample` instead of collecting them.
/// Samples before a malformed line have already been handed over when the error returns.
pub fn for_each<'a>(
    body: &'a str,
    mut keep: impl FnMut(&str) -> bool,
    mut on_sample: impl FnMut(Sample<'a>),
) -> Result<(), ExpositionError> {
    for (i, raw) in body.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = line.trim_start_matches(is_blank);
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            if line.trim_end_matches(is_blank) == "# EOF" {
                break;
            }
            continue;
        }
        let sample = parse_line(line, &mut keep).map_err(|problem| ExpositionError {
            line: i + 1,
            problem,
        })?;
        if let Some(s) = sample {
            on_sample(s);
        }
    }
    Ok(())
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// At most 40 characters of `s` for an error message (cut on a char boundary).
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Skips blanks at the start of `s`.
fn skip_blanks(s: &str) -> &str {
    s.trim_start_matches(is_blank)
}

/// Parses one non-empty, non-comment line; `None` when `keep` rejects its name.
fn parse_line<'a>(
    line: &'a str,
    keep: &mut impl FnMut(&str) -> bool,
) -> Result<Option<Sample<'a>>, Problem> {
    let bytes = line.as_bytes();
    let name_len = match bytes.first() {
        Some(&b) if is_name_start(b) => bytes
            .iter()
            .position(|&b| !is_name_char(b))
            .unwrap_or(bytes.len()),
        _ => {
            return Err(Problem::MetricName {
                found: excerpt(line),
            });
        }
    };
    let (name, mut rest) = line.split_at(name_len);
    if !keep(name) {
        return Ok(None);
    }
    let mut labels = Vec::new();
    rest = skip_blanks(rest);
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }

    // The value, then an optional timestamp, separated by blanks.
    let mut fields = rest.split(is_blank).filter(|f| !f.is_empty());
    let value_text = fields.next().ok_or_else(|| Problem::MissingValue {
        name: name.to_string(),
    })?;
    let value =
        tidal_core::exposition::parse_sample_value(value_text).ok_or_else(|| Problem::Value {
            name: name.to_string(),
            value: excerpt(value_text),
        })?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| Problem::Timestamp {
            name: name.to_string(),
            timestamp: excerpt(t),
        })?),
    };
    if let Some(extra) = fields.next() {
        return Err(Problem::Trailing {
            name: name.to_string(),
            found: excerpt(extra),
        });
    }
    Ok(Some(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    }))
}

/// Parses the label set after `{`; returns the text after the closing `}`.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<&'a str, Problem> {
    loop {
        rest = skip_blanks(rest);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let bytes = rest.as_bytes();
        let len = match bytes.first() {
            Some(&b) if is_label_start(b) => bytes
                .iter()
                .position(|&b| !is_label_char(b))
                .unwrap_or(bytes.len()),
            Some(_) => {
                return Err(Problem::LabelName {
                    found: excerpt(rest),
                });
            }
            None => {
                return Err(Problem::UnclosedLabels {
                    found: String::new(),
                });
            }
        };
        let (label, after) = rest.split_at(len);
        rest = skip_blanks(after)
            .strip_prefix('=')
            .ok_or_else(|| Problem::MissingEquals {
                label: label.to_string(),
            })?;
        rest = skip_blanks(rest)
            .strip_prefix('"')
            .ok_or_else(|| Problem::UnquotedValue {
                label: label.to_string(),
            })?;
        let (value, after) = parse_quoted(rest).ok_or_else(|| Problem::UnterminatedValue {
            label: label.to_string(),
        })?;
        if labels.iter().any(|(n, _)| *n == label) {
            return Err(Problem::DuplicateLabel {
                label: label.to_string(),
            });
        }
        labels.push((label, value));
        rest = skip_blanks(after);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(Problem::UnclosedLabels {
                found: excerpt(rest),
            });
        }
    }
}

/// Reads a label value after its opening quote: the unescaped value and the text after the
/// closing quote. `None` when the line ends first.
fn parse_quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = s.as_bytes();
    // Fast path: no escape before the closing quote.
    let end = bytes.iter().position(|&b| b == b'"' || b == b'\\')?;
    if bytes[end] == b'"' {
        return Some((Cow::Borrowed(&s[..end]), &s[end + 1..]));
    }
    let mut out = String::with_capacity(end + 16);
    out.push_str(&s[..end]);
    let mut chars = s[end..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(out), &s[end + i + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `tidal-agent` serves as text 0.0.4 (shape taken from a real scrape).
    const AGENT: &str = r#"# HELP tidal_agent_build_info Build information of tidal-agent; always 1.
# TYPE tidal_agent_build_info gauge
tidal_agent_build_info{version="0.1.0"} 1
# HELP tidal_agent_container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.
# TYPE tidal_agent_container_cpu_usage_seconds_total counter
tidal_agent_container_cpu_usage_seconds_total{namespace="shop",pod="web-7d9f",container="app",pod_uid="0b6c8a1e-1111-4c2e-9a55-2d1f3e4a5b6c",qos_class="Burstable"} 1234.5678
tidal_agent_container_cpu_usage_seconds_total{namespace="shop",pod="web-7d9f",container="",pod_uid="0b6c8a1e-1111-4c2e-9a55-2d1f3e4a5b6c",qos_class="Burstable"} 1240.25
# HELP tidal_agent_container_memory_working_set_bytes Current working set in bytes (usage - inactive_file).
# TYPE tidal_agent_container_memory_working_set_bytes gauge
tidal_agent_container_memory_working_set_bytes{namespace="shop",pod="web-7d9f",container="app",pod_uid="0b6c8a1e-1111-4c2e-9a55-2d1f3e4a5b6c",qos_class="Burstable"} 5.4525952e7

# HELP tidal_agent_container_cpu_usage_cores CPU usage rate between the last two samples, in cores.
# TYPE tidal_agent_container_cpu_usage_cores gauge
tidal_agent_container_cpu_usage_cores{namespace="shop",pod="web-7d9f",container="app",pod_uid="0b6c8a1e-1111-4c2e-9a55-2d1f3e4a5b6c",qos_class="Burstable"} 0.987
tidal_agent_sampler_success{sampler="cgroup"} 1
node_load1 +Inf
node_load5 -Inf
node_load15 NaN 1700000000000
"#;

    #[test]
    fn parses_real_looking_agent_output() {
        let all = parse(AGENT, |_| true).expect("parses");
        assert_eq!(all.len(), 9);
        let cpu = &all[1];
        assert_eq!(cpu.name, "tidal_agent_container_cpu_usage_seconds_total");
        assert_eq!(cpu.label("namespace"), Some("shop"));
        assert_eq!(cpu.label("container"), Some("app"));
        assert_eq!(cpu.label("missing"), None);
        assert_eq!(cpu.value, 1234.5678);
        assert_eq!(cpu.timestamp_ms, None);
        assert_eq!(all[2].label("container"), Some(""));
        assert_eq!(all[3].value, 54_525_952.0);
        assert!(matches!(all[3].labels[0].1, Cow::Borrowed(_)));
        assert_eq!(all[5].labels, vec![("sampler", Cow::Borrowed("cgroup"))]);
        assert_eq!(all[6].value, f64::INFINITY);
        assert_eq!(all[7].value, f64::NEG_INFINITY);
        assert!(all[8].value.is_nan());
    }

    #[test]
    fn nan_and_timestamps() {
        let all = parse(AGENT, |n| n == "node_load15").expect("parses");
        assert_eq!(all.len(), 1);
        assert!(all[0].value.is_nan());
        assert_eq!(all[0].timestamp_ms, Some(1_700_000_000_000));
        assert!(all[0].labels.is_empty());
        let neg = parse("m -12 -5\n", |_| true).expect("parses");
        assert_eq!((neg[0].value, neg[0].timestamp_ms), (-12.0, Some(-5)));
    }

    #[test]
    fn keep_filters_before_labels_are_parsed() {
        let mut seen = Vec::new();
        let body = "wanted{a=\"1\"} 1\nunwanted{this is not a label set 2\nwanted 3\n";
        let got = parse(body, |n| {
            seen.push(n.to_string());
            n == "wanted"
        })
        .expect("the malformed line is not kept, so not checked");
        assert_eq!(got.len(), 2);
        assert_eq!(seen, ["wanted", "unwanted", "wanted"]);
    }

    #[test]
    fn label_value_escapes() {
        let body = r#"m{path="C:\\dir\\x",msg="say \"hi\"\nbye",odd="a\tb",utf="héllo ✓"} 1"#;
        let s = &parse(body, |_| true).expect("parses")[0];
        assert_eq!(s.label("path"), Some(r"C:\dir\x"));
        assert_eq!(s.label("msg"), Some("say \"hi\"\nbye"));
        // Unknown escapes are kept as written, as Prometheus does.
        assert_eq!(s.label("odd"), Some(r"a\tb"));
        assert_eq!(s.label("utf"), Some("héllo ✓"));
        assert!(matches!(s.labels[3].1, Cow::Borrowed(_)));
        assert!(matches!(s.labels[0].1, Cow::Owned(_)));
    }

    #[test]
    fn exponents_blanks_trailing_commas_and_crlf() {
        let body =
            "a 1e3\r\n\r\n  b{x=\"1\",} 2.5E-3\r\nc { x = \"1\" , y=\"2\" }\t-7e+2\t17\r\nd{} .5\n";
        let all = parse(body, |_| true).expect("parses");
        let vals: Vec<f64> = all.iter().map(|s| s.value).collect();
        assert_eq!(vals, [1000.0, 0.0025, -700.0, 0.5]);
        assert_eq!(all[2].label("y"), Some("2"));
        assert_eq!(all[2].timestamp_ms, Some(17));
        assert!(all[3].labels.is_empty());
    }

    #[test]
    fn openmetrics_comments_and_eof() {
        let body = "# TYPE c counter\n# UNIT c seconds\n# HELP c Help.\nc_total 3\nc_created 1.7e9\n# EOF\nafter the end is ignored\n";
        let all = parse(body, |_| true).expect("parses");
        let names: Vec<&str> = all.iter().map(|s| s.name).collect();
        assert_eq!(names, ["c_total", "c_created"]);
        assert!(parse("", |_| true).expect("empty").is_empty());
    }

    fn err(body: &str) -> ExpositionError {
        parse(body, |_| true).expect_err("must fail")
    }

    #[test]
    fn garbage_value_names_the_line() {
        let e = err("ok 1\n# comment\nbad{a=\"b\"} abc\n");
        assert_eq!(e.line, 3);
        assert_eq!(
            e.problem,
            Problem::Value {
                name: "bad".into(),
                value: "abc".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "line 3: metric \"bad\": value \"abc\" is not a number"
        );
        assert_eq!(e.problem.label(), "value");
    }

    #[test]
    fn malformed_lines() {
        let cases: &[(&str, &str)] = &[
            ("m{a=\"1\" 1", "unclosed_labels"),
            ("m{a=\"1\"", "unclosed_labels"),
            ("m{a=\"1\",", "unclosed_labels"),
            ("m{a=\"1\" b=\"2\"} 1", "unclosed_labels"),
            ("m{a=\"1} 1", "unterminated_value"),
            ("m{a=\"1\\\"} 1", "unterminated_value"),
            ("m{a=1} 1", "unquoted_value"),
            ("m{a} 1", "missing_equals"),
            ("m{1a=\"x\"} 1", "label_name"),
            ("m{a=\"1\",a=\"2\"} 1", "duplicate_label"),
            ("m", "missing_value"),
            ("m{a=\"1\"}", "missing_value"),
            ("m 1 12.5", "timestamp"),
            ("m 1 2 3", "trailing"),
            ("9m 1", "metric_name"),
            ("{a=\"1\"} 1", "metric_name"),
            ("m 0x10", "value"),
            ("m 1,5", "value"),
        ];
        for (line, want) in cases {
            let e = err(&format!("ok 1\n{line}\n"));
            assert_eq!(e.line, 2, "{line}: {e}");
            assert_eq!(e.problem.label(), *want, "{line}: {e}");
        }
    }

    #[test]
    fn missing_closing_brace_message() {
        let e = err("x{job=\"a\",instance=\"b\" 3\n");
        assert_eq!(e.line, 1);
        assert_eq!(
            e.to_string(),
            "line 1: expected ',' or '}' in the label set, found \"3\""
        );
    }

    #[test]
    fn long_garbage_is_cut_in_messages() {
        let e = err(&format!("m {}\n", "x".repeat(500)));
        assert!(e.to_string().len() < 120, "{e}");
    }
}
