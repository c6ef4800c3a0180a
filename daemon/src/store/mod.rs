//! The credential store: pi's `auth.json`, shared with running pi processes.
//!
//! Every write happens under pi's lock directory ([`lock`]), re-reads the
//! file inside the lock, and lands atomically and durably ([`durable`]). A
//! file that does not parse is never overwritten. Readers outside the lock
//! can catch pi mid-write (pi truncates and rewrites in place), so a parse
//! failure is retried, and finally re-read under the lock, before the file is
//! called corrupt.

mod document;
mod durable;
mod lock;
mod watch;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use document::{Credential, Document, OAuthCredential, ParseError};
pub use durable::{DIR_MODE, FILE_MODE, ensure_dir, write as write_durable};
pub use lock::{
    DEFAULT_WAIT, HEARTBEAT, LockError, PiLock, STALE_AFTER, lock_path, recover_orphan,
};
pub use watch::{FileWatcher, watch_file};

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} is corrupt ({source}); piauthd will not overwrite it: fix or remove it")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// How many unlocked re-reads a parse failure gets before the locked one.
const UNLOCKED_RETRIES: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// pi's `auth.json` at a fixed path.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    lock_wait: Duration,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore {
            path: path.into(),
            lock_wait: DEFAULT_WAIT,
        }
    }

    /// Sets how long a write waits for pi's lock before failing.
    pub fn with_lock_wait(mut self, wait: Duration) -> FileStore {
        self.lock_wait = wait;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the document; `Ok(None)` when the file does not exist.
    pub async fn load(&self) -> Result<Option<Document>, StoreError> {
        for _ in 0..UNLOCKED_RETRIES {
            match self.read_parsed() {
                Err(StoreError::Corrupt { .. }) => tokio::time::sleep(RETRY_PAUSE).await,
                other => return other,
            }
        }
        // Still unparsable: look again while no pi process can be writing.
        let guard = PiLock::acquire(&self.path, self.lock_wait).await?;
        let result = self.read_parsed();
        drop(guard);
        result
    }

    /// Applies `edit` to the document under pi's lock and writes the result
    /// durably. A missing file starts as `{}`; a corrupt one is left alone
    /// and reported. Nothing is written when `edit` leaves the document as it
    /// was.
    pub async fn update<R>(&self, edit: impl FnOnce(&mut Document) -> R) -> Result<R, StoreError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_dir(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                action: "create",
                source,
            })?;
        }
        let guard = PiLock::acquire(&self.path, self.lock_wait).await?;
        let before = self.read_parsed()?.unwrap_or_default();
        let mut doc = before.clone();
        let result = edit(&mut doc);
        if doc != before {
            let path = self.path.clone();
            let bytes = doc.to_bytes();
            tokio::task::spawn_blocking(move || durable::write(&path, &bytes))
                .await
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(|source| StoreError::Io {
                    path: self.path.clone(),
                    action: "write",
                    source,
                })?;
        }
        if let Err(e) = guard.release() {
            tracing::warn!(error = %e, "could not remove pi's lock directory after a write");
        }
        Ok(result)
    }

    /// Reads and parses the file once, with no retry. For callers that hold
    /// pi's lock, so no pi process can be mid-write.
    pub fn read_now(&self) -> Result<Option<Document>, StoreError> {
        self.read_parsed()
    }

    fn read_parsed(&self) -> Result<Option<Document>, StoreError> {
        let bytes = durable::read(&self.path).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            action: "read",
            source,
        })?;
        bytes
            .map(|b| {
                Document::parse(&b).map_err(|source| StoreError::Corrupt {
                    path: self.path.clone(),
                    source,
                })
            })
            .transpose()
    }
}
