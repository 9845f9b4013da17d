//! bench/RESULTS.md, one section per benchmark: the one place that reads it, replaces (or
//! appends) a section and writes it back, keeping every other section byte for byte.
//!
//! A section the benchmarks write sits between markers, with its raw figures on comment lines
//! (so a part not run this time keeps its earlier figures):
//!
//! ```text
//! <!-- scaler:begin (written by scripts/bench-scaler.sh) -->
//! ## Scaler (issue #6)
//! ...
//! <!-- scaler:data {"kind": "reaction", ...} -->
//! <!-- scaler:end -->
//! ```
//!
//! A section without markers (the agent's, the real cgroups') runs from its heading to the
//! next `## ` heading or the next section's begin marker. The file is written atomically (a
//! temporary file in the same directory, then a rename), and not at all when
//! `TIDAL_BENCH_WRITE=0`: then the new text is only printed.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::py;

/// What an absent results file reads as.
pub const EMPTY: &str = "# Benchmark results\n";

/// The results file next to this crate's manifest: `bench/RESULTS.md`.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md")
}

/// `TIDAL_BENCH_WRITE`: unset or `1` writes the results file, `0` only prints.
pub fn write_enabled() -> anyhow::Result<bool> {
    match std::env::var("TIDAL_BENCH_WRITE").as_deref() {
        Err(_) | Ok("1") => Ok(true),
        Ok("0") => Ok(false),
        Ok(other) => anyhow::bail!("TIDAL_BENCH_WRITE must be 0 or 1, got {other}"),
    }
}

/// One section of the results file.
pub struct Section {
    /// The name in its markers (`<!-- name:begin`, `<!-- name:data {...} -->`,
    /// `<!-- name:end -->`); `None` for a section without markers.
    pub name: Option<&'static str>,
    /// Its heading line, e.g. `## Scaler (issue #6)`.
    pub heading: &'static str,
}

/// Byte offsets of the line starts of `doc`.
fn line_starts(doc: &str) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(
        doc.match_indices('\n')
            .map(|(i, _)| i + 1)
            .filter(move |&i| i < doc.len()),
    )
}

/// Whether a line starts a section: a `## ` heading or a `<!-- name:begin` marker (`name`
/// of word characters).
fn starts_section(line: &str) -> bool {
    if line.starts_with("## ") {
        return true;
    }
    let Some(rest) = line.strip_prefix("<!-- ") else {
        return false;
    };
    let word = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    word > 0 && rest[word..].starts_with(":begin")
}

impl Section {
    fn begin(&self) -> Option<String> {
        self.name.map(|n| format!("<!-- {n}:begin"))
    }

    fn end(&self) -> Option<String> {
        self.name.map(|n| format!("<!-- {n}:end -->"))
    }

    /// From the first begin marker to the end of the first end marker after it.
    fn marker_span(&self, doc: &str) -> Option<Range<usize>> {
        let (begin, end) = (self.begin()?, self.end()?);
        let a = doc.find(&begin)?;
        let b = a + doc[a..].find(&end)? + end.len();
        Some(a..b)
    }

    /// From the heading (at the start of a line, a line of its own) to the next section's
    /// start or the end of the file.
    fn heading_span(&self, doc: &str) -> Option<Range<usize>> {
        let heading = format!("{}\n", self.heading);
        let a = line_starts(doc).find(|&i| doc[i..].starts_with(&heading))?;
        let body = a + heading.len();
        let b = line_starts(doc)
            .filter(|&i| i >= body)
            .find(|&i| starts_section(&doc[i..]))
            .unwrap_or(doc.len());
        Some(a..b)
    }

    /// `doc` with this section replaced by `text` (which has no trailing newline): between
    /// the markers when they are there, else in place of a section with the same heading,
    /// else appended after a blank line. The result ends with exactly one newline.
    pub fn replace(&self, doc: &str, text: &str) -> String {
        let new = if let Some(r) = self.marker_span(doc) {
            format!("{}{text}{}", &doc[..r.start], &doc[r.end..])
        } else if let Some(r) = self.heading_span(doc) {
            format!("{}{text}\n\n{}", &doc[..r.start], &doc[r.end..])
        } else {
            format!("{}\n\n{text}\n", doc.trim_end_matches('\n'))
        };
        format!("{}\n", new.trim_end_matches('\n'))
    }

    /// The raw figures kept in the document, in order: every `<!-- name:data {...} -->` line.
    pub fn entries(&self, doc: &str) -> anyhow::Result<Vec<Value>> {
        let Some(name) = self.name else {
            return Ok(Vec::new());
        };
        let prefix = format!("<!-- {name}:data ");
        doc.split('\n')
            .filter_map(|l| {
                let json = l.strip_prefix(&prefix)?.strip_suffix(" -->")?;
                (json.starts_with('{') && json.ends_with('}')).then_some(json)
            })
            .map(|json| py::loads(json).map_err(|e| anyhow::anyhow!("{prefix}...: {e}")))
            .collect()
    }

    /// The comment line that keeps one entry's raw figures.
    pub fn data_line(&self, entry: &Value) -> String {
        format!(
            "<!-- {}:data {} -->",
            self.name.unwrap_or("?"),
            py::dumps(entry)
        )
    }

    /// The section as read: without its marker and data lines.
    pub fn printable(&self, doc: &str) -> Option<String> {
        let text = match self.name {
            Some(name) => {
                let (begin, end) = (format!("<!-- {name}:begin"), format!("<!-- {name}:end -->"));
                let a = line_starts(doc).find(|&i| doc[i..].starts_with(&begin))?;
                let b = line_starts(doc)
                    .filter(|&i| i > a)
                    .find(|&i| doc[i..].starts_with(&end))?;
                &doc[a..b + end.len()]
            }
            None => &doc[self.heading_span(doc)?],
        };
        let comment = self.name.map(|n| format!("<!-- {n}:"));
        let lines: Vec<&str> = text
            .split('\n')
            .filter(|l| comment.as_ref().is_none_or(|c| !l.starts_with(c.as_str())))
            .collect();
        let text = lines.join("\n");
        // A marked section prints as the scripts printed it (a blank line before its data
        // lines stays); one by its heading without the blank lines before the next section.
        Some(match self.name {
            Some(_) => text,
            None => text.trim_end_matches('\n').to_string(),
        })
    }
}

/// A section's entries after a run of some parts (the node's and the peers' sections): the
/// run's figures, each with its `run`, and a failed entry with `reason` for every part in
/// `parts` that has none when the run stopped early, replace the earlier entries of the same
/// kinds; the other kinds keep theirs. `Err` (nothing written) when nothing was measured.
pub fn fold_parts(
    old: Vec<Value>,
    fresh: Vec<Value>,
    run: &Value,
    reason: Option<&str>,
    parts: &[&str],
) -> Result<Vec<Value>, String> {
    let mut fresh: Vec<Value> = fresh
        .into_iter()
        .map(|mut r| {
            r["run"] = run.clone();
            r
        })
        .collect();
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        for kind in parts {
            if !fresh.iter().any(|r| r["kind"] == *kind) {
                fresh.push(serde_json::json!({
                    "kind": kind, "failed": true, "reason": reason, "run": run,
                }));
            }
        }
    }
    if !fresh.iter().any(|r| !py::truthy(&r["failed"])) {
        let reasons: Vec<String> = fresh
            .iter()
            .map(|r| r.get("reason").map(py::str).unwrap_or_default())
            .collect();
        return Err(format!("nothing measured: {}", reasons.join("; ")));
    }
    let kinds: Vec<&Value> = fresh.iter().map(|r| &r["kind"]).collect();
    let mut entries: Vec<Value> = old
        .into_iter()
        .filter(|r| !kinds.contains(&&r["kind"]))
        .collect();
    entries.extend(fresh);
    Ok(entries)
}

/// The results file as this run sees it: read once, updated in memory, and written after
/// each update unless `TIDAL_BENCH_WRITE=0`.
pub struct Target {
    path: PathBuf,
    write: bool,
    doc: String,
}

impl Target {
    /// `path` (or bench/RESULTS.md), written unless `TIDAL_BENCH_WRITE=0`.
    pub fn open(path: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::new(path.unwrap_or_else(default_path), write_enabled()?)
    }

    /// `path`, written after each update when `write`. A missing file reads as [`EMPTY`].
    pub fn new(path: PathBuf, write: bool) -> anyhow::Result<Self> {
        let doc = match std::fs::read_to_string(&path) {
            Ok(doc) => doc,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => EMPTY.to_string(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self { path, write, doc })
    }

    pub fn doc(&self) -> &str {
        &self.doc
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether updates reach the file (`TIDAL_BENCH_WRITE` is not 0).
    pub fn writes(&self) -> bool {
        self.write
    }

    /// Takes `doc` as the new content, and writes it (atomically) unless printing only.
    pub fn update(&mut self, doc: String) -> anyhow::Result<()> {
        if self.write {
            write_atomically(&self.path, &doc)?;
        }
        self.doc = doc;
        Ok(())
    }

    /// Prints `section` as it now reads (without its comment lines) on stdout.
    pub fn print(&self, section: &Section) {
        if let Some(text) = section.printable(&self.doc) {
            println!("{text}");
        }
    }
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`, so a reader
/// (or a run stopped half-way) never sees half a file.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "RESULTS.md".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MARKED: Section = Section {
        name: Some("demo"),
        heading: "## Demo (issue #1)",
    };
    const PLAIN: Section = Section {
        name: None,
        heading: "## Plain",
    };

    #[test]
    fn a_marked_section_is_replaced_between_its_markers_only() {
        let doc = "# Benchmark results\n\n## Before\n\ntext\n\n<!-- demo:begin (x) -->\n## Demo (issue #1)\nold\n<!-- demo:data {\"a\": 1} -->\n<!-- demo:end -->\n\n## After\n\nmore\n";
        let new = MARKED.replace(doc, "<!-- demo:begin (x) -->\nnew\n<!-- demo:end -->");
        assert_eq!(
            new,
            "# Benchmark results\n\n## Before\n\ntext\n\n<!-- demo:begin (x) -->\nnew\n<!-- demo:end -->\n\n## After\n\nmore\n"
        );
        assert_eq!(
            MARKED.entries(doc).expect("data lines"),
            vec![json!({"a": 1})]
        );
        assert_eq!(
            MARKED.printable(doc).as_deref(),
            Some("## Demo (issue #1)\nold")
        );
    }

    #[test]
    fn a_section_by_its_heading_runs_to_the_next_section() {
        let doc = "# R\n\n## Plain\n\nold\n\n<!-- demo:begin -->\n## Demo (issue #1)\n<!-- demo:end -->\n";
        assert_eq!(
            PLAIN.replace(doc, "## Plain\n\nnew"),
            "# R\n\n## Plain\n\nnew\n\n<!-- demo:begin -->\n## Demo (issue #1)\n<!-- demo:end -->\n"
        );
        let doc = "# R\n\n## Plain\n\nold\n\n## Next\n";
        assert_eq!(
            PLAIN.replace(doc, "## Plain\n\nnew"),
            "# R\n\n## Plain\n\nnew\n\n## Next\n"
        );
        // A heading that only starts with this one's text is another section.
        let doc = "# R\n\n## Plainly\n\nkept\n";
        assert_eq!(
            PLAIN.replace(doc, "## Plain\n\nnew"),
            "# R\n\n## Plainly\n\nkept\n\n## Plain\n\nnew\n"
        );
        assert_eq!(
            PLAIN.printable("## Plain\n\nx\n\n\n## B\n").as_deref(),
            Some("## Plain\n\nx")
        );
    }

    #[test]
    fn an_absent_section_is_appended_and_the_file_ends_with_one_newline() {
        assert_eq!(
            MARKED.replace("# R\n\n\n", "<!-- demo:begin -->\n<!-- demo:end -->"),
            "# R\n\n<!-- demo:begin -->\n<!-- demo:end -->\n"
        );
        assert_eq!(MARKED.printable("# R\n"), None);
    }

    #[test]
    fn the_file_is_replaced_atomically_and_not_at_all_when_printing_only() {
        let dir = std::env::temp_dir().join(format!("tidal-bench-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary results file");
        let path = dir.join("RESULTS.md");
        let _ = std::fs::remove_file(&path);
        let mut t = Target::new(path.clone(), true).expect("temporary results file");
        assert_eq!(t.doc(), EMPTY);
        t.update("# R\n\nnew\n".into())
            .expect("temporary results file");
        assert_eq!(
            std::fs::read_to_string(&path).expect("temporary results file"),
            "# R\n\nnew\n"
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("temporary results file")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("RESULTS.md")],
            "no temporary file left"
        );

        let mut t = Target::new(path.clone(), false).expect("temporary results file");
        t.update("# R\n\nprinted only\n".into())
            .expect("temporary results file");
        assert_eq!(t.doc(), "# R\n\nprinted only\n");
        assert_eq!(
            std::fs::read_to_string(&path).expect("temporary results file"),
            "# R\n\nnew\n"
        );
        std::fs::remove_dir_all(&dir).expect("temporary results file");
    }
}
