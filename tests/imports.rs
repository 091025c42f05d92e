//! No module of `src/` imports one that imports it back: neither file by
//! file nor between the top-level modules (README "Architecture"). Reads the
//! sources for `crate::` and `super::` paths; a parent and its own children
//! (`mod` declarations, `super::` helpers) do not count as a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path of a source file: `src/backend/cpu/mod.rs` -> `backend::cpu`.
fn module_of(rel: &str) -> String {
    let m = rel.trim_end_matches(".rs");
    let m = m.strip_suffix("/mod").unwrap_or(m);
    m.replace('/', "::")
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.insert(module_of(&rel), std::fs::read_to_string(&p).unwrap());
        }
    }
}

/// Edges module -> the modules its `crate::` / `super::` paths name.
fn imports(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let resolve = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len()).rev().map(|i| parts[..i].join("::")).find(|m| files.contains_key(m))
    };
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (me, src) in files {
        for (base, prefix) in [("crate::", String::new()), ("super::", me.rsplit_once("::").map_or(String::new(), |(p, _)| format!("{p}::")))] {
            for (i, _) in src.match_indices(base) {
                if src[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let rest: String = src[i + base.len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                if let Some(t) = resolve(&format!("{prefix}{}", rest.trim_end_matches(':'))) {
                    let family = t.starts_with(&format!("{me}::")) || me.starts_with(&format!("{t}::"));
                    if t != *me && !family {
                        g.entry(me.clone()).or_default().insert(t);
                    }
                }
            }
        }
    }
    g
}

/// A cycle of `g`, if there is one.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(u: &str, g: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(u.to_string(), 1);
        stack.push(u.to_string());
        for v in g.get(u).into_iter().flatten() {
            match state.get(v) {
                Some(1) => return Some(stack[stack.iter().position(|s| s == v).unwrap()..].iter().cloned().chain([v.clone()]).collect()),
                None => {
                    if let Some(c) = visit(v, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(u.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for u in g.keys() {
        if !state.contains_key(u) {
            if let Some(c) = visit(u, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&root, &root, &mut files);
    let g = imports(&files);
    assert!(g.get("localizer::rois").is_some_and(|s| s.contains("geometry::boxes")), "the parser finds imports: {:?}", g.get("localizer::rois"));
    assert_eq!(cycle(&g), None, "file-level import loop");
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, bs) in &g {
        for b in bs {
            let (ta, tb) = (a.split("::").next().unwrap(), b.split("::").next().unwrap());
            if ta != tb {
                top.entry(ta.to_string()).or_default().insert(tb.to_string());
            }
        }
    }
    assert_eq!(cycle(&top), None, "import loop between top-level modules");
}

#[test]
fn the_loop_finder_finds_a_loop() {
    let g: BTreeMap<String, BTreeSet<String>> =
        [("a", "b"), ("b", "c"), ("c", "a")].iter().map(|(x, y)| (x.to_string(), BTreeSet::from([y.to_string()]))).collect();
    assert_eq!(cycle(&g).map(|c| c.len()), Some(4));
    let files: BTreeMap<String, String> =
        [("x", "use crate::y::f;"), ("y", "use crate::x::g;"), ("z::w", "use super::X;"), ("z", "mod w;")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let g = imports(&files);
    assert!(cycle(&g).is_some() && !g.contains_key("z::w"), "{g:?}");
}
