//! Each part's section, written by tidal-bench, against what the Python formatters it
//! replaces wrote from the same figures: byte for byte, the whole results file and what was
//! printed. The cases are under tests/fixtures/<part>/<case>/ (`case.json`: the file before,
//! the driver's output, the reason a run stopped, the run's conditions); `after.md`,
//! `stdout.txt` and `exit.txt` next to each are the Python's output, made by
//! tests/oracle/oracle.py (see tests/fixtures/README.md), but where a case says it `differs`
//! by design (they are then tidal-bench's).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tidal_bench::py;
use tidal_bench::results::{EMPTY, Section};
use tidal_bench::run::{Host, Run};

fn fixtures(part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(part)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One case: its directory, its `case.json`, the results file before (`None`: absent).
struct Case {
    name: String,
    dir: PathBuf,
    spec: Value,
    before: Option<String>,
}

impl Case {
    fn all(part: &str) -> Vec<Case> {
        let root = fixtures(part);
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .flatten()
            .filter(|e| e.path().join("case.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(!names.is_empty(), "no cases under {}", root.display());
        names
            .into_iter()
            .map(|name| {
                let dir = root.join(&name);
                let spec = py::loads(&read(&dir.join("case.json"))).expect("case.json");
                let before = spec["before"].as_str().map(|b| read(&root.join(b)));
                Case {
                    name,
                    dir,
                    spec,
                    before,
                }
            })
            .collect()
    }

    /// The results file as the formatter read it.
    fn doc(&self) -> &str {
        self.before.as_deref().unwrap_or(EMPTY)
    }

    /// A file named by `key` in the case, next to it in the part's directory.
    fn file(&self, key: &str) -> Option<PathBuf> {
        self.spec[key]
            .as_str()
            .map(|f| self.dir.parent().expect("part").join(f))
    }

    /// The driver's JSON lines named by `fresh` (none when `null`).
    fn fresh(&self) -> Vec<Value> {
        self.file("fresh")
            .map(|f| {
                read(&f)
                    .lines()
                    .filter(|l| l.trim().starts_with('{'))
                    .map(|l| py::loads(l).expect("driver JSON"))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn reason(&self) -> Option<&str> {
        self.spec["reason"].as_str().filter(|r| !r.is_empty())
    }

    fn run(&self) -> Run {
        let (r, h) = (&self.spec["run"], &self.spec["host"]);
        let s = |v: &Value| v.as_str().map(str::to_string);
        Run {
            date: s(&r["date"]).expect("run.date"),
            command: s(&r["command"]),
            load: [s(&r["load"][0]), s(&r["load"][1])],
            version: s(&r["version"]).expect("run.version"),
            host: Host {
                cpus: h["cpus"].as_u64().expect("host.cpus"),
                kernel: s(&h["kernel"]).expect("host.kernel"),
            },
        }
    }

    /// Checks the new results file (or the refusal) and the printed section against the
    /// Python's.
    fn check(&self, got: anyhow::Result<String>, section: &Section) {
        let exit = self.dir.join("exit.txt");
        let after = match got {
            Err(e) => {
                assert!(
                    exit.is_file(),
                    "{}: refused ({e:#}), the Python was not",
                    self.name
                );
                self.doc().to_string()
            }
            Ok(doc) => {
                assert!(
                    !exit.is_file(),
                    "{}: the Python refused ({}), this did not",
                    self.name,
                    read(&exit)
                );
                doc
            }
        };
        let want = match self.dir.join("after.md") {
            p if p.is_file() => read(&p),
            _ => self.doc().to_string(),
        };
        if after != want {
            let at = after
                .bytes()
                .zip(want.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(after.len().min(want.len()));
            let around = |s: &str| {
                let (mut a, mut b) = (at.saturating_sub(200), (at + 200).min(s.len()));
                while !s.is_char_boundary(a) {
                    a -= 1;
                }
                while !s.is_char_boundary(b) {
                    b += 1;
                }
                s[a..b].to_string()
            };
            panic!(
                "{}: the results file differs from the Python's at byte {at}:\n--- this\n{}\n--- the Python\n{}",
                self.name,
                around(&after),
                around(&want),
            );
        }
        let stdout = self.dir.join("stdout.txt");
        if stdout.is_file() {
            let printed = section
                .printable(&after)
                .map(|t| format!("{t}\n"))
                .unwrap_or_default();
            assert_eq!(printed, read(&stdout), "{}: printed section", self.name);
        }
    }
}

#[test]
fn scaler_section_is_the_pythons() {
    use tidal_bench::scaler::{Kind, SECTION, record};
    for case in Case::all("scaler") {
        let kind = match case.spec["mode"].as_str() {
            Some("reaction") => Kind::Reaction,
            Some("scale") => Kind::Scale,
            other => panic!("{}: mode {other:?}", case.name),
        };
        let got = record(
            case.doc(),
            kind,
            case.fresh(),
            case.reason(),
            case.spec["size"].as_u64(),
            &case.run(),
        );
        case.check(got, &SECTION);
    }
}

/// A section made of parts: `render` it again from its figures, or `record` a run.
fn check_parts(name: &str, part: &tidal_bench::parts::Parts) {
    for case in Case::all(name) {
        let got = match case.spec["mode"].as_str() {
            Some("render") => part.render_again(case.doc()),
            Some("record") => {
                let parts: Vec<&str> = case.spec["parts"]
                    .as_str()
                    .expect("parts")
                    .split(',')
                    .collect();
                part.record(case.doc(), case.fresh(), case.reason(), &parts, &case.run())
            }
            other => panic!("{}: mode {other:?}", case.name),
        };
        case.check(got, &part.section);
    }
}

#[test]
fn node_section_is_the_pythons() {
    check_parts("node", &tidal_bench::node::PART);
}

#[test]
fn peers_section_is_the_pythons() {
    check_parts("peers", &tidal_bench::peers::PART);
}

#[test]
fn kafka_section_is_the_pythons() {
    use tidal_bench::kafka::{Figures, SECTION, record};
    for case in Case::all("kafka") {
        let s = &case.spec;
        let figures = Figures {
            tidal: s["tidal"].clone(),
            peer: s["peer"].clone(),
            agent: s["agent"].clone(),
            agent_seconds: s["agent_seconds"].as_str().expect("agent_seconds").into(),
        };
        let today = s["run"]["today"].as_str().expect("run.today");
        let got = record(case.doc(), &figures, today);
        case.check(got, &SECTION);
    }
}

#[test]
fn agent_section_is_the_pythons() {
    use tidal_bench::agent::{Measured, SECTION, record};
    for case in Case::all("agent") {
        let file = case.file("measured").expect("measured");
        let measured: Measured =
            serde_json::from_value(py::loads(&read(&file)).expect("measured JSON"))
                .expect("the figures of a run");
        case.check(Ok(record(case.doc(), &measured)), &SECTION);
    }
}
