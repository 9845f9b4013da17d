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
//! **Limits of the scan.** Each file is parsed with `syn` (`syn::parse_file`, walked with
//! `syn::visit::Visit`; lines come from `proc-macro2`'s `span-locations`): a syntax tree, not
//! a compiler. `#[cfg]` is ignored (every alternative counts), a `use` inside a function
//! counts for its whole module, items made by `macro_rules!` or a derive are not seen (see
//! above), and paths to other crates are not followed (the check is per crate; the crates'
//! own dependency graph is Cargo's and has no cycle). A macro's input (`format!(…)`, a
//! `macro_rules!` body, an attribute's arguments) is only tokens to `syn`: paths in it are
//! read as `a::b` runs of tokens (`$crate::` paths skipped), so a `use` written inside a macro
//! counts as a path but brings no name into scope. A file `syn` cannot parse fails the test.
//! As a guard, every `.rs` file under a crate's `src/` must be reached from a root, so a
//! module the scan missed fails the test instead of going unseen.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::ext::IdentExt as _;
use syn::visit::{self, Visit};

/// Import edges left out of the cycle check, as (importing file, imported file, reason),
/// paths from the workspace root. An entry no import uses fails the test.
const ALLOWED: &[(&str, &str, &str)] = &[];

// ----- reading a file ------------------------------------------------------------------------

/// A path to resolve: a `use` leaf or a path in code. A leaf's path is in full (a leading `::`
/// kept as a `::` segment, which nothing resolves), with the name it brings into scope (none
/// for a glob or `as _`).
#[derive(Debug, Default)]
struct Import {
    path: Vec<String>,
    bind: Option<String>,
    glob: bool,
    line: usize,
}

/// What one module's source holds; an inline `mod x { … }` has its own.
#[derive(Debug, Default)]
struct Scan {
    /// The names of the items it defines (not those inside functions or `impl`s).
    items: BTreeSet<String>,
    /// Its `use` leaves, those inside functions included.
    uses: Vec<Import>,
    /// Paths of two segments or more in code, types, attributes and macro input.
    paths: Vec<Import>,
    mods: Vec<ModDecl>,
}

#[derive(Debug)]
struct ModDecl {
    name: String,
    /// `#[path = "…"]`.
    path: Option<String>,
    /// The content of an inline `mod x { … }`.
    inline: Option<Scan>,
}

fn name(ident: &syn::Ident) -> String {
    ident.unraw().to_string()
}

/// A module's items: the names they define, and what they use and name (bodies included).
fn scan_items(items: &[syn::Item]) -> Scan {
    let mut scan = Scan::default();
    for item in items {
        let defined = match item {
            syn::Item::Const(i) => Some(&i.ident),
            syn::Item::Enum(i) => Some(&i.ident),
            syn::Item::Fn(i) => Some(&i.sig.ident),
            syn::Item::Macro(i) => i.ident.as_ref(),
            syn::Item::Static(i) => Some(&i.ident),
            syn::Item::Struct(i) => Some(&i.ident),
            syn::Item::Trait(i) => Some(&i.ident),
            syn::Item::TraitAlias(i) => Some(&i.ident),
            syn::Item::Type(i) => Some(&i.ident),
            syn::Item::Union(i) => Some(&i.ident),
            _ => None,
        };
        if let Some(ident) = defined.filter(|i| *i != "_") {
            scan.items.insert(name(ident));
        }
        Collector(&mut scan).visit_item(item);
    }
    scan
}

struct Collector<'s>(&'s mut Scan);

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        for a in &m.attrs {
            self.visit_attribute(a);
        }
        self.0.mods.push(ModDecl {
            name: name(&m.ident),
            path: path_attribute(&m.attrs),
            inline: m.content.as_ref().map(|(_, items)| scan_items(items)),
        });
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let prefix = u.leading_colon.is_some().then(|| vec!["::".to_owned()]);
        use_leaves(&u.tree, prefix.unwrap_or_default(), &mut self.0.uses);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() && p.segments.len() > 1 {
            self.0.paths.push(Import {
                path: p.segments.iter().map(|s| name(&s.ident)).collect(),
                line: p.segments[0].ident.span().start().line,
                ..Import::default()
            });
        }
        visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        visit::visit_macro(self, m);
        token_paths(m.tokens.clone(), &mut self.0.paths);
    }

    fn visit_meta_list(&mut self, m: &'ast syn::MetaList) {
        visit::visit_meta_list(self, m);
        token_paths(m.tokens.clone(), &mut self.0.paths);
    }
}

/// The `a::b…` runs in a macro's tokens that do not follow `::`, `$` (`$crate::…`) or `.`.
fn token_paths(tokens: TokenStream, out: &mut Vec<Import>) {
    let t: Vec<TokenTree> = tokens.into_iter().collect();
    let punct =
        |i: usize, c: char| matches!(t.get(i), Some(TokenTree::Punct(p)) if p.as_char() == c);
    let sep = |i: usize| {
        matches!(t.get(i), Some(TokenTree::Punct(p)) if p.as_char() == ':' && p.spacing() == Spacing::Joint)
            && punct(i + 1, ':')
    };
    let ident = |i: usize| match t.get(i) {
        Some(TokenTree::Ident(x)) => Some(x),
        _ => None,
    };
    let mut i = 0;
    while i < t.len() {
        if let TokenTree::Group(g) = &t[i] {
            token_paths(g.stream(), out);
        } else if let Some(first) = ident(i)
            && sep(i + 1)
            && ident(i + 3).is_some()
            && !(i > 0 && (punct(i - 1, '$') || punct(i - 1, '.') || (i > 1 && sep(i - 2))))
        {
            let mut path = vec![name(first)];
            let mut j = i + 1;
            while sep(j)
                && let Some(s) = ident(j + 2)
            {
                path.push(name(s));
                j += 3;
            }
            let line = first.span().start().line;
            out.push(Import {
                path,
                line,
                ..Import::default()
            });
            i = j;
            continue;
        }
        i += 1;
    }
}

/// The `#[path = "…"]` among a `mod`'s attributes, if any.
fn path_attribute(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// The leaves of the `use` tree `tree` under `prefix`, as full paths.
fn use_leaves(tree: &syn::UseTree, mut prefix: Vec<String>, out: &mut Vec<Import>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(name(&p.ident));
            use_leaves(&p.tree, prefix, out);
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_leaves(t, prefix.clone(), out);
            }
        }
        syn::UseTree::Glob(g) => out.push(Import {
            path: prefix,
            bind: None,
            glob: true,
            line: g.star_token.spans[0].start().line,
        }),
        syn::UseTree::Name(syn::UseName { ident })
        | syn::UseTree::Rename(syn::UseRename { ident, .. }) => {
            // `self` in braces names the prefix itself.
            let own = if ident == "self" && !prefix.is_empty() {
                prefix.last().cloned()
            } else {
                prefix.push(name(ident));
                Some(name(ident))
            };
            let bind = match tree {
                syn::UseTree::Rename(r) => Some(name(&r.rename)).filter(|r| r != "_"),
                _ => own,
            };
            out.push(Import {
                path: prefix,
                bind,
                glob: false,
                line: ident.span().start().line,
            });
        }
    }
}

// ----- module tree ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Module {
    file: usize,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    items: BTreeSet<String>,
    /// The names `use` brought into scope, each with its paths, relative to this module.
    bindings: HashMap<String, Vec<Vec<String>>>,
    globs: Vec<Vec<String>>,
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
    /// (file, the module whose scope it is in, import).
    usages: Vec<(usize, usize, Import)>,
}

impl Crate {
    fn load(name: String, root: &Path, workspace: &Path) -> Result<Self, String> {
        let mut krate = Crate {
            name,
            modules: vec![Module::default()],
            ..Crate::default()
        };
        let dir = root.parent().ok_or("a root without a directory")?;
        krate.load_file(root, 0, dir, workspace)?;
        Ok(krate)
    }

    /// Reads the file of module `m`, whose `mod x;` files are in `dir`.
    fn load_file(
        &mut self,
        path: &Path,
        m: usize,
        dir: &Path,
        workspace: &Path,
    ) -> Result<(), String> {
        let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ast = syn::parse_file(&src)
            .map_err(|e| format!("{}:{}: {e}", path.display(), e.span().start().line))?;
        let rel = path.strip_prefix(workspace).unwrap_or(path);
        let file = self.files.len();
        self.files.push(File {
            rel: rel.display().to_string(),
            module: m,
        });
        self.modules[m].file = file;
        let own = path.parent().unwrap_or(dir);
        self.add(scan_items(&ast.items), file, m, dir, own, workspace)
    }

    /// Adds what module `m`, in `file`, holds. Its `mod x;` files are in `dir`, or with
    /// `#[path]` relative to `own`: the file's directory, or an inline module's `dir`.
    fn add(
        &mut self,
        scan: Scan,
        file: usize,
        m: usize,
        dir: &Path,
        own: &Path,
        workspace: &Path,
    ) -> Result<(), String> {
        let module = &mut self.modules[m];
        module.items = scan.items;
        for leaf in &scan.uses {
            if leaf.glob {
                module.globs.push(leaf.path.clone());
            } else if let Some(bind) = &leaf.bind {
                module
                    .bindings
                    .entry(bind.clone())
                    .or_default()
                    .push(leaf.path.clone());
            }
        }
        let imports = scan.uses.into_iter().chain(scan.paths);
        self.usages.extend(imports.map(|i| (file, m, i)));
        for decl in scan.mods {
            let child = self.modules.len();
            self.modules.push(Module {
                file,
                parent: Some(m),
                ..Module::default()
            });
            self.modules[m].children.insert(decl.name.clone(), child);
            let sub = dir.join(&decl.name);
            match (decl.inline, decl.path) {
                (Some(inner), _) => self.add(inner, file, child, &sub, &sub, workspace)?,
                (None, Some(p)) => {
                    // A `#[path]` file's own children live beside it.
                    let p = own.join(p);
                    let d = p.parent().unwrap_or(own).to_path_buf();
                    self.load_file(&p, child, &d, workspace)?;
                }
                (None, None) => {
                    let flat = dir.join(format!("{}.rs", decl.name));
                    let p = if flat.is_file() {
                        flat
                    } else {
                        sub.join("mod.rs")
                    };
                    self.load_file(&p, child, &sub, workspace)?;
                }
            }
        }
        Ok(())
    }
}

// ----- resolution ----------------------------------------------------------------------------

/// One resolution's state: the (module, name) lookups in progress, which a loop of globs or
/// `use`s would repeat, and the lookups made so far, which are capped.
#[derive(Default)]
struct Seen {
    open: HashSet<(usize, String)>,
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
        if let Some(targets) = module.bindings.get(s) {
            for target in targets {
                let mut path = target.clone();
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

    /// The file an import in the scope of module `m` imports, if any.
    fn target_file(&self, m: usize, u: &Import) -> Option<usize> {
        let mut seen = Seen::default();
        let res = self.resolve(m, &u.path, true, &mut seen);
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
    line: usize,
    path: String,
}

/// The crate's import graph between unrelated files: (from, to) → the first import.
fn edges(krate: &Crate) -> BTreeMap<(usize, usize), Edge> {
    let mut out = BTreeMap::new();
    for (file, m, u) in &krate.usages {
        let Some(to) = krate.target_file(*m, u) else {
            continue;
        };
        if krate.related(*file, to) {
            continue;
        }
        let edge = Edge {
            line: u.line,
            path: u.path.join("::"),
        };
        let first = out.entry((*file, to)).or_insert_with(|| edge.clone());
        if edge.line < first.line {
            *first = edge;
        }
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

/// The circles among the crates' files and the `allowed` entries no import uses, as a report
/// (empty when there is none), and the number of edges checked.
fn check(crates: &[Crate], allowed: &[(&str, &str, &str)]) -> (String, usize) {
    let mut report = String::new();
    let mut allowed_used = vec![false; allowed.len()];
    let mut total_edges = 0;
    for krate in crates {
        let edges = edges(krate);
        let mut adj = vec![Vec::new(); krate.files.len()];
        for &(from, to) in edges.keys() {
            let (f, t) = (&krate.files[from].rel, &krate.files[to].rel);
            if let Some(k) = allowed.iter().position(|(a, b, _)| a == f && b == t) {
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
    for (&(a, b, _), used) in allowed.iter().zip(allowed_used) {
        if !used {
            let _ = writeln!(
                report,
                "ALLOWED lists {a} -> {b}, which no import uses any more"
            );
        }
    }
    (report, total_edges)
}

#[test]
fn no_import_cycles_between_module_files() {
    let crates = crates(&workspace_root());
    assert!(
        crates.iter().any(|c| c.files.len() > 10),
        "the scan found almost no module files: {:?}",
        crates.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    let (report, total_edges) = check(&crates, ALLOWED);
    assert!(total_edges > 0, "the scan found no import between files");
    assert!(
        report.is_empty(),
        "import circles (see core/tests/import_cycles.rs for the rule):\n{report}"
    );
}

/// A fresh directory under the system's temp dir holding `files` (paths relative to it).
fn temp_tree(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tidal-import-cycles-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("temp dir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

#[test]
fn the_scan_reads_uses_paths_and_modules() {
    let file = syn::parse_file(
        r##"
        // use crate::commented::Out;
        /* use crate::block::{Out}; */
        use crate::a::{self, b::{C, D as E}, f::*};
        pub(crate) use super::G;
        #[cfg(test)]
        #[path = "x_tests.rs"]
        mod tests;
        fn f() { let s = "crate::in_string::X"; let r = r#"crate::raw::Y"#; let c = '{'; }
        fn g<'a>(x: &'a str) -> crate::h::I<'a> { <T as crate::j::K>::k() }
    "##,
    )
    .expect("parses");
    let scan = scan_items(&file.items);
    let paths: Vec<String> = (scan.uses.iter().chain(&scan.paths))
        .map(|i| i.path.join("::"))
        .collect();
    let idents: Vec<&str> = paths.iter().flat_map(|p| p.split("::")).collect();
    assert!(!idents.contains(&"commented") && !idents.contains(&"block"));
    assert!(!idents.contains(&"in_string") && !idents.contains(&"raw"));
    assert!(
        paths.contains(&"crate::h::I".to_owned()) && paths.contains(&"crate::j::K::k".to_owned()),
        "the char literal '{{' is not a brace: {paths:?}"
    );
    let Some(syn::Item::Use(first_use)) = file.items.first() else {
        panic!("a use first");
    };
    let mut leaves = Vec::new();
    use_leaves(&first_use.tree, Vec::new(), &mut leaves);
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
    let mods: Vec<(&str, Option<&str>)> = scan
        .mods
        .iter()
        .map(|m| (m.name.as_str(), m.path.as_deref()))
        .collect();
    assert_eq!(mods, [("tests", Some("x_tests.rs"))]);
}

/// `a` and `b` are siblings that import each other only through their parent's re-exports;
/// `c`'s `use super::*` child test module and its parent are not a circle.
#[test]
fn reexports_are_followed_and_parents_do_not_count() {
    let dir = temp_tree(
        "reexports",
        &[
            (
                "src/lib.rs",
                "mod a;\nmod b;\nmod c;\npub use a::A;\npub use b::B;\n",
            ),
            ("src/a.rs", "use crate::B;\npub struct A(B);\n"),
            (
                "src/b.rs",
                "pub struct B;\nimpl B { fn a() -> super::A { todo!() } }\n",
            ),
            (
                "src/c.rs",
                "pub fn c() {}\n#[cfg(test)]\nmod tests { use super::*; #[test] fn t() { c() } }\n",
            ),
        ],
    );
    let krate = Crate::load("t".into(), &dir.join("src/lib.rs"), &dir).expect("loads");
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

/// A workspace whose one crate has two files importing each other (one in a macro's input):
/// the check fails and names both files, with the line and path of each import; an ALLOWED
/// entry breaks the circle, and one no import uses is reported.
#[test]
fn a_circle_between_two_files_fails_naming_both() {
    let dir = temp_tree(
        "circle",
        &[
            ("Cargo.toml", "[workspace]\nmembers = [\"x\"]\n"),
            ("x/src/lib.rs", "mod a;\nmod b;\n"),
            ("x/src/a.rs", "use crate::b::B;\npub struct A(pub B);\n"),
            (
                "x/src/b.rs",
                "pub struct B;\n\npub fn a() -> String {\n    format!(\"{:?}\", crate::a::A(B))\n}\n",
            ),
        ],
    );
    let crates = crates(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (report, total_edges) = check(&crates, &[]);
    assert_eq!(total_edges, 2, "{report}");
    assert!(report.contains("x/src/a.rs, x/src/b.rs"), "{report}");
    assert!(
        report.contains("x/src/a.rs:1 imports x/src/b.rs (crate::b::B)"),
        "{report}"
    );
    assert!(
        report.contains("x/src/b.rs:4 imports x/src/a.rs (crate::a::A)"),
        "{report}"
    );
    let allowed = [
        ("x/src/b.rs", "x/src/a.rs", "a test"),
        ("x/src/a.rs", "x/src/lib.rs", "unused"),
    ];
    let (report, _) = check(&crates, &allowed);
    assert_eq!(
        report,
        "ALLOWED lists x/src/a.rs -> x/src/lib.rs, which no import uses any more\n"
    );
}
