//! Imports only go down: the order `lib.rs` documents is the order of the code. Each module of
//! `zcprof/src` may name (`crate::x`) only modules after it in `LAYERS`; a module that imports one
//! before it, or one missing from the list, fails here with the offending file.
use std::{collections::BTreeSet, path::Path};

/// The top-level modules, callers first (as `lib.rs` lists them).
const LAYERS: [&str; 22] = [
    "app", "cli", "doctor", "top", "serve", "measure", "options", "export", "report", "devices",
    "model", "process", "collect", "probes", "workload", "caps", "sink", "output", "cancel",
    "files", "timing", "units",
];

/// The top-level module a source file belongs to (`model/ledger.rs` -> `model`).
fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The crate's top-level modules a source names outside its tests: `crate::x` paths, and the
/// heads of `use crate::{x, y::z}` groups.
fn imports(src: &str) -> BTreeSet<String> {
    let code = src.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find("};").unwrap_or(group.len())];
            let mut depth = 0;
            let mut head = String::new();
            for ch in body.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(word(&head));
                        head.clear();
                        continue;
                    }
                    _ => {}
                }
                head.push(ch);
            }
            out.insert(word(&head));
        } else {
            out.insert(word(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// The first identifier of a path.
fn word(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_only_go_down_the_documented_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let me = module_of(rel);
        if me == "lib" || me == "main" {
            continue;
        }
        let Some(mine) = rank(&me) else {
            wrong.push(format!("{}: module {me} is not in LAYERS", rel.display()));
            continue;
        };
        for used in imports(&std::fs::read_to_string(&file).unwrap()) {
            match rank(&used) {
                Some(r) if r <= mine && used != me => wrong.push(format!(
                    "{}: {me} imports {used}, which comes before it",
                    rel.display()
                )),
                None if used != me => {
                    wrong.push(format!("{}: imports {used}, not in LAYERS", rel.display()));
                }
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn lib_rs_lists_the_layers_in_this_order() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let doc: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join(" ");
    let listed = &doc[doc.find("Imports only go down").unwrap()..];
    let order: Vec<usize> = LAYERS
        .iter()
        .map(|m| {
            listed
                .find(&format!("`{m}`"))
                .unwrap_or_else(|| panic!("{m} not in lib.rs"))
        })
        .collect();
    assert!(
        order.is_sorted(),
        "lib.rs lists the layers in another order"
    );
}
