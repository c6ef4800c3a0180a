//! ARCHITECTURE.md's module boundaries, checked on the source text so that
//! they hold by test, not by habit:
//!
//! * the crate's modules are private: `lib.rs` declares no `pub mod`, and
//!   its public API is the explicit `pub use` list;
//! * only `rpc` sees the proto crate: outside `rpc/`, `piauth_proto` is
//!   named in `shared.rs` alone (the provider's name and the paths);
//! * `rpc` never reaches into `store`: it talks to the broker only;
//! * no error prints its cause and also exposes it as `source()`.

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

/// The dependency names of a manifest's `[dependencies]`-like tables.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line.contains("dependencies");
        } else if in_deps && let Some((name, _)) = line.split_once('=') {
            names.push(name.trim().trim_end_matches(".workspace").to_owned());
        }
    }
    names
}

#[test]
fn the_cli_and_the_client_never_link_the_daemon() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["cli", "client"] {
        let manifest = std::fs::read_to_string(workspace.join(krate).join("Cargo.toml")).unwrap();
        let deps = dependencies(&manifest);
        assert!(
            deps.iter()
                .any(|d| d == "piauth-proto" || d == "piauth-client"),
            "{krate}: the manifest was not read: {deps:?}"
        );
        assert!(
            !deps.iter().any(|d| d == "piauthd"),
            "{krate} depends on the daemon: {deps:?}"
        );
    }
}

/// The field names of `message name { ... }` in the proto text.
fn fields<'a>(proto: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("message {name} {{");
    let Some(start) = proto.find(&head) else {
        return Vec::new();
    };
    let body = &proto[start + head.len()..];
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && l.contains('='))
        .filter_map(|l| l.split('=').next()?.split_whitespace().last())
        .collect()
}

#[test]
fn completions_messages_carry_no_token() {
    let proto = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/piauth/v1/piauth.proto"),
    )
    .unwrap();
    let mut seen = 0;
    for message in [
        "CompletionRequest",
        "CompletionEvent",
        "ResponseInfo",
        "Usage",
        "ListModelsResponse",
        "Model",
    ] {
        let names = fields(&proto, message);
        assert!(!names.is_empty(), "message {message} not found");
        seen += names.len();
        for field in names {
            // Token counts (`input_tokens`, `max_output_tokens`) are not tokens.
            let credential = field.contains("access")
                || field.contains("refresh")
                || field.contains("bearer")
                || (field.contains("token") && !field.ends_with("_tokens"));
            assert!(!credential, "{message}.{field} could carry a credential");
        }
    }
    assert!(seen > 10, "only {seen} fields read");
}

/// The `#[error(...)]` attributes of `text`, each with the variant (or
/// struct) body that follows it: `(message, body)`.
fn error_attributes(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("#[error(") {
        let after = &rest[start + "#[error(".len()..];
        let Some(end) = after.find(")]\n") else { break };
        let message = after[..end].to_owned();
        let tail = &after[end + 2..];
        // The body: up to the end of the variant's fields.
        let open = tail.find(['(', '{', ',']).unwrap_or(tail.len());
        let body = match tail[open..].chars().next() {
            Some(c @ ('(' | '{')) => {
                let close = if c == '(' { ')' } else { '}' };
                let inner = &tail[open..];
                let mut depth = 0;
                let mut stop = inner.len();
                for (i, ch) in inner.char_indices() {
                    if ch == c {
                        depth += 1;
                    } else if ch == close {
                        depth -= 1;
                        if depth == 0 {
                            stop = i;
                            break;
                        }
                    }
                }
                inner[..stop].to_owned()
            }
            _ => String::new(),
        };
        out.push((message, body));
        rest = tail;
    }
    out
}

/// Whether an error variant both prints its cause and exposes it as
/// `source()`, which says the cause twice in a chain.
fn prints_and_exposes(message: &str, body: &str) -> bool {
    if message.trim() == "transparent" {
        return false;
    }
    // The exposed field: a tuple field marked `#[source]` or `#[from]`, a
    // named field so marked, or a field named `source`.
    let mut exposed = Vec::new();
    if body.starts_with('(') && (body.contains("#[source]") || body.contains("#[from]")) {
        exposed.push("0".to_owned());
    }
    for marker in ["#[source]", "#[from]"] {
        for (i, _) in body.match_indices(marker) {
            let after = body[i + marker.len()..].trim_start();
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if after[name.len()..].trim_start().starts_with(':') {
                exposed.push(name);
            }
        }
    }
    if body.contains("source:") {
        exposed.push("source".to_owned());
    }
    exposed.iter().any(|name| {
        message.contains(&format!("{{{name}}}")) || message.contains(&format!(".{name})"))
    })
}

#[test]
fn no_error_prints_its_cause_and_exposes_it_too() {
    let root = src();
    let mut offenders = Vec::new();
    let mut seen = 0;
    for (path, text) in sources(&root) {
        for (message, body) in error_attributes(&text) {
            seen += 1;
            if prints_and_exposes(&message, &body) {
                offenders.push(format!(
                    "{}: #[error({message})] over {body}",
                    path.display()
                ));
            }
        }
    }
    assert!(seen > 40, "only {seen} error messages read");
    assert!(
        offenders.is_empty(),
        "errors that print their cause and expose it as source():\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_error_check_tells_the_two_styles_apart() {
    let text = "enum E {\n    #[error(\"cannot read {path}: {source}\")]\n    Read {\n        path: String,\n        #[source]\n        source: io::Error,\n    },\n    #[error(\"cannot read {path}: {cause}\")]\n    Said { path: String, cause: io::Error },\n    #[error(\"the server failed\")]\n    Exposed(#[source] io::Error),\n    #[error(transparent)]\n    Inner(#[from] Other),\n    #[error(\"reading {path} {overdue}\")]\n    Hung {\n        path: String,\n        #[source]\n        overdue: Overdue,\n    },\n}\n";
    let found = error_attributes(text);
    assert_eq!(found.len(), 5, "{found:?}");
    let verdicts: Vec<bool> = found
        .iter()
        .map(|(m, b)| prints_and_exposes(m, b))
        .collect();
    assert_eq!(verdicts, [true, false, false, false, true]);
}
