//! The module graph of one crate, and its cycles.
//!
//! Modules are found from the crate root through `mod name;` declarations
//! (`name.rs` or `name/mod.rs`) and inline `mod name { ... }` blocks.
//! Test-only code (`#[cfg(test)]` items: `mod tests`, test `use`s) is left
//! out. An edge `a -> b` is a path in module `a` naming module `b` or an
//! item of it: `crate::b::...`, `super::...`, `self::...` or a child module
//! by name, in a `use` (groups expanded) or anywhere in the code. A
//! re-export (`pub use`) is not an edge: an item re-exported counts as the
//! module it comes from, so `crate::Error` is an edge to `error` when the
//! root re-exports `error::Error`. A module never depends on itself;
//! declaring a child (`mod b;`) is not an edge.
//!
//! Not seen: paths inside string literals (serde's `deserialize_with =
//! "path"`); such a function is normally imported with a `use`, which is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::lex::{Token, tokens};

/// A module path below the crate root (`[]` is the root).
type ModPath = Vec<String>;

/// The modules of one crate and the edges between them.
#[derive(Debug, Default)]
pub struct Graph {
    /// Each module's file and tokens (inline modules share their file's).
    modules: BTreeMap<ModPath, Module>,
    /// `(from, to)` -> first place (`file:line`).
    edges: BTreeMap<(ModPath, ModPath), String>,
    /// Files that could not be read.
    pub problems: Vec<String>,
}

#[derive(Debug, Default)]
struct Module {
    file: PathBuf,
    /// The tokens of its body (without child inline modules and test code).
    body: Vec<Token>,
    /// Names it re-exports (`pub use`), with the module they come from.
    reexports: BTreeMap<String, ModPath>,
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

impl Graph {
    /// The graph of the crate whose root file is `root`.
    pub fn load(root: &Path) -> Self {
        let mut g = Self::default();
        g.load_file(Vec::new(), root, true);
        let paths: Vec<ModPath> = g.modules.keys().cloned().collect();
        // Re-exports first (two rounds: a re-export of a re-export).
        for _ in 0..2 {
            for m in &paths {
                let uses = g.uses(m);
                for (public, path, alias) in uses {
                    if !public {
                        continue;
                    }
                    if let Some(target) = g.resolve(m, &path)
                        && let Some(module) = g.modules.get_mut(m)
                    {
                        module.reexports.insert(alias, target);
                    }
                }
            }
        }
        for m in &paths {
            let Some(module) = g.modules.get(m) else {
                continue;
            };
            let cwd = std::env::current_dir().unwrap_or_default();
            let file = crate::relative(&cwd, &module.file).display().to_string();
            let mut found = Vec::new();
            for (path, line) in paths_in(&module.body) {
                if let Some(target) = g.resolve(m, &path)
                    && &target != m
                {
                    found.push((target, format!("{file}:{line}")));
                }
            }
            for (target, at) in found {
                g.edges.entry((m.clone(), target)).or_insert(at);
            }
        }
        g
    }

    /// Reads `file` as module `path` and, recursively, its children.
    fn load_file(&mut self, path: ModPath, file: &Path, dir_owner: bool) {
        let src = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                self.problems.push(format!("{}: {e}", file.display()));
                return;
            }
        };
        // Children of `a.rs` live in `a/`, of `mod.rs`, `lib.rs`, `main.rs` next to it.
        let dir = if dir_owner {
            file.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            file.with_extension("")
        };
        let toks = tokens(&src);
        self.split(path, file, &dir, &toks);
    }

    /// Assigns the tokens of one file to its module and inline modules,
    /// dropping test code, and loads declared child files.
    fn split(&mut self, path: ModPath, file: &Path, dir: &Path, toks: &[Token]) {
        let mut body = Vec::new();
        let mut i = 0;
        let mut test_attr = false;
        while i < toks.len() {
            let t = &toks[i].text;
            // Attributes: note #[cfg(test)], keep nothing.
            if t == "#"
                && toks
                    .get(i + 1)
                    .is_some_and(|n| n.text == "[" || n.text == "!")
            {
                let open = if toks[i + 1].text == "!" {
                    i + 2
                } else {
                    i + 1
                };
                let close = matching(toks, open);
                let text: Vec<&str> = toks[open..=close].iter().map(|t| t.text.as_str()).collect();
                if text.concat() == "[cfg(test)]" {
                    test_attr = true;
                }
                i = close + 1;
                continue;
            }
            if test_attr {
                // Skip the whole item: up to its `;` or its closing brace.
                i = item_end(toks, i) + 1;
                test_attr = false;
                continue;
            }
            let is_mod = t == "mod"
                && toks.get(i + 1).is_some_and(|n| is_ident(&n.text))
                && (i == 0 || toks[i - 1].text != "::");
            if is_mod {
                let name = toks[i + 1].text.clone();
                let mut child = path.clone();
                child.push(name.clone());
                match toks.get(i + 2).map(|n| n.text.as_str()) {
                    Some(";") => {
                        let flat = dir.join(format!("{name}.rs"));
                        let nested = dir.join(&name).join("mod.rs");
                        if flat.is_file() {
                            self.load_file(child, &flat, false);
                        } else {
                            self.load_file(child, &nested, true);
                        }
                        i += 3;
                        continue;
                    }
                    Some("{") => {
                        let close = matching(toks, i + 2);
                        self.split(child, file, &dir.join(&name), &toks[i + 3..close]);
                        i = close + 1;
                        continue;
                    }
                    _ => {}
                }
            }
            body.push(toks[i].clone());
            i += 1;
        }
        let module = self.modules.entry(path).or_default();
        module.file = file.to_path_buf();
        module.body = body;
    }

    /// The `use` declarations of module `m`: (public, full path, name it binds).
    fn uses(&self, m: &ModPath) -> Vec<(bool, Vec<String>, String)> {
        let Some(module) = self.modules.get(m) else {
            return Vec::new();
        };
        let body = &module.body;
        let mut out = Vec::new();
        let mut i = 0;
        while i < body.len() {
            if body[i].text == "use" {
                let public = is_pub(body, i);
                let end = (i..body.len())
                    .find(|&k| body[k].text == ";")
                    .unwrap_or(body.len());
                let mut leaves = Vec::new();
                expand(&body[i + 1..end], &[], &mut leaves);
                for (path, alias) in leaves {
                    out.push((public, path, alias));
                }
                i = end;
            }
            i += 1;
        }
        out
    }

    /// The module a path used in module `from` names (or names an item
    /// of); `None` for paths outside the crate.
    fn resolve(&self, from: &ModPath, path: &[String]) -> Option<ModPath> {
        let (mut base, mut rest) = match path.first().map(String::as_str) {
            Some("crate") => (Vec::new(), &path[1..]),
            Some("self") => (from.clone(), &path[1..]),
            Some("super") => {
                let mut b = from.clone();
                let mut k = 0;
                while path.get(k).is_some_and(|s| s == "super") {
                    b.pop();
                    k += 1;
                }
                (b, &path[k..])
            }
            Some(first) => {
                let mut child = from.clone();
                child.push(first.to_owned());
                if !self.modules.contains_key(&child) {
                    return None;
                }
                (from.clone(), path)
            }
            None => return None,
        };
        while let Some(seg) = rest.first() {
            let mut next = base.clone();
            next.push(seg.clone());
            if self.modules.contains_key(&next) {
                base = next;
                rest = &rest[1..];
            } else {
                break;
            }
        }
        if let Some(item) = rest.first()
            && let Some(target) = self.modules.get(&base).and_then(|m| m.reexports.get(item))
        {
            return Some(target.clone());
        }
        Some(base)
    }

    /// Every edge: (from, to, first place).
    pub fn edges(&self) -> impl Iterator<Item = (String, String, &str)> {
        self.edges
            .iter()
            .map(|((a, b), at)| (show(a), show(b), at.as_str()))
    }

    /// Each cycle (a strongly connected set of two or more modules), as
    /// `a -> b (file:line) -> ... -> a`.
    pub fn cycles(&self) -> Vec<String> {
        let nodes: Vec<&ModPath> = self.modules.keys().collect();
        let index: BTreeMap<&ModPath, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut adj = vec![Vec::new(); nodes.len()];
        for (a, b) in self.edges.keys() {
            if let (Some(&x), Some(&y)) = (index.get(a), index.get(b)) {
                adj[x].push(y);
            }
        }
        let mut out = Vec::new();
        for scc in tarjan(&adj) {
            if scc.len() < 2 {
                continue;
            }
            let set: BTreeSet<usize> = scc.iter().copied().collect();
            // One cycle through the set, found by walking edges inside it.
            let start = *set.iter().next().unwrap_or(&0);
            let cycle = cycle_from(start, &adj, &set);
            let mut text = show(nodes[start]);
            for w in cycle.windows(2) {
                let at = self
                    .edges
                    .get(&(nodes[w[0]].clone(), nodes[w[1]].clone()))
                    .map_or("", String::as_str);
                text.push_str(&format!(" -> {} ({at})", show(nodes[w[1]])));
            }
            let all: Vec<String> = set.iter().map(|&k| show(nodes[k])).collect();
            out.push(format!("{text} [modules: {}]", all.join(", ")));
        }
        out
    }
}

/// Whether the `use` at `i` is `pub` or `pub(...)`.
fn is_pub(body: &[Token], i: usize) -> bool {
    i > 0 && (body[i - 1].text == "pub" || body[i - 1].text == ")")
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Index of the bracket closing the one at `open`.
fn matching(toks: &[Token], open: usize) -> usize {
    let mut depth = 0i32;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t.text.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    toks.len().saturating_sub(1)
}

/// Index of the last token of the item starting at `i`: its `;` at depth 0
/// or the brace closing its body.
fn item_end(toks: &[Token], i: usize) -> usize {
    let mut k = i;
    while k < toks.len() {
        match toks[k].text.as_str() {
            ";" => return k,
            "{" => return matching(toks, k),
            "(" | "[" => k = matching(toks, k) + 1,
            _ => k += 1,
        }
    }
    toks.len().saturating_sub(1)
}

/// The leaves of a `use` tree: full path and the name bound.
fn expand(toks: &[Token], prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < toks.len() {
        match toks[i].text.as_str() {
            "::" => i += 1,
            "{" => {
                let close = matching(toks, i);
                let inner = &toks[i + 1..close];
                let mut start = 0;
                let mut depth = 0;
                for (k, t) in inner.iter().enumerate() {
                    match t.text.as_str() {
                        "{" => depth += 1,
                        "}" => depth -= 1,
                        "," if depth == 0 => {
                            expand(&inner[start..k], &path, out);
                            start = k + 1;
                        }
                        _ => {}
                    }
                }
                expand(&inner[start..], &path, out);
                return;
            }
            "as" => {
                if let Some(alias) = toks.get(i + 1) {
                    out.push((path.clone(), alias.text.clone()));
                }
                return;
            }
            "*" => return,
            t if is_ident(t) => {
                path.push(t.to_owned());
                i += 1;
            }
            _ => i += 1,
        }
    }
    if path.len() > prefix.len() {
        let name = path.last().cloned().unwrap_or_default();
        // `use a::b::{self}` binds `b`.
        if name == "self" {
            path.pop();
            let bound = path.last().cloned().unwrap_or_default();
            out.push((path, bound));
        } else {
            out.push((path, name));
        }
    }
}

/// Every path in `body` that starts with an identifier not preceded by
/// `::` (`a::b::c`), with its line; `use` groups expanded.
fn paths_in(body: &[Token]) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let t = &body[i];
        if t.text == "use" {
            let end = (i..body.len())
                .find(|&k| body[k].text == ";")
                .unwrap_or(body.len());
            // A re-export is no edge: its users depend on where the item comes from.
            if !is_pub(body, i) {
                let mut leaves = Vec::new();
                expand(&body[i + 1..end], &[], &mut leaves);
                out.extend(leaves.into_iter().map(|(p, _)| (p, t.line)));
            }
            i = end + 1;
            continue;
        }
        let starts = is_ident(&t.text)
            && body.get(i + 1).is_some_and(|n| n.text == "::")
            && (i == 0 || body[i - 1].text != "::");
        if starts {
            let mut path = vec![t.text.clone()];
            let mut k = i + 1;
            while body.get(k).is_some_and(|n| n.text == "::")
                && body.get(k + 1).is_some_and(|n| is_ident(&n.text))
            {
                path.push(body[k + 1].text.clone());
                k += 2;
            }
            out.push((path, t.line));
            i = k;
            continue;
        }
        i += 1;
    }
    out
}

/// Strongly connected components (Tarjan, iterative).
fn tarjan(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut e)) = work.last_mut() {
            if *e == 0 && index[v] == usize::MAX {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = adj[v].get(*e) {
                *e += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut scc = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(scc);
            }
        }
    }
    out
}

/// A cycle from `start` back to it, inside `set` (breadth-first, so short).
fn cycle_from(start: usize, adj: &[Vec<usize>], set: &BTreeSet<usize>) -> Vec<usize> {
    let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &adj[v] {
            if !set.contains(&w) {
                continue;
            }
            if w == start {
                // v, its predecessors back to start; then in order, closed.
                let mut back = vec![v];
                let mut cur = v;
                while cur != start {
                    cur = prev[&cur];
                    back.push(cur);
                }
                back.reverse();
                back.push(start);
                return back;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> (tempfile_dir::Dir, Graph) {
        let dir = tempfile_dir::Dir::new();
        for (name, src) in files {
            let p = dir.0.join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, src).expect("write");
        }
        let g = Graph::load(&dir.0.join("lib.rs"));
        (dir, g)
    }

    /// A private temporary directory, removed on drop (std only).
    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir().join(format!("archcheck-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).expect("temp dir");
                Self(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn edges(g: &Graph) -> Vec<String> {
        g.edges().map(|(a, b, _)| format!("{a}->{b}")).collect()
    }

    #[test]
    fn finds_edges_through_uses_groups_reexports_and_paths() {
        let (_d, g) = graph(&[
            (
                "lib.rs",
                "pub mod a; pub mod b; mod c; pub use a::Thing;\n#[cfg(test)]\nmod tests { use crate::c::X; }",
            ),
            (
                "a.rs",
                "pub struct Thing; pub mod inner { pub fn f() { super::super::b::g() } }",
            ),
            (
                "b.rs",
                "use crate::{Thing, c::{self}}; // crate::a::nothing\npub fn g() {}",
            ),
            ("c/mod.rs", "mod d; fn h() { d::k(); }"),
            ("c/d.rs", "pub fn k() {}\n#[cfg(test)]\nuse crate::b::g;"),
        ]);
        assert_eq!(edges(&g), ["a::inner->b", "b->a", "b->c", "c->c::d"]);
        assert!(g.cycles().is_empty());
    }

    #[test]
    fn reports_a_cycle_with_its_places() {
        let (_d, g) = graph(&[
            ("lib.rs", "mod conf; mod types;"),
            ("conf.rs", "use crate::types::Result;"),
            ("types/mod.rs", "mod wire; pub use wire::Result;"),
            (
                "types/wire.rs",
                "pub struct Result;\nfn f() { crate::conf::null_as_default(); }",
            ),
        ]);
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert!(
            cycles[0].contains("conf") && cycles[0].contains("types::wire"),
            "{cycles:?}"
        );
        assert!(cycles[0].contains("wire.rs:2"), "{cycles:?}");
    }
}
