//! ARCHITECTURE.md's module boundaries, checked on the source text so that
//! they hold by test, not by habit:
//!
//! * the crate's modules are private: `lib.rs` declares no `pub mod`, and
//!   its public API is the explicit `pub use` list;
//! * only `rpc` sees the proto crate: outside `rpc/`, `piauth_proto` is
//!   named in `shared.rs` alone (the provider's name and the paths);
//! * `rpc` never reaches into `store`: it talks to the broker only.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
    out
}

/// The lines of `text` that are code, not comments.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start()))
        .filter(|(_, l)| !l.starts_with("//"))
}

#[test]
fn the_crates_modules_are_private() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let public: Vec<_> = code_lines(&lib)
        .filter(|(_, l)| l.starts_with("pub mod "))
        .collect();
    assert!(public.is_empty(), "lib.rs makes modules public: {public:?}");
    assert!(
        code_lines(&lib).any(|(_, l)| l.starts_with("pub use ")),
        "the public API is an explicit pub use list"
    );
}

#[test]
fn only_rpc_and_shared_name_the_proto_crate() {
    let root = src();
    let mut offenders = Vec::new();
    for (path, text) in sources(&root) {
        let rel = path.strip_prefix(&root).unwrap();
        if rel.starts_with("rpc") || rel == Path::new("shared.rs") {
            continue;
        }
        for (n, line) in code_lines(&text) {
            if line.contains("piauth_proto") {
                offenders.push(format!("{}:{n}: {line}", rel.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "piauth_proto outside rpc/ and shared.rs:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn rpc_never_reaches_into_the_store() {
    let root = src().join("rpc");
    let mut offenders = Vec::new();
    for (path, text) in sources(&root) {
        for (n, line) in code_lines(&text) {
            if line.contains("crate::store") || line.contains("store::") {
                offenders.push(format!("{}:{n}: {line}", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "rpc uses the store directly:\n{}",
        offenders.join("\n")
    );
}
