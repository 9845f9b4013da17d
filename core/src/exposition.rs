//! Prometheus exposition helpers shared by the agent's and the scaler's `/metrics`: content
//! negotiation, the OpenMetrics → text 0.0.4 rewrite (prometheus-client encodes
//! OpenMetrics only), and the one reader of a sample value's text ([`parse_sample_value`]).

/// OpenMetrics 1.0 content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus text format 0.0.4 content type.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Does the client's Accept header ask for OpenMetrics?
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Turns an OpenMetrics body into text 0.0.4: drops the `# EOF` line and `# UNIT` lines, and
/// names counter families by their `_total` sample name in `# HELP`/`# TYPE` (OpenMetrics
/// names the family without the suffix; 0.0.4 tools such as `promtool check metrics` expect it).
///
/// Only the `#` lines change, so the sample lines between two of them are copied as one block
/// (a scrape is megabytes of sample lines and a few hundred `#` lines).
pub fn to_text_004(openmetrics: &str) -> String {
    // Byte offsets of the lines that start with `#` (found with memchr on `#`, which is
    // faster than searching for "\n#").
    let comment_starts = || {
        openmetrics
            .match_indices('#')
            .map(|(i, _)| i)
            .filter(|&i| i == 0 || openmetrics.as_bytes()[i - 1] == b'\n')
    };
    let line_at = |start: usize| {
        let rest = &openmetrics[start..];
        rest.find('\n').map_or(rest, |n| &rest[..n])
    };
    let counters: std::collections::HashSet<&str> = comment_starts()
        .filter_map(|i| line_at(i).strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    let mut copied = 0;
    for start in comment_starts() {
        out.push_str(&openmetrics[copied..start]);
        let l = line_at(start);
        copied = (start + l.len() + 1).min(openmetrics.len());
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = l.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then_some((p, name, tail))
        });
        match meta {
            Some((p, name, tail)) => {
                out.push_str(p);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
            }
            None => out.push_str(l),
        }
        out.push('\n');
    }
    out.push_str(&openmetrics[copied..]);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A sample value's text, as Prometheus writes it (the exposition, the HTTP API's value
/// strings, the agent's usage document): its spellings of the non-finite values first, then
/// any float Rust's correctly rounded parser reads (`1e3`, `-0.5`, `inf`, ...).
pub fn parse_sample_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}
