//! The durable record of a refresh on the wire.
//!
//! A refresh token is single-use: once the issuer has rotated it, sending it
//! again is reuse, and the issuer revokes the whole login. Within one
//! process the broker never re-sends a token whose refresh may have reached
//! the issuer ([`super::Phase::OutcomeUnknown`]). A crash must not undo
//! that: before the request leaves, a record naming the token (by a hash,
//! never the token) is written durably; it is removed only once the answer
//! is settled (the new token durably stored, or a refusal from the issuer).
//! A daemon that starts and finds a record for the token it holds knows the
//! outcome is unknown and does not send it.
//!
//! The record lives in piauthd's own state directory
//! (`$XDG_STATE_HOME/piauthd`, else `~/.local/state/piauthd`), never beside
//! pi's files, and on persistent storage: a power cut mid-refresh is a
//! crash too. Its name carries a hash of the store's identity
//! ([`StoreId`]: its resolved path), so two daemons on two stores never
//! share one, and two spellings of one store always do.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::paths::StoreId;
use crate::secret::Secret;
use crate::store::durable;

/// A refresh that was sent and whose answer was never settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Hex SHA-256 of the refresh token that was sent.
    pub refresh_sha256: String,
    /// When the request left, in ms since the epoch.
    pub sent_at_ms: i64,
    /// The daemon that sent it.
    pub pid: u32,
}

/// Where a store's record is kept, and the operations on it.
#[derive(Debug, Clone)]
pub struct InFlight {
    path: PathBuf,
    /// Where an earlier piauthd, which named the record by the store's path
    /// as given rather than by its [`StoreId`], kept it: read and cleared
    /// too, so a record left by a crash before an upgrade is not missed.
    legacy: Option<PathBuf>,
}

/// Hex SHA-256 of a token: enough to recognise it, useless to spend it.
pub fn fingerprint(token: &Secret<String>) -> String {
    hex(&Sha256::digest(token.expose().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The record's file name for a store tagged `tag`.
fn file_name(tag: &str) -> String {
    format!("piauthd-refresh-in-flight-{tag}.json")
}

impl InFlight {
    /// The record for the store `id`, in `state_dir`.
    pub fn new(state_dir: &Path, id: &StoreId) -> InFlight {
        InFlight {
            path: state_dir.join(file_name(&id.tag())),
            legacy: None,
        }
    }

    /// Also looks where an earlier piauthd kept the record of the store it
    /// was given as `spelled` (its path or keyring description as given).
    pub fn with_legacy(mut self, spelled: &str) -> InFlight {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let legacy = dir.join(file_name(&crate::paths::tag_of(spelled)));
        self.legacy = (legacy != self.path).then_some(legacy);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records, durably, that `refresh` is about to be sent.
    pub async fn begin(&self, refresh: &Secret<String>, sent_at_ms: i64) -> io::Result<()> {
        let record = Record {
            refresh_sha256: fingerprint(refresh),
            sent_at_ms,
            pid: std::process::id(),
        };
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        let path = self.path.clone();
        blocking(move || {
            if let Some(dir) = path.parent() {
                durable::ensure_dir(dir)?;
            }
            durable::write(&path, &bytes)
        })
        .await
    }

    /// Removes the record (and a legacy one), durably: the answer is
    /// settled.
    pub async fn settle(&self) -> io::Result<()> {
        let paths: Vec<PathBuf> = std::iter::once(self.path.clone())
            .chain(self.legacy.clone())
            .collect();
        blocking(move || paths.iter().try_for_each(|p| remove_durably(p))).await
    }

    /// The record, if there is one. A record that does not parse is
    /// reported as an error: it may be the only sign of a refresh on the
    /// wire, so it is never taken for "none".
    pub async fn read(&self) -> io::Result<Option<Record>> {
        match read_record(self.path.clone()).await? {
            Some(record) => Ok(Some(record)),
            None => match &self.legacy {
                Some(legacy) => read_record(legacy.clone()).await,
                None => Ok(None),
            },
        }
    }
}

async fn read_record(path: PathBuf) -> io::Result<Option<Record>> {
    let bytes = blocking(move || durable::read(&path).map_err(io::Error::other)).await?;
    bytes
        .map(|b| serde_json::from_slice::<Record>(&b).map_err(io::Error::other))
        .transpose()
}

/// Removes `path` if it is there, then syncs its directory.
fn remove_durably(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// What a record found at start-up means for the token the store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No record, or one for another token (the answer was stored, or
    /// another process refreshed since): nothing to do but drop it.
    Clear { stale: bool },
    /// A newer token lives only in memory (its save failed), so the store
    /// may still hold the token the record names: the record stays, so a
    /// crash now still finds it, and nothing is unknown (the newer token is
    /// in hand).
    Keep,
    /// The token the store holds was sent and never answered.
    Unknown { sent_at_ms: i64 },
}

/// Decides what a record means for the refresh token now held, which is
/// `unpersisted` when its save failed.
pub fn recover(
    record: Option<&Record>,
    held_refresh: Option<&Secret<String>>,
    unpersisted: bool,
) -> Recovery {
    match (record, held_refresh) {
        (None, _) => Recovery::Clear { stale: false },
        (Some(_), _) if unpersisted => Recovery::Keep,
        (Some(r), Some(token)) if r.refresh_sha256 == fingerprint(token) => Recovery::Unknown {
            sent_at_ms: r.sent_at_ms,
        },
        (Some(_), _) => Recovery::Clear { stale: true },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret<String> {
        Secret::new(s.to_owned())
    }

    #[test]
    fn a_record_for_the_stored_token_means_the_outcome_is_unknown() {
        let rec = Record {
            refresh_sha256: fingerprint(&secret("rt-1")),
            sent_at_ms: 42,
            pid: 7,
        };
        assert_eq!(
            recover(Some(&rec), Some(&secret("rt-1")), false),
            Recovery::Unknown { sent_at_ms: 42 }
        );
        assert_eq!(
            recover(Some(&rec), Some(&secret("rt-2")), false),
            Recovery::Clear { stale: true }
        );
        assert_eq!(
            recover(Some(&rec), None, false),
            Recovery::Clear { stale: true }
        );
        assert_eq!(
            recover(None, Some(&secret("rt-1")), false),
            Recovery::Clear { stale: false }
        );
        // The save of rt-2 failed: the store may still hold rt-1, so the
        // record of rt-1 on the wire stays.
        assert_eq!(
            recover(Some(&rec), Some(&secret("rt-2")), true),
            Recovery::Keep
        );
    }

    #[test]
    fn the_record_never_holds_the_token_and_names_its_store() {
        let a = InFlight::new(
            Path::new("/s"),
            &StoreId::named("/home/u/.pi/agent/auth.json"),
        );
        let b = InFlight::new(
            Path::new("/s"),
            &StoreId::named("keyring piauthd/openai-codex"),
        );
        assert_ne!(a.path(), b.path());
        assert!(a.path().starts_with("/s"));
        let fp = fingerprint(&secret("rt-secret-value"));
        assert_eq!(fp.len(), 64);
        assert!(!fp.contains("rt-secret-value"));
    }

    #[tokio::test]
    async fn begin_read_settle_round_trip_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = InFlight::new(&dir.path().join("state"), &StoreId::named("store"));
        assert_eq!(rec.read().await.expect("read"), None);
        rec.begin(&secret("rt-1"), 5).await.expect("begin");
        let got = rec.read().await.expect("read").expect("a record");
        assert_eq!(got.sent_at_ms, 5);
        assert_eq!(got.refresh_sha256, fingerprint(&secret("rt-1")));
        let text = std::fs::read_to_string(rec.path()).expect("the file");
        assert!(!text.contains("rt-1"), "{text}");
        rec.settle().await.expect("settle");
        assert_eq!(rec.read().await.expect("read"), None);
        rec.settle().await.expect("settling twice is fine");
    }

    #[tokio::test]
    async fn a_record_an_earlier_piauthd_left_under_the_given_spelling_is_found_and_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spelled = "/home/u/./agent/auth.json";
        let old = InFlight::new(dir.path(), &StoreId::named(spelled));
        old.begin(&secret("rt-old"), 9).await.expect("begin");
        let rec = InFlight::new(dir.path(), &StoreId::named("/home/u/agent/auth.json"))
            .with_legacy(spelled);
        let got = rec.read().await.expect("read").expect("the legacy record");
        assert_eq!(got.refresh_sha256, fingerprint(&secret("rt-old")));
        rec.settle().await.expect("settle");
        assert_eq!(old.read().await.expect("read"), None, "both are cleared");
        assert_eq!(rec.read().await.expect("read"), None);
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_not_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = InFlight::new(dir.path(), &StoreId::named("store"));
        std::fs::write(rec.path(), b"{not json").expect("write");
        assert!(rec.read().await.is_err());
    }
}
