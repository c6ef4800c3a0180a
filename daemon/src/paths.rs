//! Where piauthd keeps its own files, and the one name of a store there.
//!
//! The XDG rules ([`BaseDirs`]) come from the crate the daemon shares with
//! its clients. What this module adds is a store's identity, [`StoreId`]:
//! the in-flight refresh record and the serving lock are both named by it,
//! so two daemons (or a daemon and a store move) that reach one `auth.json`
//! by two spellings (a symlinked agent directory, a relative path, `/./`)
//! meet on one record and one lock. A record missed because of a spelling is
//! a refresh token sent twice, which revokes the login.
//!
//! Nothing here reads the environment: the directories come from
//! [`crate::config`], which reads it once.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

pub use crate::shared::{BaseDirs, PIAUTHD};

/// What one credential store is called in piauthd's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreId {
    key: String,
}

impl StoreId {
    /// The store at `auth_file`, by its resolved path: the file itself when
    /// it exists (a symlinked `auth.json` is named by its target), else its
    /// resolved directory and its name, else the path made absolute with
    /// `.` dropped. Blocking: it asks the filesystem.
    pub fn file(auth_file: &Path) -> StoreId {
        let resolved = std::fs::canonicalize(auth_file)
            .ok()
            .or_else(|| {
                let name = auth_file.file_name()?;
                let dir = match auth_file.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                std::fs::canonicalize(dir).ok().map(|d| d.join(name))
            })
            .unwrap_or_else(|| lexically_absolute(auth_file));
        StoreId {
            key: resolved.display().to_string(),
        }
    }

    /// A store that is not a file (a keyring item), by its description.
    pub fn named(description: &str) -> StoreId {
        StoreId {
            key: description.to_owned(),
        }
    }

    /// The resolved path or name, for people and for messages.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// 16 hex digits of the key's SHA-256: what file names carry.
    pub fn tag(&self) -> String {
        tag_of(&self.key)
    }
}

impl std::fmt::Display for StoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

/// 16 hex digits of the SHA-256 of `text`.
pub fn tag_of(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `path` made absolute against the current directory, with `.` dropped
/// (`..` is kept: without the filesystem it cannot be resolved safely).
fn lexically_absolute(path: &Path) -> PathBuf {
    let base = if path.is_absolute() {
        PathBuf::new()
    } else {
        std::env::current_dir().unwrap_or_default()
    };
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .fold(base, |acc, c| acc.join(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_one_file_is_one_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = dir.path().join("agent");
        std::fs::create_dir(&agent).expect("agent dir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&agent, &link).expect("symlink");
        let plain = agent.join("auth.json");
        let dotted = dir.path().join(".").join("agent").join("auth.json");
        let linked = link.join("auth.json");
        // Before the file exists (its directory resolves), and after.
        for exists in [false, true] {
            if exists {
                std::fs::write(&plain, b"{}").expect("write");
            }
            let want = StoreId::file(&plain);
            assert_eq!(StoreId::file(&dotted), want, "exists: {exists}");
            assert_eq!(StoreId::file(&linked), want, "exists: {exists}");
            assert!(Path::new(want.key()).is_absolute());
        }
    }

    #[test]
    fn a_symlinked_auth_json_is_named_by_its_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.json");
        std::fs::write(&real, b"{}").expect("write");
        let link = dir.path().join("auth.json");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert_eq!(StoreId::file(&link), StoreId::file(&real));
    }

    #[test]
    fn a_path_that_cannot_be_resolved_is_still_absolute_and_stable() {
        let id = StoreId::file(Path::new("/nonexistent-piauthd/./agent/auth.json"));
        assert_eq!(id.key(), "/nonexistent-piauthd/agent/auth.json");
        assert_eq!(id.tag().len(), 16);
        assert_eq!(id.tag(), tag_of(id.key()));
    }

    #[test]
    fn two_stores_have_two_tags() {
        let a = StoreId::file(Path::new("/nonexistent-piauthd/a/auth.json"));
        let b = StoreId::named("OS keyring (service \"piauthd\", account \"auth.json\")");
        assert_ne!(a.tag(), b.tag());
    }
}
