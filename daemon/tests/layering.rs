//! ARCHITECTURE.md's layering, checked on the source text: the daemon's
//! top-level modules stand in layers, and a module names (`crate::x`) only
//! modules of a lower layer. A module added to `lib.rs` must be placed in a
//! layer here, so no import can point up and no circle can form unnoticed.
//!
//! Inside one module, a child naming its parent (`super::`) is the module
//! tree, not an import, and is not checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, lowest first. Keep in step with ARCHITECTURE.md's
/// "Layers".
const LAYERS: &[&[&str]] = &[
    // Leaves: no imports inside the crate but one another's.
    &[
        "secret", "shared", "wire", "base_url", "backoff", "throttle", "causes",
    ],
    &["paths", "oauth", "supervisor", "usage"],
    // Configuration and the credential store.
    &["config", "store"],
    // Processes, sockets and the network, each on its own.
    &["serving", "socket", "upstream", "callback", "forward"],
    // Decisions about credentials; moving a store.
    &["broker", "migrate"],
    // Several accounts, each with its own broker.
    &["accounts"],
    // What uses the brokers.
    &["login", "codex"],
    &["rpc"],
    &["server"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The top-level module a file under `src/` belongs to; `None` for the
/// crate root and the binary.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// The modules `text` names as `crate::<module>`, outside comments.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim_start) {
        if line.starts_with("//") {
            continue;
        }
        let code = line.split(" //").next().unwrap_or(line);
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                !rest.starts_with('{'),
                "a grouped `crate::{{..}}` import is not read by this check: {line}"
            );
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The modules `lib.rs` declares.
fn declared_modules() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("mod "))
        .map(|l| l.trim_end_matches(';').to_owned())
        .collect()
}

#[test]
fn every_module_has_a_layer() {
    let declared = declared_modules();
    assert!(declared.len() > 10, "lib.rs was not read: {declared:?}");
    let unplaced: Vec<_> = declared.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules with no layer in tests/layering.rs: {unplaced:?}"
    );
    let placed: Vec<_> = LAYERS.iter().flat_map(|l| l.iter()).collect();
    let gone: Vec<_> = placed
        .iter()
        .filter(|m| !declared.iter().any(|d| d == **m))
        .collect();
    assert!(
        gone.is_empty(),
        "layers name modules lib.rs lacks: {gone:?}"
    );
}

#[test]
fn no_module_names_one_of_its_own_layer_or_above() {
    let root = src();
    let mut offenders = Vec::new();
    let mut seen = 0;
    for path in files(&root) {
        let rel = path.strip_prefix(&root).expect("under src");
        let Some(module) = module_of(rel) else {
            continue;
        };
        let Some(own) = layer_of(&module) else {
            continue; // reported by every_module_has_a_layer
        };
        let text = std::fs::read_to_string(&path).expect("read source");
        for used in named_modules(&text) {
            seen += 1;
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(layer) => offenders.push(format!(
                    "{}: {module} (layer {own}) names {used} (layer {layer})",
                    rel.display()
                )),
                None => offenders.push(format!(
                    "{}: names crate::{used}, which has no layer",
                    rel.display()
                )),
            }
        }
    }
    assert!(seen > 50, "only {seen} imports read");
    assert!(
        offenders.is_empty(),
        "imports that point up or across the layers:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_check_reads_imports_and_skips_comments() {
    let text = "use crate::store::CredentialStore;\n\
                // crate::rpc in a comment\n\
                /// [`crate::server`] in a doc comment\n\
                let x = crate::broker::now_ms(); // crate::login\n";
    let got: Vec<_> = named_modules(text).into_iter().collect();
    assert_eq!(got, ["broker", "store"]);
}

#[test]
fn only_config_reads_the_directories_from_the_environment() {
    let root = src();
    let mut offenders = Vec::new();
    for path in files(&root) {
        let rel = path.strip_prefix(&root).expect("under src");
        if rel.starts_with("config") || rel == Path::new("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if !line.starts_with("//")
                && (line.contains("BaseDirs::from_env")
                    || line.contains("\"HOME\"")
                    || line.contains("\"XDG_"))
            {
                offenders.push(format!("{}:{}: {line}", rel.display(), n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "directories read from the environment outside config:\n{}",
        offenders.join("\n")
    );
}
