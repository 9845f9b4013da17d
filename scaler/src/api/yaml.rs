//! A small block-style YAML writer for JSON values, used for the generated CRD.
//!
//! Why not a YAML library: `kubectl` reads manifests with a YAML 1.1 parser, where a plain
//! `Off`, `on`, `yes` or `n` is a boolean, while YAML 1.2 writers (serde_yaml and its forks)
//! leave those strings unquoted, so `mode: Off` would reach the apiserver as `false`. Here a
//! string stays plain only when it is an identifier-like word that no YAML version reads as
//! anything else; every other string is written as a JSON string, which is valid YAML.

use serde_json::Value;

/// `value` as a block-style YAML document (ending in a newline).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => write_list(items, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn write_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (i, (key, value)) in map.iter().enumerate() {
        // The first key of a map that is a list item sits on the `- ` line.
        if i > 0 || !out.ends_with("- ") {
            push_indent(indent, out);
        }
        out.push_str(&string(key));
        out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_map(m, indent + 2, out);
            }
            // Kubernetes style: a list's dashes line up with its key.
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_list(items, indent, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn write_list(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        push_indent(indent, out);
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => write_map(m, indent + 2, out),
            // Nested lists do not occur in a CRD; JSON flow style is valid YAML.
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn push_indent(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A scalar, or an empty (or nested) collection in JSON flow style.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        // Numbers, booleans, null, `{}`, `[]`: their JSON text is the same YAML value.
        other => other.to_string(),
    }
}

/// A string plain when that is unambiguous, otherwise JSON-quoted.
fn string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

/// Words YAML 1.1 resolves to booleans or null (compared case-insensitively).
const RESERVED: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

fn is_plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ambiguous_words_are_quoted() {
        let v = json!({"mode": "Off", "a": "on", "b": "Yes", "c": "null", "d": "True", "e": "Recommend"});
        let y = to_yaml(&v);
        assert_eq!(
            y,
            "a: \"on\"\nb: \"Yes\"\nc: \"null\"\nd: \"True\"\ne: Recommend\nmode: \"Off\"\n"
        );
    }

    #[test]
    fn numbers_symbols_and_text_are_quoted() {
        for s in [
            "1", "1.5", "0x10", "-x", ".5", "", "a b", "a: b", "#c", "x\ny", "~", "*a", "2Gi",
        ] {
            let y = to_yaml(&json!({ "k": s }));
            let back: Value = serde_norway::from_str(&y).expect("parses");
            assert_eq!(back, json!({ "k": s }), "{y}");
            assert!(y.starts_with("k: \""), "{s:?} was not quoted: {y}");
        }
    }

    #[test]
    fn nested_structures_read_back() {
        let v = json!({
            "apiVersion": "x/v1",
            "list": [{"a": 1, "b": [1, 2], "c": {"d": null}}, "s", 2.5, [], {}],
            "empty": {},
            "nested": {"deep": {"deeper": [true, false]}},
            "$ref-like.key/x": "ok"
        });
        let y = to_yaml(&v);
        let back: Value = serde_norway::from_str(&y).expect("parses");
        assert_eq!(back, v, "{y}");
        assert!(y.contains("list:\n- a: 1\n  b:\n  - 1\n  - 2\n"), "{y}");
    }
}
