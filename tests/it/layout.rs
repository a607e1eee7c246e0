//! The crate's layout rules: imports run one way (no module imports one that imports it back,
//! directly or through others), and no source file is over [`MAX_LINES`] lines.
//!
//! The test reads every file under `src/` (no compiler, no dependency: a small Rust lexer that
//! skips comments, strings and char literals) and collects every path that names a module of
//! the crate: `use crate::…` (grouped forms `use crate::{a, b::c}` included), inline paths
//! (`crate::telemetry::Metrics::new()`), `super::…` and `self::…`, and a child module named
//! from its parent (`convert::Sample` in `pipeline/mod.rs`). A path that names no module (an
//! item of the crate root such as `crate::run`) is resolved through `lib.rs`'s `pub use`.
//!
//! Two graphs are checked:
//! - **Top level**: each file belongs to its top-level module (`src/foo.rs` and `src/foo/**`
//!   are `foo`); `lib.rs` and `main.rs` are the roots and not in the graph. A `super::` that
//!   climbs out of a top-level module is an error of its own: a top-level module reaches the
//!   others by `crate::` only.
//! - **Inside each module that has files of its own** (`remote_write`, `pipeline`, `buffer`,
//!   `kubelet`, `demo`, …): each file is a node (`pipeline`, `pipeline::convert`,
//!   `testkit::receiver::printer`) and the edges are the paths between them. A parent's
//!   `pub use child::…` is its public face, not a use of the child, and is not an edge; any
//!   other use of a child by its parent is (a child that uses its parent's items while the
//!   parent uses the child's is a loop).
//!
//! Test code is not part of the graph: items under `#[cfg(test)]`, and under `cfg` gates
//! naming the `test-support` feature (the demo's scriptable fakes, the prost reference
//! encoders), including whole files declared so (`#[cfg(test)] mod tests;`). A test that
//! reaches up to a higher module (the v2 encoder's tests run the converter to get real
//! samples) is not an architectural loop, and the product is what the rule is about.
//! `#[cfg(not(test))]` code counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path from the crate root; empty for the root.
type ModPath = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// `::`
    Sep,
    Punct(char),
}

/// `src/` relative path → module path: `foo.rs` and `foo/mod.rs` → `foo`, `foo/bar.rs` →
/// `foo::bar`; `lib.rs` and `main.rs` → the root.
fn module_of(rel: &str) -> ModPath {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

/// Tokens with their line numbers. Comments (doc comments too: a doc link is not an import)
/// and the contents of char literals are dropped; lifetimes become their name.
fn lex(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let ident_start = |ch: char| ch.is_alphabetic() || ch == '_';
    let ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    // Skips a string body starting at the opening quote `c[i] == '"'`, `hashes` `#`s after
    // the closing quote for a raw string; returns the contents.
    let string = |i: &mut usize, line: &mut usize, raw: bool, hashes: usize| {
        let mut s = String::new();
        *i += 1;
        while *i < c.len() {
            let ch = c[*i];
            if ch == '\n' {
                *line += 1;
            }
            if !raw && ch == '\\' {
                if c.get(*i + 1) == Some(&'\n') {
                    *line += 1;
                }
                *i += 2;
                continue;
            }
            if ch == '"' && (0..hashes).all(|k| c.get(*i + 1 + k) == Some(&'#')) {
                *i += 1 + hashes;
                return s;
            }
            s.push(ch);
            *i += 1;
        }
        s
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
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
            let at = line;
            let s = string(&mut i, &mut line, false, 0);
            out.push((Tok::Str(s), at));
        } else if ch == '\'' {
            if c.get(i + 1) == Some(&'\\') {
                // An escaped char literal: skip to its closing quote.
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                // A lifetime or label: its name follows as an ident.
                i += 1;
            }
        } else if ident_start(ch) {
            let start = i;
            while i < c.len() && ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let prefix = matches!(word.as_str(), "r" | "b" | "br" | "c" | "cr");
            if prefix && c.get(i) == Some(&'"') {
                let at = line;
                let s = string(&mut i, &mut line, word.contains('r'), 0);
                out.push((Tok::Str(s), at));
            } else if prefix && word.contains('r') && c.get(i) == Some(&'#') {
                let mut hashes = 0;
                while c.get(i + hashes) == Some(&'#') {
                    hashes += 1;
                }
                if c.get(i + hashes) == Some(&'"') {
                    i += hashes;
                    let at = line;
                    let s = string(&mut i, &mut line, true, hashes);
                    out.push((Tok::Str(s), at));
                } else {
                    // A raw identifier, `r#type`.
                    i += 1;
                    let start = i;
                    while i < c.len() && ident_char(c[i]) {
                        i += 1;
                    }
                    out.push((Tok::Ident(c[start..i].iter().collect()), line));
                }
            } else {
                out.push((Tok::Ident(word), line));
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && ident_char(c[i]) {
                i += 1;
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// One path of a file that names something in the crate.
#[derive(Debug, Clone)]
struct Reference {
    /// Full path from the crate root, module segments first.
    path: Vec<String>,
    line: usize,
    /// Part of a `pub use` (a re-export).
    reexport: bool,
}

/// What one file says about the module graph.
#[derive(Debug, Default)]
struct Scan {
    references: Vec<Reference>,
    /// Child modules declared under a test gate (`#[cfg(test)] mod tests;`).
    test_only_children: Vec<ModPath>,
    /// `super::` paths that climb out of the file's top-level module.
    escapes: Vec<usize>,
}

fn is_punct(t: Option<&(Tok, usize)>, p: char) -> bool {
    matches!(t, Some((Tok::Punct(q), _)) if *q == p)
}

fn is_ident(t: Option<&(Tok, usize)>, w: &str) -> bool {
    matches!(t, Some((Tok::Ident(q), _)) if q == w)
}

/// Parses a path's tail (after its first `::`) into the paths it names: `a::b` → one,
/// `{a, b::{c, d}}` → three. `self` in a group names the group's prefix.
fn use_tree(
    toks: &[(Tok, usize)],
    i: &mut usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    loop {
        match toks.get(*i) {
            Some((Tok::Punct('{'), _)) => {
                *i += 1;
                while *i < toks.len() && !is_punct(toks.get(*i), '}') {
                    use_tree(toks, i, prefix.clone(), out);
                    // `as name`, then the separator.
                    while *i < toks.len()
                        && !is_punct(toks.get(*i), ',')
                        && !is_punct(toks.get(*i), '}')
                    {
                        *i += 1;
                    }
                    if is_punct(toks.get(*i), ',') {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            Some((Tok::Ident(name), _)) if name == "self" => {
                *i += 1;
                out.push(prefix);
                return;
            }
            Some((Tok::Ident(name), _)) => {
                prefix.push(name.clone());
                *i += 1;
                if matches!(toks.get(*i), Some((Tok::Sep, _))) {
                    *i += 1;
                    continue;
                }
                out.push(prefix);
                return;
            }
            _ => {
                out.push(prefix);
                return;
            }
        }
    }
}

/// Skips one item or statement under a test gate, from `toks[i]`: through a `;` or `,` at
/// its own depth, through its first `{…}` block, or up to (not through) a bracket that
/// closes the enclosing one. Returns the index after it, and the name when it is `mod NAME;`.
fn skip_item(toks: &[(Tok, usize)], mut i: usize) -> (usize, Option<String>) {
    let module = if is_ident(toks.get(i), "mod")
        || (is_ident(toks.get(i), "pub") && is_ident(toks.get(i + 1), "mod"))
    {
        let at = if is_ident(toks.get(i), "mod") {
            i + 1
        } else {
            i + 2
        };
        match (toks.get(at), toks.get(at + 1)) {
            (Some((Tok::Ident(n), _)), Some((Tok::Punct(';'), _))) => Some(n.clone()),
            _ => None,
        }
    } else {
        None
    };
    let mut depth = 0i32;
    while let Some((t, _)) = toks.get(i) {
        match t {
            Tok::Punct('(' | '[') => depth += 1,
            Tok::Punct('{') => {
                if depth == 0 {
                    let mut braces = 0;
                    while let Some((t, _)) = toks.get(i) {
                        match t {
                            Tok::Punct('{') => braces += 1,
                            Tok::Punct('}') => {
                                braces -= 1;
                                if braces == 0 {
                                    return (i + 1, module);
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    return (i, module);
                }
                depth += 1;
            }
            Tok::Punct(')' | ']' | '}') => {
                if depth == 0 {
                    return (i, module);
                }
                depth -= 1;
            }
            Tok::Punct(';' | ',') if depth == 0 => return (i + 1, module),
            _ => {}
        }
        i += 1;
    }
    (i, module)
}

/// Scans one file whose module is `module`; `modules` are every file module of the crate
/// (to recognise a child named from its parent).
fn scan(text: &str, module: &ModPath, modules: &BTreeSet<ModPath>) -> Scan {
    let toks = lex(text);
    let mut scan = Scan::default();
    // Inline modules (`mod lenient { … }`) open at a brace depth.
    let mut inline: Vec<(String, i32)> = Vec::new();
    let mut depth = 0i32;
    let mut reexport = false;
    let mut i = 0;
    while i < toks.len() {
        let here = || {
            let mut m = module.clone();
            m.extend(inline.iter().map(|(n, _)| n.clone()));
            m
        };
        match &toks[i].0 {
            Tok::Punct('#') => {
                // An attribute: `#[…]` or `#![…]`.
                let mut j = i + 1;
                if is_punct(toks.get(j), '!') {
                    j += 1;
                }
                if !is_punct(toks.get(j), '[') {
                    i += 1;
                    continue;
                }
                let start = j;
                let mut brackets = 0;
                while let Some((t, _)) = toks.get(j) {
                    match t {
                        Tok::Punct('[') => brackets += 1,
                        Tok::Punct(']') => {
                            brackets -= 1;
                            if brackets == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                let attr = &toks[start..j];
                let test_gate = is_ident(attr.get(1), "cfg")
                    && !attr.iter().any(|(t, _)| *t == Tok::Ident("not".into()))
                    && attr.iter().any(|(t, _)| {
                        *t == Tok::Ident("test".into()) || *t == Tok::Str("test-support".into())
                    });
                i = j + 1;
                if test_gate {
                    // Further attributes of the same item, then the item.
                    while is_punct(toks.get(i), '#') && is_punct(toks.get(i + 1), '[') {
                        let mut b = 0;
                        while let Some((t, _)) = toks.get(i) {
                            match t {
                                Tok::Punct('[') => b += 1,
                                Tok::Punct(']') => {
                                    b -= 1;
                                    if b == 0 {
                                        break;
                                    }
                                }
                                _ => {}
                            }
                            i += 1;
                        }
                        i += 1;
                    }
                    let (next, child) = skip_item(&toks, i);
                    if let Some(child) = child {
                        let mut m = here();
                        m.push(child);
                        scan.test_only_children.push(m);
                    }
                    i = next;
                }
                continue;
            }
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Punct(';') => reexport = false,
            Tok::Ident(w) if w == "mod" => {
                if let (Some((Tok::Ident(name), _)), true) =
                    (toks.get(i + 1), is_punct(toks.get(i + 2), '{'))
                {
                    inline.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(w) if w == "use" => {
                let before = i.checked_sub(1).and_then(|k| toks.get(k));
                // `pub use`, or `pub(crate) use` / `pub(super) use`.
                reexport = is_ident(before, "pub")
                    || (is_punct(before, ')') && i >= 4 && is_ident(toks.get(i - 4), "pub"));
            }
            Tok::Ident(w)
                if matches!(toks.get(i + 1), Some((Tok::Sep, _)))
                    && !matches!(
                        i.checked_sub(1).and_then(|k| toks.get(k)),
                        Some((Tok::Sep, _))
                    ) =>
            {
                let line = toks[i].1;
                let mut base = match w.as_str() {
                    "crate" => Some(Vec::new()),
                    "self" => Some(here()),
                    "super" => Some(here()),
                    _ => {
                        let mut child = here();
                        child.push(w.clone());
                        modules.contains(&child).then_some(here())
                    }
                };
                if let Some(mut b) = base.take() {
                    let mut j = i;
                    if w == "super" {
                        while is_ident(toks.get(j), "super")
                            && matches!(toks.get(j + 1), Some((Tok::Sep, _)))
                        {
                            if b.len() <= 1 {
                                scan.escapes.push(line);
                            }
                            b.pop();
                            j += 2;
                        }
                    } else if w == "crate" || w == "self" {
                        j += 2;
                    }
                    let mut paths = Vec::new();
                    use_tree(&toks, &mut j, b, &mut paths);
                    for path in paths {
                        scan.references.push(Reference {
                            path,
                            line,
                            reexport,
                        });
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    scan
}

/// The module graph of a set of files (`src/`-relative path, contents).
#[derive(Debug, Default)]
struct Graph {
    /// Top-level module → the top-level modules it uses, with the first place that says so.
    top: BTreeMap<String, BTreeMap<String, String>>,
    /// Top-level module → its file modules → the file modules of the same top-level module
    /// they use, with the place.
    inner: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// Problems that are not cycles: `super::` out of a top-level module, unresolved paths.
    errors: Vec<String>,
}

fn graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<ModPath> = files.iter().map(|(rel, _)| module_of(rel)).collect();
    let scans: Vec<(String, ModPath, Scan)> = files
        .iter()
        .map(|(rel, text)| {
            let m = module_of(rel);
            let s = scan(text, &m, &modules);
            (rel.clone(), m, s)
        })
        .collect();
    let test_only: Vec<ModPath> = scans
        .iter()
        .flat_map(|(_, _, s)| s.test_only_children.clone())
        .collect();
    let excluded = |m: &ModPath| test_only.iter().any(|t| m.starts_with(t));
    // The crate root's re-exports: name → what it names.
    let mut root_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, m, s) in &scans {
        if m.is_empty() {
            for r in s.references.iter().filter(|r| r.reexport) {
                if let Some(last) = r.path.last() {
                    root_names.insert(last.clone(), r.path.clone());
                }
            }
        }
    }
    let resolve = |path: &[String]| -> Option<ModPath> {
        let path: Vec<String> = match path.first().and_then(|n| root_names.get(n)) {
            Some(full) if !modules.contains(&path[..1]) => {
                full.iter().chain(&path[1..]).cloned().collect()
            }
            _ => path.to_vec(),
        };
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
    };
    let mut g = Graph::default();
    for (rel, m, s) in &scans {
        if m.is_empty() || excluded(m) {
            continue;
        }
        let name = m.join("::");
        for line in &s.escapes {
            g.errors.push(format!(
                "src/{rel}:{line}: `super::` climbs out of the top-level module `{}`",
                m[0]
            ));
        }
        g.top.entry(m[0].clone()).or_default();
        g.inner
            .entry(m[0].clone())
            .or_default()
            .entry(name.clone())
            .or_default();
        for r in &s.references {
            let Some(target) = resolve(&r.path) else {
                g.errors.push(format!(
                    "src/{rel}:{}: `crate::{}` names no module of the crate",
                    r.line,
                    r.path.join("::")
                ));
                continue;
            };
            let place = format!("src/{rel}:{} ({})", r.line, r.path.join("::"));
            if target.is_empty() {
                continue;
            }
            if target[0] != m[0] {
                g.top
                    .entry(m[0].clone())
                    .or_default()
                    .entry(target[0].clone())
                    .or_insert(place);
            } else if target != *m && !(r.reexport && target.starts_with(m)) && !excluded(&target) {
                g.inner
                    .entry(m[0].clone())
                    .or_default()
                    .entry(name.clone())
                    .or_default()
                    .entry(target.join("::"))
                    .or_insert(place);
            }
        }
    }
    g
}

/// The first cycle of `edges` (a depth-first search in name order), as `a → b → … → a`, each
/// step with the place that makes it.
fn find_cycle(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Option<String> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeMap<String, String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut Vec::new(), &mut done) {
            let mut text = cycle.join(" → ");
            for pair in cycle.windows(2) {
                text.push_str(&format!(
                    "\n  {} → {}: {}",
                    pair[0], pair[1], edges[&pair[0]][&pair[1]]
                ));
            }
            return Some(text);
        }
    }
    None
}

/// Every `.rs` file under `dir`, as (path relative to `dir` with `/`, contents).
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (rel, text)
        })
        .collect()
}

fn crate_graph() -> Graph {
    graph(&rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    ))
}

fn edges_text(edges: &BTreeMap<String, BTreeMap<String, String>>) -> String {
    edges
        .iter()
        .map(|(from, to)| {
            format!(
                "  {from} → {}",
                to.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// No source file is longer than this, tests included: past it a file holds more than one
/// concept (the disk buffer's 2 146 lines held its record format, its directory lock and its
/// queue, and a thousand lines of tests).
const MAX_LINES: usize = 1200;

#[test]
fn no_source_file_is_over_the_line_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long = Vec::new();
    let mut files = 0;
    for dir in ["src", "tests", "benches"] {
        for (rel, text) in rust_files(&root.join(dir)) {
            files += 1;
            let lines = text.lines().count();
            if lines > MAX_LINES {
                long.push(format!("{dir}/{rel}: {lines} lines"));
            }
        }
    }
    assert!(
        files > 50,
        "only {files} files found under src/, tests/ and benches/"
    );
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines (split by concept, tests into a file of their own):\n{}",
        long.join("\n")
    );
}

#[test]
fn top_level_modules_import_one_way() {
    let g = crate_graph();
    assert!(g.errors.is_empty(), "{}", g.errors.join("\n"));
    if let Some(cycle) = find_cycle(&g.top) {
        panic!(
            "top-level modules import each other: {cycle}\nthe whole graph:\n{}",
            edges_text(&g.top)
        );
    }
}

#[test]
fn files_of_a_module_import_one_way() {
    let g = crate_graph();
    assert!(g.errors.is_empty(), "{}", g.errors.join("\n"));
    for (top, edges) in &g.inner {
        if let Some(cycle) = find_cycle(edges) {
            panic!(
                "files of `{top}` import each other: {cycle}\nthe files' graph:\n{}",
                edges_text(edges)
            );
        }
    }
}

/// The agent runs without the demo and its fakes (a build without the `demo` feature leaves
/// them out): nothing imports `demo`, and only `demo` imports `testkit`.
#[test]
fn only_the_demo_imports_the_fakes() {
    let g = crate_graph();
    assert!(g.errors.is_empty(), "{}", g.errors.join("\n"));
    let mut wrong = Vec::new();
    for (from, edges) in &g.top {
        for (to, place) in edges {
            let allowed = match to.as_str() {
                "demo" => false,
                "testkit" => from == "demo",
                _ => true,
            };
            if !allowed && from != to {
                wrong.push(format!("{from} → {to}: {place}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Not vacuous: the demo's use of the fakes is seen.
    assert!(g.top.get("demo").is_some_and(|e| e.contains_key("testkit")));
}

/// The scanner sees what it must: grouped `use`, inline paths, the crate root's re-exports,
/// a child named from its parent; and leaves test code out. Without this, a scanner that
/// found nothing would pass the two tests above.
#[test]
fn the_scanner_sees_every_kind_of_path() {
    let g = crate_graph();
    let uses = |from: &str, to: &str| g.top.get(from).is_some_and(|e| e.contains_key(to));
    // `use crate::remote_write::{Encoder, Negotiated, Protocol, Request};`
    assert!(uses("pipeline", "remote_write"));
    // `crate::telemetry::serve(…)` inline in agent.rs.
    assert!(uses("agent", "telemetry"));
    // `use crate::{Outcome, RunError};`, re-exported by lib.rs from `agent`.
    assert!(uses("demo", "agent"));
    // `remote_write::v2`'s tests use `crate::pipeline::convert`; test code is not the graph.
    assert!(!uses("remote_write", "pipeline"));
    let inner = |top: &str, from: &str, to: &str| {
        g.inner
            .get(top)
            .and_then(|m| m.get(from))
            .is_some_and(|e| e.contains_key(to))
    };
    // `use super::request::{Encoder, Request};` and `use super::{Protocol, …}`.
    assert!(inner(
        "remote_write",
        "remote_write::v1",
        "remote_write::request"
    ));
    assert!(inner("remote_write", "remote_write::v1", "remote_write"));
    // `convert::Sample` named from `pipeline/mod.rs`.
    assert!(inner("pipeline", "pipeline", "pipeline::convert"));
    // A parent's `pub use child::…` is its face, not a use.
    assert!(!inner("kubelet", "kubelet", "kubelet::client"));
}

/// A loop is found and named, with the line that makes each step, whatever form its paths
/// take; a `super::` out of a top-level module is reported.
#[test]
fn a_loop_is_named_with_its_path() {
    let files = |a: &str, b: &str, c: &str| {
        vec![
            (
                "lib.rs".to_owned(),
                "pub mod a; pub mod b; pub mod c; pub use c::Run;".to_owned(),
            ),
            ("a.rs".to_owned(), a.to_owned()),
            ("b.rs".to_owned(), b.to_owned()),
            ("c.rs".to_owned(), c.to_owned()),
        ]
    };
    let one_way = graph(&files(
        "use crate::{b::X, c};",
        "fn f() { crate::c::g() }",
        "//! use crate::a;\n#[cfg(test)]\nmod tests { use crate::a::Y; }",
    ));
    assert!(one_way.errors.is_empty(), "{:?}", one_way.errors);
    assert_eq!(find_cycle(&one_way.top), None);

    let looped = graph(&files(
        "use crate::{b::X, c};",
        "fn f() { crate::c::g() }",
        "\n\nfn h() { let _ = crate::Run; }\nuse crate::a::Y;",
    ));
    let cycle = find_cycle(&looped.top).expect("a → b → c → a");
    assert!(cycle.starts_with("a → b → c → a"), "{cycle}");
    assert!(cycle.contains("c → a: src/c.rs:4 (a::Y)"), "{cycle}");

    let escaped = graph(&files("use super::b::X;", "", ""));
    assert_eq!(
        escaped.errors,
        ["src/a.rs:1: `super::` climbs out of the top-level module `a`"]
    );

    let inner = graph(&[
        ("lib.rs".to_owned(), "pub mod p;".to_owned()),
        (
            "p/mod.rs".to_owned(),
            "mod q;\npub use q::Q;\nfn f() -> i64 { q::now() }".to_owned(),
        ),
        (
            "p/q.rs".to_owned(),
            "pub fn now() -> i64 { super::helper() }".to_owned(),
        ),
    ]);
    let cycle = find_cycle(&inner.inner["p"]).expect("p → p::q → p");
    assert!(cycle.starts_with("p → p::q → p"), "{cycle}");
}
