//! The figures in bench/RESULTS.md were first written by Python formatters; these helpers
//! write them the same way, byte for byte, so a section rewritten here reads exactly as the
//! one it replaces:
//!
//! - [`loads`] and [`dumps`]: JSON as `json.loads` reads it (integers stay integers, every
//!   float correctly rounded) and as `json.dumps(value, sort_keys=True)` writes it (`", "` and
//!   `": "`, keys sorted, non-ASCII escaped, floats as `repr` writes them). The raw figures
//!   kept in a section's `<!-- name:data {...} -->` lines go through both on every rewrite.
//! - [`fixed`], [`g`], [`thousands`], [`str`]: `f"{v:.2f}"`, `f"{v:g}"`, `f"{n:,}"` and
//!   `f"{v}"` (Python's `str`).
//! - [`num`], [`truthy`], [`get_or`] and [`max`]: what the formatters' expressions do with a
//!   missing key, `None`, `x or 0` and `max(a, b)`.

use serde_json::{Map, Number, Value};

/// Parses JSON as Python's `json.loads` does: a number with a fraction or an exponent is a
/// float (correctly rounded, which `serde_json` without its `float_roundtrip` feature does not
/// promise), an integer stays an integer. `NaN`, `Infinity` and `-Infinity`, which
/// `json.dumps` writes for such floats, are read as `null` (no driver writes them: its JSON
/// comes from `serde_json`, which writes `null`).
pub fn loads(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.i)
    }

    fn ws(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > 512 {
            return Err(self.err("nested too deeply"));
        }
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut map = Map::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Value::Object(map));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a key"));
                    }
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return Err(self.err("expected ':'"));
                    }
                    self.ws();
                    let v = self.value(depth + 1)?;
                    map.insert(k, v);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("}") {
                        return Ok(Value::Object(map));
                    }
                    return Err(self.err("expected ',' or '}'"));
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Value::Array(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(Value::Array(items));
                    }
                    return Err(self.err("expected ',' or ']'"));
                }
            }
            Some(b'"') => self.string().map(Value::String),
            _ if self.eat("true") => Ok(Value::Bool(true)),
            _ if self.eat("false") => Ok(Value::Bool(false)),
            _ if self.eat("null") || self.eat("NaN") || self.eat("Infinity") => Ok(Value::Null),
            _ if self.eat("-Infinity") => Ok(Value::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => self.number(),
            _ => Err(self.err("expected a value")),
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.i;
        let mut float = false;
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
        if !float {
            if let Ok(n) = text.parse::<u64>() {
                return Ok(Value::Number(n.into()));
            }
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Value::Number(n.into()));
            }
        }
        let f: f64 = text
            .parse()
            .map_err(|_| self.err(&format!("bad number {text:?}")))?;
        Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // the opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(self.err("unterminated escape"));
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

/// `json.dumps(v, sort_keys=True)`.
pub fn dumps(v: &Value) -> String {
    let mut out = String::new();
    dump(v, &mut out);
    out
}

fn dump(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_repr(n)),
        Value::String(s) => quote(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                quote(k, out);
                out.push_str(": ");
                dump(&map[k], out);
            }
            out.push('}');
        }
    }
}

/// A JSON string with `ensure_ascii`: everything outside ' '..='~' escaped.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

fn number_repr(n: &Number) -> String {
    match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(u), _, _) if !n.is_f64() => u.to_string(),
        (_, Some(i), _) if !n.is_f64() => i.to_string(),
        (_, _, Some(f)) => repr(f),
        _ => n.to_string(),
    }
}

/// Python's `repr` of a float: the shortest digits that read back as the same float, fixed
/// notation for exponents -4 to 15 (always with a fraction: `1.0`), otherwise `1e-05`,
/// `1.5e+16`. `json.dumps` writes the non-finite ones as `NaN` and `Infinity`.
pub fn repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-5.7310522299999995e0", "1e-7".
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let (digits, exp) = half_even(f, digits, exp);
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let point = exp as usize + 1;
    if digits.len() <= point {
        format!("{sign}{digits}{}.0", "0".repeat(point - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

/// When the float lies exactly half-way between the two shortest candidates (e.g.
/// 683541452379570.25 between `.2` and `.3`), Python's `repr` takes the one with the even last
/// digit, where `{:e}` may take the other.
fn half_even(f: f64, digits: String, exp: i32) -> (String, i32) {
    let n = digits.len();
    // Cheap first: one more digit, rounded; a tie shows a 5 there.
    let probe = format!("{:.*e}", n, f.abs());
    if probe.split_once('e').and_then(|(m, _)| m.bytes().last()) != Some(b'5') {
        return (digits, exp);
    }
    // The exact value: every float has a finite decimal expansion (at most 767 digits).
    let exact = format!("{:.800e}", f.abs());
    let Some((m, x)) = exact.split_once('e') else {
        return (digits, exp);
    };
    let m: String = m.chars().filter(|c| *c != '.').collect();
    let tie = x.parse::<i32>().ok() == Some(exp)
        && m.as_bytes().get(n) == Some(&b'5')
        && m[n + 1..].bytes().all(|b| b == b'0');
    if !tie {
        return (digits, exp);
    }
    let down = m[..n].to_string();
    let down_even = down
        .bytes()
        .last()
        .is_some_and(|b| (b - b'0').is_multiple_of(2));
    let pick = if down_even {
        down
    } else {
        // The candidate above the exact value, with its carry ("...19" + 1 = "...20").
        let mut up = down.into_bytes();
        let mut i = up.len();
        loop {
            if i == 0 {
                return (digits, exp); // 99..9 + 1: a new power of ten, keep `{:e}`'s answer
            }
            i -= 1;
            if up[i] == b'9' {
                up[i] = b'0';
            } else {
                up[i] += 1;
                break;
            }
        }
        String::from_utf8(up).unwrap_or_default()
    };
    let sign = if f < 0.0 { "-" } else { "" };
    let back = format!("{sign}{}.{}e{exp}", &pick[..1], &pick[1..]);
    if back.parse::<f64>().ok() != Some(f) {
        return (digits, exp);
    }
    let pick = pick.trim_end_matches('0');
    let pick = if pick.is_empty() { "0" } else { pick };
    (pick.to_string(), exp)
}

/// `f"{v:.{digits}f}"`: `nan`, `inf` and `-inf` as Python writes them.
pub fn fixed(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:.digits$}")
    }
}

/// `f"{v:.{digits}f}"` of a JSON value (Python would raise on `None`: `nan` here).
pub fn fixed_of(v: &Value, digits: usize) -> String {
    fixed(num(v).unwrap_or(f64::NAN), digits)
}

/// `f"{v:g}"`: 6 significant digits, trailing zeros dropped, exponent outside -4..6.
pub fn g(v: f64) -> String {
    if !v.is_finite() {
        return fixed(v, 0);
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let e = format!("{v:.5e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..6).contains(&exp) {
        trim(&format!("{v:.*}", (5 - exp) as usize))
    } else {
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{}e{esign}{:02}", trim(mantissa), exp.abs())
    }
}

/// `f"{v:,}"`: an integer with thousands separators (a float as `repr`, grouped likewise).
pub fn thousands(v: &Value) -> String {
    let text = match v {
        Value::Number(n) => number_repr(n),
        other => return str(other),
    };
    if text.contains('e') || text.contains('N') || text.contains('I') {
        return text;
    }
    let (sign, rest) = match text.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", text.as_str()),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, format!(".{f}")),
        None => (rest, String::new()),
    };
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

/// Python's `str(v)` (what `f"{v}"` writes): `None`, `True`, `1.0`, `nan`, the string itself.
pub fn str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && !f.is_finite() => fixed(f, 0),
            _ => number_repr(n),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn py_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        other => str(other),
    }
}

/// A number as a float; `None` for `null`, a missing key or anything else.
pub fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Python's truthiness: `None`, `False`, `0`, `""`, `[]` and `{}` are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `d.get(key, default)`: the default only when the key is missing (a `null` stays `None`).
pub fn get_or<'a>(d: &'a Value, key: &str, default: &'a Value) -> &'a Value {
    d.get(key).unwrap_or(default)
}

/// `max(a, b)` of two floats: `a` unless `b > a` (so a NaN first stays, as in Python).
pub fn max(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}

/// `statistics.median`: the middle value, or the mean of the two middle ones; NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1000.0, "1000.0"),
            (5.731_052_229_999_999_5, "5.7310522299999995"),
            (1e-5, "1e-05"),
            (1.2345e-5, "1.2345e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (123_456.785, "123456.785"),
            (-0.0, "-0.0"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            // Exactly half-way between two shortest candidates: the even one.
            (683_541_452_379_570.2, "683541452379570.2"),
            (209_453_827_530_850.62, "209453827530850.62"),
            (-1_113_178_120_592_002.2, "-1113178120592002.2"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn dumps_sorts_keys_escapes_non_ascii_and_keeps_integers() {
        let v = loads(r#"{"b": [1, 2.0, -3, 1e-07], "a": "→ \"x\"\n", "c": {}, "d": [], "e": null, "f": true}"#)
            .expect("valid JSON");
        assert_eq!(
            dumps(&v),
            r#"{"a": "\u2192 \"x\"\n", "b": [1, 2.0, -3, 1e-07], "c": {}, "d": [], "e": null, "f": true}"#
        );
        assert_eq!(dumps(&json!({"s": "😀"})), r#"{"s": "\ud83d\ude00"}"#);
        assert_eq!(loads(r#""\ud83d\ude00""#).expect("valid JSON"), json!("😀"));
    }

    #[test]
    fn loads_reads_every_float_exactly() {
        // 17 significant digits: two roundings (u64 to f64, then a power of ten) can land one
        // ulp away; the standard library's parser does not.
        for text in [
            "5.7310522299999995",
            "0.056763618956587",
            "2.2250738585072014e-308",
        ] {
            let v = loads(text).expect("valid JSON");
            assert_eq!(v.as_f64(), text.parse::<f64>().ok());
            assert_eq!(dumps(&v), text);
        }
        assert_eq!(loads("NaN").expect("valid JSON"), Value::Null);
        assert!(loads("[1,").is_err());
        assert!(loads("{} x").is_err());
    }

    #[test]
    fn number_formats_match_python() {
        assert_eq!(fixed(0.125, 2), "0.12");
        assert_eq!(fixed(2.675, 2), "2.67");
        assert_eq!(fixed(f64::NAN, 2), "nan");
        assert_eq!(fixed(f64::NEG_INFINITY, 1), "-inf");
        for (f, want) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (1.25, "1.25"),
            (100000.0, "100000"),
            (1_000_000.0, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.234_567_8, "1.23457"),
            (0.0, "0"),
        ] {
            assert_eq!(g(f), want, "{f}");
        }
        assert_eq!(thousands(&json!(5000)), "5,000");
        assert_eq!(thousands(&json!(999)), "999");
        assert_eq!(thousands(&json!(-1_234_567)), "-1,234,567");
        assert_eq!(thousands(&json!(1234.5)), "1,234.5");
        assert_eq!(str(&json!(null)), "None");
        assert_eq!(str(&json!(1.0)), "1.0");
        assert_eq!(str(&json!(5)), "5");
        assert_eq!(str(&json!(["a", 1])), "['a', 1]");
    }

    #[test]
    fn python_semantics() {
        assert!(!truthy(&json!(0.0)));
        assert!(!truthy(&json!({})));
        assert!(truthy(&json!({"a": 1})));
        assert_eq!(get_or(&json!({"a": null}), "a", &json!("?")), &Value::Null);
        assert_eq!(get_or(&json!({}), "a", &json!("?")), &json!("?"));
        assert!(max(f64::NAN, 1.0).is_nan());
        assert_eq!(max(1.0, f64::NAN), 1.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
