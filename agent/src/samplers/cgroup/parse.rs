//! The formats of the cgroup interface files: numbers, flat-keyed files (`cpu.stat`,
//! `memory.stat`), PSI files and `cpu.max`.

use std::path::{Path, PathBuf};

use super::CgroupError;

fn number(path: &Path, s: &str) -> Result<f64, CgroupError> {
    s.trim()
        .parse::<u64>()
        .map(|v| v as f64)
        .map_err(|_| CgroupError::NotANumber {
            path: path.into(),
            value: s.trim().to_string(),
        })
}

/// A flat-keyed file (`key value` per line: `cpu.stat`, `memory.stat`).
///
/// Keys are looked up by scanning the text for lines that start with `<key> `: the sampler
/// wants three or four keys of a file of up to ~60 lines, which is cheaper than splitting and
/// hashing every line. As with a map built from the lines, a repeated key yields its last value.
#[derive(Debug)]
pub struct Flat<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Flat<'a> {
    /// Parses `text` read from `path`.
    pub fn parse(path: &'a Path, text: &'a str) -> Self {
        Self { path, text }
    }

    /// A key that must be there.
    pub fn get(&self, key: &'static str) -> Result<f64, CgroupError> {
        self.opt(key)?.ok_or(CgroupError::MissingKey {
            path: self.path.into(),
            key,
        })
    }

    /// A key that may be absent (but, if present, must be a number).
    pub fn opt(&self, key: &'static str) -> Result<Option<f64>, CgroupError> {
        self.line_value(key)
            .map(|v| number(self.path, v))
            .transpose()
    }

    /// The text after `<key> ` on the last line that starts so.
    fn line_value(&self, key: &str) -> Option<&'a str> {
        self.text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
    }
}

/// `total=` (µs) of the `some` and `full` lines of a PSI file, in seconds.
pub fn parse_pressure(path: &Path, text: &str) -> Result<(Option<f64>, Option<f64>), CgroupError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let which = parts.next();
        let total = parts.find_map(|p| p.strip_prefix("total="));
        let Some(total) = total else { continue };
        let secs = number(path, total)? / 1e6;
        match which {
            Some("some") => some = Some(secs),
            Some("full") => full = Some(secs),
            _ => {}
        }
    }
    Ok((some, full))
}

/// The values of `keys` in a flat-keyed file (`key value` lines), in one pass and without
/// allocating: the same lines [`Flat`] finds (a line starting with `<key> `; a repeated key
/// yields its last value). Line ends are found with a vectorised `memchr`; a line is compared
/// with a key only when their first bytes match.
pub fn scan_flat<'t, const N: usize>(text: &'t str, keys: [&str; N]) -> [Option<&'t str>; N] {
    let bytes = text.as_bytes();
    let mut spans = [None; N];
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    for end in ends {
        let line = &bytes[start..end];
        if let Some(first) = line.first() {
            for (k, span) in keys.iter().zip(spans.iter_mut()) {
                let k = k.as_bytes();
                if k.first() == Some(first)
                    && line.len() > k.len()
                    && line[k.len()] == b' '
                    && line.starts_with(k)
                {
                    *span = Some((start + k.len() + 1, end));
                    break;
                }
            }
        }
        start = end + 1;
    }
    // Both ends of a span are at ASCII bytes (a space, a newline or the end): valid slices.
    spans.map(|s| s.and_then(|(a, b)| text.get(a..b)))
}

/// A value of a flat-keyed file that must be there.
pub(super) fn flat_get(
    v: Option<&str>,
    key: &'static str,
    path: impl Fn() -> PathBuf,
) -> Result<f64, CgroupError> {
    let v = v.ok_or_else(|| CgroupError::MissingKey { path: path(), key })?;
    num(v, path)
}

/// A value of a flat-keyed file that may be absent.
pub(super) fn flat_opt(
    v: Option<&str>,
    path: impl Fn() -> PathBuf,
) -> Result<Option<f64>, CgroupError> {
    v.map(|v| num(v, path)).transpose()
}

/// [`number`], with the path built only for an error.
pub(super) fn num(s: &str, path: impl Fn() -> PathBuf) -> Result<f64, CgroupError> {
    match s.trim().parse::<u64>() {
        Ok(v) => Ok(v as f64),
        Err(_) => Err(CgroupError::NotANumber {
            path: path(),
            value: s.trim().to_string(),
        }),
    }
}

/// `cpu.max`: `max <period>` (no limit) or `<quota> <period>`.
pub fn parse_cpu_max(path: &Path, text: &str) -> Result<Option<f64>, CgroupError> {
    let mut it = text.split_whitespace();
    let (Some(q), Some(p)) = (it.next(), it.next()) else {
        return Err(CgroupError::NotANumber {
            path: path.into(),
            value: text.trim().into(),
        });
    };
    if q == "max" {
        return Ok(None);
    }
    let (q, p) = (number(path, q)?, number(path, p)?);
    Ok((p > 0.0).then_some(q / p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_flat_finds_what_flat_finds() {
        let keys = ["anon", "file", "inactive_file", "usage_usec"];
        for text in [
            "",
            "anon 1",
            "anon 1\nfile 2\ninactive_file 3\n",
            "file_mapped 9\nfile 2\nanon_thp 7\nanon 1\n",
            "anon 1\nanon 5\n",
            "xanon 1\n anon 2\nanon\t3\nanon  4\n",
            "usage_usec 10\r\nanon x\r\n",
            "inactive_file\nfile \n",
            "\n\nanon 8",
        ] {
            let flat = Flat::parse(Path::new("f"), text);
            let found = scan_flat(text, keys);
            for (k, v) in keys.iter().zip(found) {
                assert_eq!(
                    v.map(str::trim),
                    flat.line_value(k).map(str::trim),
                    "{k} in {text:?}"
                );
            }
        }
    }

    #[test]
    fn flat_and_pressure_parsing_rejects_garbage() {
        let p = Path::new("cpu.stat");
        let f = Flat::parse(p, "usage_usec 42\nnr_periods x\n");
        assert_eq!(f.get("usage_usec").ok(), Some(42.0));
        assert_eq!(
            f.get("nr_periods").map_err(|e| e.reason()),
            Err("not_a_number")
        );
        assert_eq!(f.get("absent").map_err(|e| e.reason()), Err("missing_key"));
        assert_eq!(f.opt("absent").ok(), Some(None));
        let (some, full) = parse_pressure(
            p,
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=250\n",
        )
        .expect("valid");
        assert_eq!((some, full), (Some(1.5), Some(0.00025)));
        assert!(parse_pressure(p, "some total=-1\n").is_err());
        assert_eq!(parse_cpu_max(p, "max 100000\n").ok(), Some(None));
        assert_eq!(parse_cpu_max(p, "50000 100000\n").ok(), Some(Some(0.5)));
        assert!(parse_cpu_max(p, "garbage").is_err());
    }
}
