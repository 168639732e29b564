//! The layering, checked: the modules directly under `src/` (a folder counts as one) import each other without a
//! cycle, and the pipeline core imports only the leaves. Read from the source text (`crate::<module>` paths
//! outside comments and test modules), so a change that closes a cycle fails here with the cycle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What the pipeline core may import: the leaves, modules that import nothing of the relay's but each other
/// (`filter` uses `json`'s scanner).
const PIPELINE_MAY_USE: &[&str] = &["error", "filter", "json", "keypath", "model", "status"];

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each top-level module's files name as `crate::<module>`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let top = |p: &Path| {
        let rel = p.strip_prefix(&src).expect("under src/");
        let first = rel.components().next().expect("a first component");
        first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string()
    };
    let modules: BTreeSet<String> = all
        .iter()
        .map(|p| top(p))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let path = regex::Regex::new(r"crate::(?:\{\s*)?([a-z_][a-z0-9_]*)").expect("the pattern");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &all {
        let from = top(file);
        if !modules.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a source file");
        // Test modules may reach anything; only the code the relay runs is layered.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or_default();
            for c in path.captures_iter(line) {
                let to = &c[1];
                if to != from && modules.contains(to) {
                    edges
                        .entry(from.clone())
                        .or_default()
                        .insert(to.to_string());
                }
            }
            // `crate::{a, b::c}` names several.
            if let Some(group) = line.split("crate::{").nth(1) {
                for item in group.split(['}', ',']) {
                    let name = item.trim().split("::").next().unwrap_or_default();
                    if name != from && modules.contains(name) {
                        edges
                            .entry(from.clone())
                            .or_default()
                            .insert(name.to_string());
                    }
                }
            }
        }
        edges.entry(from).or_default();
    }
    edges
}

/// A cycle through `start`, if there is one: the modules in order.
fn cycle_from(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        edges: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(edges, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(edges, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_module_imports_itself_through_others() {
    let edges = graph();
    assert!(edges.len() > 20, "the module graph was not read: {edges:?}");
    let cycles: Vec<String> = edges
        .keys()
        .filter_map(|m| cycle_from(&edges, m))
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between modules of src/ (move the shared part down, or behind a trait in the lower one):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_pipeline_core_imports_only_leaves() {
    let edges = graph();
    let used = edges.get("pipeline").expect("src/pipeline/ exists");
    let above: Vec<&String> = used
        .iter()
        .filter(|m| !PIPELINE_MAY_USE.contains(&m.as_str()))
        .collect();
    assert!(above.is_empty(), "the pipeline imports {above:?}");
    for leaf in PIPELINE_MAY_USE {
        let reached: Vec<&String> = edges
            .get(*leaf)
            .into_iter()
            .flatten()
            .filter(|m| !PIPELINE_MAY_USE.contains(&m.as_str()))
            .collect();
        assert!(
            reached.is_empty(),
            "`{leaf}` is meant to be a leaf, and imports {reached:?}"
        );
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &["a"][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(
        cycle_from(&edges, "a"),
        Some(vec!["a".into(), "b".into(), "c".into()])
    );
    assert_eq!(cycle_from(&edges, "d"), None);
}
