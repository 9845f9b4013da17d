//! No import circles between the module files of a workspace crate (issue #13).
//!
//! **The rule.** For each crate of the workspace (every member's `src/lib.rs`, `src/main.rs`
//! and `src/bin/*.rs`), every module file imports the files that define what it names, and
//! those imports must not form a cycle. Precisely:
//!
//! - A *module file* is a file the crate's module tree loads (`mod x;`, with `#[path]`); an
//!   inline `mod x { … }` (a `mod tests`) belongs to its file.
//! - An *import* is a `use` path or a path in code that starts at `crate`, `super` or `self`,
//!   or at a name a `use` or a `mod` brought into scope (`target::parse_selector`, after `use
//!   crate::controller::target`). It is resolved the way the compiler does, through `pub use`
//!   re-exports (and globs), to the file that *defines* the item: `use super::ResourceBounds`
//!   in `api/status.rs` imports `api/bounds.rs`, not `api/mod.rs`, which only re-exports it.
//!   Naming a module alone is not an import of its file (a glob, `use a::*`, is); a name the
//!   scan cannot find in the module its path reached (an item a derive generates, such as
//!   the CRD's `ScalingPolicy`) is taken as that module's file.
//! - Edges between a file and its own ancestors or descendants are not counted: a parent's
//!   `mod child;` and `pub use child::Item;`, and a child's `use super::…`, are how Rust
//!   modules are built, not circles. Edges between any other two files (siblings, cousins,
//!   through a re-export or not) are counted, and any cycle among them fails the test, which
//!   prints it as files with the line and path of each import. An intentional cycle goes in
//!   [`ALLOWED`] with its reason.
//!
//! **Limits of the scan.** It is a small lexer (comments, strings, raw strings, chars and
//! lifetimes skipped), not a compiler: `#[cfg]` is ignored (every alternative counts), a `use`
//! inside a function counts for its whole module, items made by `macro_rules!` or a derive are
//! not seen (see above), `$crate::` paths inside `macro_rules!` are skipped, and paths to
//! other crates are not followed (the check is per crate; the crates' own dependency graph is
//! Cargo's and has no cycle). As a guard, every `.rs` file under a crate's `src/` must be
//! reached from a root, so a module the scan missed fails the test instead of going unseen.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Import edges left out of the cycle check, as (importing file, imported file, reason),
/// paths from the workspace root. An entry no import uses fails the test.
const ALLOWED: &[(&str, &str, &str)] = &[];

// ----- lexer ---------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: u32,
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The tokens of a Rust source file that matter here: identifiers, strings (for `#[path]`),
/// `::` and single punctuation. Comments, literals other than strings, and lifetimes are
/// dropped.
fn lex(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let n = c.len();
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut i = 0;
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < n {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < n && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < n {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = string(&c, i + 1, &mut line, &mut out);
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{1F600}', '\'') or a lifetime/label ('a).
            if at(i + 1) == '\\' {
                i += 2;
                while i < n && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while i < n && is_ident_continue(c[i]) {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() {
            while i < n && (is_ident_continue(c[i]) || (c[i] == '.' && at(i + 1).is_ascii_digit()))
            {
                i += 1;
            }
        } else if is_ident_start(ch) {
            let start = i;
            while i < n && is_ident_continue(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let prefix_of_literal = matches!(word.as_str(), "r" | "br" | "cr");
            if prefix_of_literal
                && (at(i) == '"' || (at(i) == '#' && (at(i + 1) == '#' || at(i + 1) == '"')))
            {
                // A raw string: r"…", r#"…"#, br##"…"##.
                let mut hashes = 0;
                while at(i) == '#' {
                    hashes += 1;
                    i += 1;
                }
                i += 1; // the opening quote
                let start_line = line;
                let body_start = i;
                loop {
                    if i >= n {
                        break;
                    }
                    if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                        break;
                    }
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                let s: String = c[body_start..i.min(n)].iter().collect();
                i += 1 + hashes;
                out.push(Token {
                    tok: Tok::Str(s),
                    line: start_line,
                });
            } else if word == "r" && at(i) == '#' && is_ident_start(at(i + 1)) {
                // A raw identifier: r#type.
                i += 1;
                let s = i;
                while i < n && is_ident_continue(c[i]) {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(c[s..i].iter().collect()),
                    line,
                });
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = string(&c, i + 1, &mut line, &mut out);
            } else if word == "b" && at(i) == '\'' {
                i += 1;
                while i < n && c[i] != '\'' {
                    if c[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            } else {
                out.push(Token {
                    tok: Tok::Ident(word),
                    line,
                });
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

/// Reads the string literal whose body starts at `i` (after the quote) into a token; returns
/// the index after it.
fn string(c: &[char], mut i: usize, line: &mut u32, out: &mut Vec<Token>) -> usize {
    let start_line = *line;
    let mut s = String::new();
    while i < c.len() && c[i] != '"' {
        if c[i] == '\\' {
            i += 1;
        }
        if let Some(&ch) = c.get(i) {
            if ch == '\n' {
                *line += 1;
            }
            s.push(ch);
        }
        i += 1;
    }
    out.push(Token {
        tok: Tok::Str(s),
        line: start_line,
    });
    i + 1
}

// ----- module tree ---------------------------------------------------------------------------

/// A name brought into a module's scope by `use`: its path, relative to that module.
#[derive(Clone, Debug)]
struct Binding {
    target: Vec<String>,
}

#[derive(Debug, Default)]
struct Module {
    file: usize,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    items: BTreeSet<String>,
    bindings: HashMap<String, Vec<Binding>>,
    globs: Vec<Vec<String>>,
}

/// A path to resolve: a `use` leaf or a path in code, in the scope of `module`.
#[derive(Debug)]
struct Usage {
    module: usize,
    path: Vec<String>,
    glob: bool,
    line: u32,
}

#[derive(Debug)]
struct File {
    /// From the workspace root.
    rel: String,
    /// The file's own (outermost) module.
    module: usize,
}

#[derive(Default)]
struct Crate {
    name: String,
    modules: Vec<Module>,
    files: Vec<File>,
    usages: Vec<(usize, Usage)>,
}

/// Where `mod x;` looks for x's file from a file: its children directory, and, for `#[path]`,
/// the directory the file is in.
struct Dirs {
    children: PathBuf,
    own: PathBuf,
}

impl Crate {
    fn load(name: String, root: &Path, workspace: &Path) -> Result<Self, String> {
        let mut krate = Crate {
            name,
            ..Crate::default()
        };
        krate.modules.push(Module::default());
        let dir = root
            .parent()
            .ok_or("a root without a directory")?
            .to_path_buf();
        krate.scan_file(
            root,
            0,
            &Dirs {
                children: dir.clone(),
                own: dir,
            },
            workspace,
        )?;
        Ok(krate)
    }

    fn add_module(&mut self, parent: usize, name: &str, file: usize) -> usize {
        let id = self.modules.len();
        self.modules.push(Module {
            file,
            parent: Some(parent),
            ..Module::default()
        });
        self.modules[parent].children.insert(name.to_owned(), id);
        id
    }

    fn scan_file(
        &mut self,
        path: &Path,
        module: usize,
        dirs: &Dirs,
        workspace: &Path,
    ) -> Result<(), String> {
        let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let rel = path
            .strip_prefix(workspace)
            .unwrap_or(path)
            .display()
            .to_string();
        let file = self.files.len();
        self.files.push(File { rel, module });
        self.modules[module].file = file;
        let t = lex(&src);
        // Open inline modules: (module, brace depth inside it, its children directory).
        let mut stack: Vec<(usize, i32, PathBuf)> = vec![(module, 0, dirs.children.clone())];
        let mut depth = 0i32;
        let mut i = 0;
        let ident = |i: usize| match t.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(s)) => Some(s.as_str()),
            _ => None,
        };
        let is = |i: usize, tok: Tok| t.get(i).is_some_and(|t| t.tok == tok);
        while i < t.len() {
            let (scope, scope_depth, scope_dir) = stack.last().cloned().ok_or("stack empty")?;
            match &t[i].tok {
                Tok::Punct('{') => {
                    depth += 1;
                    i += 1;
                }
                Tok::Punct('}') => {
                    depth -= 1;
                    if stack.len() > 1 && depth < scope_depth {
                        stack.pop();
                    }
                    i += 1;
                }
                Tok::Ident(w) if w == "use" && !is(i + 1, Tok::Punct('<')) => {
                    i += 1;
                    let mut leaves = Vec::new();
                    parse_use_tree(&t, &mut i, Vec::new(), &mut leaves);
                    while i < t.len() && !is(i, Tok::Punct(';')) {
                        i += 1;
                    }
                    for leaf in leaves {
                        let m = &mut self.modules[scope];
                        if leaf.glob {
                            m.globs.push(leaf.path.clone());
                        } else if let Some(name) = &leaf.bind {
                            m.bindings.entry(name.clone()).or_default().push(Binding {
                                target: leaf.path.clone(),
                            });
                        }
                        self.usages.push((
                            file,
                            Usage {
                                module: scope,
                                path: leaf.path,
                                glob: leaf.glob,
                                line: leaf.line,
                            },
                        ));
                    }
                }
                Tok::Ident(w) if w == "mod" && ident(i + 1).is_some() => {
                    let name = ident(i + 1).unwrap_or_default().to_owned();
                    if is(i + 2, Tok::Punct(';')) {
                        let child = self.add_module(scope, &name, file);
                        let explicit = path_attribute(&t, i);
                        let (child_path, child_dirs) = match explicit {
                            Some(p) => {
                                // `#[path]`: relative to this file's directory (or, inside an
                                // inline module, to that module's directory); the file's own
                                // children live beside it.
                                let base = if stack.len() > 1 {
                                    &scope_dir
                                } else {
                                    &dirs.own
                                };
                                let p = base.join(p);
                                let d = p.parent().unwrap_or(base).to_path_buf();
                                (
                                    p,
                                    Dirs {
                                        children: d.clone(),
                                        own: d,
                                    },
                                )
                            }
                            None => {
                                let flat = scope_dir.join(format!("{name}.rs"));
                                let nested = scope_dir.join(&name).join("mod.rs");
                                if flat.is_file() {
                                    (
                                        flat,
                                        Dirs {
                                            children: scope_dir.join(&name),
                                            own: scope_dir.clone(),
                                        },
                                    )
                                } else {
                                    (
                                        nested,
                                        Dirs {
                                            children: scope_dir.join(&name),
                                            own: scope_dir.join(&name),
                                        },
                                    )
                                }
                            }
                        };
                        self.scan_file(&child_path, child, &child_dirs, workspace)?;
                        i += 3;
                    } else if is(i + 2, Tok::Punct('{')) {
                        let child = self.add_module(scope, &name, file);
                        depth += 1;
                        stack.push((child, depth, scope_dir.join(&name)));
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                Tok::Ident(w) if depth == scope_depth && is_item_keyword(w) => {
                    let mut j = i + 1;
                    if w == "static" && ident(j) == Some("mut") {
                        j += 1;
                    }
                    if w == "macro_rules" && is(j, Tok::Punct('!')) {
                        j += 1;
                    }
                    if let Some(name) = ident(j).filter(|n| *n != "fn" && *n != "_") {
                        self.modules[scope].items.insert(name.to_owned());
                    }
                    i += 1;
                }
                Tok::Ident(first)
                    if is(i + 1, Tok::PathSep)
                        && ident(i + 2).is_some()
                        && !(i > 0
                            && (is(i - 1, Tok::PathSep)
                                || is(i - 1, Tok::Punct('$'))
                                || is(i - 1, Tok::Punct('.')))) =>
                {
                    let line = t[i].line;
                    let mut path = vec![first.clone()];
                    let mut j = i + 1;
                    while is(j, Tok::PathSep) {
                        match ident(j + 1) {
                            Some(s) => {
                                path.push(s.to_owned());
                                j += 2;
                            }
                            None => break,
                        }
                    }
                    self.usages.push((
                        file,
                        Usage {
                            module: scope,
                            path,
                            glob: false,
                            line,
                        },
                    ));
                    i = j;
                }
                _ => i += 1,
            }
        }
        Ok(())
    }
}

fn is_item_keyword(w: &str) -> bool {
    matches!(
        w,
        "struct" | "enum" | "trait" | "type" | "fn" | "const" | "static" | "macro_rules"
    )
}

/// The `#[path = "…"]` among the attributes before the `mod` at `i`, if any.
fn path_attribute(t: &[Token], i: usize) -> Option<String> {
    let mut j = i;
    // Visibility: `pub`, `pub(crate)`, `pub(in a::b)`.
    if j > 0 && t[j - 1].tok == Tok::Punct(')') {
        while j > 0 && t[j - 1].tok != Tok::Punct('(') {
            j -= 1;
        }
        j = j.saturating_sub(1);
    }
    if j > 0 && t[j - 1].tok == Tok::Ident("pub".into()) {
        j -= 1;
    }
    let mut found = None;
    // Attributes, `#[…]`, walking back.
    while j > 0 && t[j - 1].tok == Tok::Punct(']') {
        let end = j - 1;
        let mut k = end;
        let mut nest = 0;
        loop {
            match t[k].tok {
                Tok::Punct(']') => nest += 1,
                Tok::Punct('[') => {
                    nest -= 1;
                    if nest == 0 {
                        break;
                    }
                }
                _ => {}
            }
            if k == 0 {
                return found;
            }
            k -= 1;
        }
        if let (Some(Tok::Ident(a)), Some(Tok::Punct('=')), Some(Tok::Str(p))) = (
            t.get(k + 1).map(|t| &t.tok),
            t.get(k + 2).map(|t| &t.tok),
            t.get(k + 3).map(|t| &t.tok),
        ) && a == "path"
        {
            found = Some(p.clone());
        }
        if k == 0 || t[k - 1].tok != Tok::Punct('#') {
            return found;
        }
        j = k - 1;
    }
    found
}

#[derive(Debug)]
struct UseLeaf {
    path: Vec<String>,
    bind: Option<String>,
    glob: bool,
    line: u32,
}

/// One `use` tree from `t[*i]`: its leaves as full paths (a leading `::` kept as a `::`
/// segment, which nothing resolves).
fn parse_use_tree(t: &[Token], i: &mut usize, mut prefix: Vec<String>, out: &mut Vec<UseLeaf>) {
    if t.get(*i).is_some_and(|t| t.tok == Tok::PathSep) {
        prefix.push("::".into());
        *i += 1;
    }
    let in_braces = !prefix.is_empty();
    loop {
        let Some(tok) = t.get(*i) else { return };
        let line = tok.line;
        match &tok.tok {
            Tok::Punct('*') => {
                *i += 1;
                out.push(UseLeaf {
                    path: prefix,
                    bind: None,
                    glob: true,
                    line,
                });
                return;
            }
            Tok::Punct('{') => {
                *i += 1;
                loop {
                    match t.get(*i).map(|t| &t.tok) {
                        None => return,
                        Some(Tok::Punct('}')) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Punct(',')) => *i += 1,
                        Some(_) => {
                            let before = *i;
                            parse_use_tree(t, i, prefix.clone(), out);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
            }
            Tok::Ident(s) => {
                *i += 1;
                if t.get(*i).is_some_and(|t| t.tok == Tok::PathSep) {
                    prefix.push(s.clone());
                    *i += 1;
                    continue;
                }
                // `self` in braces names the prefix itself.
                let (path, name) = if s == "self" && in_braces {
                    let name = prefix.last().cloned().unwrap_or_default();
                    (prefix, name)
                } else {
                    prefix.push(s.clone());
                    (prefix, s.clone())
                };
                let mut bind = Some(name);
                if matches!(t.get(*i).map(|t| &t.tok), Some(Tok::Ident(a)) if a == "as") {
                    bind = match t.get(*i + 1).map(|t| &t.tok) {
                        Some(Tok::Ident(alias)) if alias != "_" => Some(alias.clone()),
                        _ => None,
                    };
                    *i += 2;
                }
                out.push(UseLeaf {
                    path,
                    bind,
                    glob: false,
                    line,
                });
                return;
            }
            _ => return,
        }
    }
}

// ----- resolution ----------------------------------------------------------------------------

/// One resolution's state: the (module, name) lookups in progress, which a loop of globs or
/// `use`s would repeat, and the lookups made so far, which are capped.
#[derive(Default)]
struct Seen {
    open: std::collections::HashSet<(usize, String)>,
    steps: usize,
}

/// Lookups one path may take; more means the scan loops (the test fails, naming the path).
const MAX_STEPS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Res {
    /// A module itself.
    Module(usize),
    /// An item defined in this module (or one the scan cannot see there).
    Item(usize),
    /// Not in this crate (another crate, the prelude, a generic parameter, a local type).
    Elsewhere,
}

impl Crate {
    /// `segs` from module `m`. `first` says whether `segs[0]` is looked up in scope (the
    /// start of a path) rather than as a member of `m`.
    fn resolve(&self, m: usize, segs: &[String], first: bool, seen: &mut Seen) -> Option<Res> {
        if seen.steps > MAX_STEPS {
            return None;
        }
        let Some((s, rest)) = segs.split_first() else {
            return Some(Res::Module(m));
        };
        match s.as_str() {
            "crate" if first => return self.resolve(0, rest, false, seen),
            "self" if first => return self.resolve(m, rest, false, seen),
            "super" => {
                let p = self.modules[m].parent?;
                return self.resolve(p, rest, false, seen);
            }
            "::" => return Some(Res::Elsewhere),
            _ => {}
        }
        match self.member(m, s, rest, seen) {
            Some(r) => Some(r),
            // The start of a path not in scope: another crate or the prelude.
            None if first => Some(Res::Elsewhere),
            // A member the scan does not see (a derive's output, an enum variant).
            None => Some(Res::Item(m)),
        }
    }

    /// Name `s` (followed by `rest`) as a member of module `m`. A lookup of `s` in `m` while
    /// one is in progress (a loop of globs or `use`s) finds nothing.
    fn member(&self, m: usize, s: &str, rest: &[String], seen: &mut Seen) -> Option<Res> {
        seen.steps += 1;
        let key = (m, s.to_owned());
        if seen.steps > MAX_STEPS || !seen.open.insert(key.clone()) {
            return None;
        }
        let found = self.member_uncut(m, s, rest, seen);
        seen.open.remove(&key);
        found
    }

    fn member_uncut(&self, m: usize, s: &str, rest: &[String], seen: &mut Seen) -> Option<Res> {
        let module = &self.modules[m];
        if !rest.is_empty()
            && let Some(&c) = module.children.get(s)
        {
            return self.resolve(c, rest, false, seen);
        }
        if let Some(bindings) = module.bindings.get(s) {
            for b in bindings {
                let mut path = b.target.clone();
                path.extend(rest.iter().cloned());
                if let Some(r) = self.resolve(m, &path, true, seen) {
                    return Some(r);
                }
            }
        }
        if module.items.contains(s) {
            return Some(Res::Item(m));
        }
        if let Some(&c) = module.children.get(s) {
            return self.resolve(c, rest, false, seen);
        }
        for g in &module.globs {
            if let Some(Res::Module(gm)) = self.resolve(m, g, true, seen)
                && gm != m
                && let Some(r) = self.member(gm, s, rest, seen)
            {
                return Some(r);
            }
        }
        None
    }

    /// The file a usage imports, if any.
    fn target_file(&self, u: &Usage) -> Option<usize> {
        let mut seen = Seen::default();
        let res = self.resolve(u.module, &u.path, true, &mut seen);
        assert!(
            seen.steps <= MAX_STEPS,
            "resolving {} (line {}) does not end",
            u.path.join("::"),
            u.line
        );
        match res? {
            Res::Item(m) => Some(self.modules[m].file),
            Res::Module(m) if u.glob => Some(self.modules[m].file),
            Res::Module(_) | Res::Elsewhere => None,
        }
    }

    /// Whether one file's module is an ancestor of the other's (or the same).
    fn related(&self, a: usize, b: usize) -> bool {
        let ancestor = |up: usize, down: usize| {
            let mut m = Some(self.files[down].module);
            while let Some(x) = m {
                if x == self.files[up].module {
                    return true;
                }
                m = self.modules[x].parent;
            }
            false
        };
        ancestor(a, b) || ancestor(b, a)
    }
}

/// One import edge: where it is written.
#[derive(Clone, Debug)]
struct Edge {
    line: u32,
    path: String,
}

/// The crate's import graph between unrelated files: (from, to) → the first import.
fn edges(krate: &Crate) -> BTreeMap<(usize, usize), Edge> {
    let mut out = BTreeMap::new();
    for (file, u) in &krate.usages {
        let Some(to) = krate.target_file(u) else {
            continue;
        };
        if krate.related(*file, to) {
            continue;
        }
        out.entry((*file, to)).or_insert_with(|| Edge {
            line: u.line,
            path: u.path.join("::"),
        });
    }
    out
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(n: usize, adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        for &w in &s.adj[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort_unstable();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

/// A shortest cycle through `start` inside `comp`.
fn shortest_cycle(start: usize, comp: &[usize], adj: &[Vec<usize>]) -> Vec<usize> {
    let inside: BTreeSet<usize> = comp.iter().copied().collect();
    let mut prev: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &adj[v] {
            if !inside.contains(&w) {
                continue;
            }
            if w == start {
                let mut path = vec![v];
                let mut x = v;
                while x != start {
                    x = prev[&x];
                    path.push(x);
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}

// ----- the workspace -------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core/ has a parent")
        .to_path_buf()
}

/// `members = [...]` of the workspace's Cargo.toml.
fn members(root: &Path) -> Vec<String> {
    let toml = std::fs::read_to_string(root.join("Cargo.toml")).expect("reading Cargo.toml");
    let start = toml.find("members").expect("a members list");
    let list = &toml[start..];
    let open = list.find('[').expect("members = [");
    let close = list.find(']').expect("members = [...]");
    list[open + 1..close]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every crate of the workspace, loaded; every `.rs` file under a `src/` must be in one.
fn crates(root: &Path) -> Vec<Crate> {
    let mut out = Vec::new();
    let mut unreached = Vec::new();
    for member in members(root) {
        let src = root.join(&member).join("src");
        let mut roots = Vec::new();
        for r in ["lib.rs", "main.rs"] {
            if src.join(r).is_file() {
                roots.push(src.join(r));
            }
        }
        let mut bins = Vec::new();
        if let Ok(entries) = std::fs::read_dir(src.join("bin")) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "rs") {
                    bins.push(p);
                } else if p.join("main.rs").is_file() {
                    bins.push(p.join("main.rs"));
                }
            }
        }
        bins.sort();
        roots.extend(bins);
        let mut seen = BTreeSet::new();
        for r in roots {
            let name = r.strip_prefix(root).unwrap_or(&r).display().to_string();
            let krate = Crate::load(name, &r, root).unwrap_or_else(|e| panic!("{e}"));
            seen.extend(krate.files.iter().map(|f| f.rel.clone()));
            out.push(krate);
        }
        let mut all = Vec::new();
        rust_files(&src, &mut all);
        for f in all {
            let rel = f.strip_prefix(root).unwrap_or(&f).display().to_string();
            if !seen.contains(&rel) {
                unreached.push(rel);
            }
        }
    }
    assert!(
        unreached.is_empty(),
        "files under src/ that no `mod` reaches (the scan would not see their imports; \
         teach it the declaration, or remove the file): {unreached:?}"
    );
    out
}

#[test]
fn no_import_cycles_between_module_files() {
    let root = workspace_root();
    let crates = crates(&root);
    assert!(
        crates.iter().any(|c| c.files.len() > 10),
        "the scan found almost no module files: {:?}",
        crates.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    let mut report = String::new();
    let mut allowed_used = vec![false; ALLOWED.len()];
    let mut total_edges = 0;
    for krate in &crates {
        let edges = edges(krate);
        let mut adj = vec![Vec::new(); krate.files.len()];
        for &(from, to) in edges.keys() {
            let (f, t) = (&krate.files[from].rel, &krate.files[to].rel);
            if let Some(k) = ALLOWED.iter().position(|(a, b, _)| a == f && b == t) {
                allowed_used[k] = true;
                continue;
            }
            adj[from].push(to);
            total_edges += 1;
        }
        for comp in cycles(krate.files.len(), &adj) {
            let cycle = shortest_cycle(comp[0], &comp, &adj);
            let _ = writeln!(
                report,
                "{}: {} files import each other in a circle ({}); one circle:",
                krate.name,
                comp.len(),
                comp.iter()
                    .map(|&f| krate.files[f].rel.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for (k, &from) in cycle.iter().enumerate() {
                let to = cycle[(k + 1) % cycle.len()];
                let e = &edges[&(from, to)];
                let _ = writeln!(
                    report,
                    "    {}:{} imports {} ({}) ->",
                    krate.files[from].rel, e.line, krate.files[to].rel, e.path
                );
            }
        }
    }
    for (k, used) in allowed_used.iter().enumerate() {
        if !used {
            let (a, b, _) = ALLOWED[k];
            let _ = writeln!(
                report,
                "ALLOWED lists {a} -> {b}, which no import uses any more"
            );
        }
    }
    assert!(total_edges > 0, "the scan found no import between files");
    assert!(
        report.is_empty(),
        "import circles (see core/tests/import_cycles.rs for the rule):\n{report}"
    );
}

#[test]
fn the_scan_reads_uses_paths_and_modules() {
    let t = lex(r##"
        // use crate::commented::Out;
        /* use crate::block::{Out}; */
        use crate::a::{self, b::{C, D as E}, f::*};
        pub(crate) use super::G;
        #[cfg(test)]
        #[path = "x_tests.rs"]
        mod tests;
        fn f() { let s = "crate::in_string::X"; let r = r#"crate::raw::Y"#; let c = '{'; }
        fn g<'a>(x: &'a str) -> crate::h::I<'a> { <T as crate::j::K>::k() }
    "##);
    let idents: Vec<&str> = t
        .iter()
        .filter_map(|t| match &t.tok {
            Tok::Ident(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert!(!idents.contains(&"commented") && !idents.contains(&"block"));
    assert!(!idents.contains(&"in_string") && !idents.contains(&"raw"));
    let braces = t.iter().filter(|t| t.tok == Tok::Punct('{')).count();
    let closes = t.iter().filter(|t| t.tok == Tok::Punct('}')).count();
    assert_eq!(braces, closes, "the char literal '{{' is not a brace");
    let use_at = t
        .iter()
        .position(|t| t.tok == Tok::Ident("use".into()))
        .expect("a use");
    let mut i = use_at + 1;
    let mut leaves = Vec::new();
    parse_use_tree(&t, &mut i, Vec::new(), &mut leaves);
    let got: Vec<(String, Option<String>, bool)> = leaves
        .iter()
        .map(|l| (l.path.join("::"), l.bind.clone(), l.glob))
        .collect();
    assert_eq!(
        got,
        vec![
            ("crate::a".into(), Some("a".into()), false),
            ("crate::a::b::C".into(), Some("C".into()), false),
            ("crate::a::b::D".into(), Some("E".into()), false),
            ("crate::a::f".into(), None, true),
        ]
    );
    let mod_at = t
        .iter()
        .position(|t| t.tok == Tok::Ident("mod".into()))
        .expect("a mod");
    assert_eq!(path_attribute(&t, mod_at).as_deref(), Some("x_tests.rs"));
}

/// `a` and `b` are siblings that import each other only through their parent's re-exports;
/// `c`'s `use super::*` child test module and its parent are not a circle.
#[test]
fn reexports_are_followed_and_parents_do_not_count() {
    let dir = std::env::temp_dir().join(format!("tidal-import-cycles-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("temp dir");
    let write = |name: &str, text: &str| std::fs::write(src.join(name), text).expect("write");
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod c;\npub use a::A;\npub use b::B;\n",
    );
    write("a.rs", "use crate::B;\npub struct A(B);\n");
    write(
        "b.rs",
        "pub struct B;\nimpl B { fn a() -> super::A { todo!() } }\n",
    );
    write(
        "c.rs",
        "pub fn c() {}\n#[cfg(test)]\nmod tests { use super::*; #[test] fn t() { c() } }\n",
    );
    let krate = Crate::load("t".into(), &src.join("lib.rs"), &dir).expect("loads");
    let edges = edges(&krate);
    let named: BTreeSet<(String, String)> = edges
        .keys()
        .map(|&(f, t)| (krate.files[f].rel.clone(), krate.files[t].rel.clone()))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        named,
        BTreeSet::from([
            ("src/a.rs".to_owned(), "src/b.rs".to_owned()),
            ("src/b.rs".to_owned(), "src/a.rs".to_owned()),
        ])
    );
    let mut adj = vec![Vec::new(); krate.files.len()];
    for &(f, t) in edges.keys() {
        adj[f].push(t);
    }
    assert_eq!(cycles(krate.files.len(), &adj).len(), 1);
}
