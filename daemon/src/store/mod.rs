//! The credential store: pi's `auth.json`, shared with running pi processes.
//!
//! Every write happens under pi's lock directory ([`lock`]), re-reads the
//! file inside the lock, and lands atomically and durably ([`durable`]). A
//! file that does not parse is never overwritten. Readers outside the lock
//! can catch pi mid-write (pi truncates and rewrites in place), so a parse
//! failure is retried, and finally re-read under the lock, before the file is
//! called corrupt.

mod blocking;
mod document;
pub(crate) mod durable;
mod keyring;
mod lock;
mod owner;
mod sidecar;
mod transaction;
mod watch;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::paths::StoreId;

pub use blocking::{IO_DEADLINE, Overdue, off_runtime, within};
pub use document::{Credential, Document, OAuthCredential, ParseError};
pub use durable::{ReadError, ensure_dir};
pub use keyring::KeyringStore;
pub use lock::{DEFAULT_WAIT, LockError, PiLock, lock_path, recover_orphan};
pub use owner::{OwnerError, check_dir, check_store, owner_hint};
pub use transaction::{Transaction, Unlockable};
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
    #[error(
        "{path} is a {kind}, not a regular file; piauthd reads only regular files: \
         remove it, then log in again (pi-authctl login)"
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{path} is {size} bytes; piauthd reads at most 1 MiB (pi's file is a few kB): \
         move it aside, then log in again (pi-authctl login)"
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error(
        "reading {path} {overdue}; piauthd keeps the last good credentials and reads it \
         again when it changes"
    )]
    Hung {
        path: PathBuf,
        #[source]
        overdue: Overdue,
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
    /// A write was attempted while the transaction had given pi's lock
    /// back: a bug, refused rather than written unlocked.
    #[error("internal error: a write to the credential store without pi's lock was refused")]
    Paused,
}

/// How many unlocked re-reads a parse failure gets before the locked one.
const UNLOCKED_RETRIES: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// Where the credential document lives.
#[derive(Debug, Clone)]
enum Backend {
    /// pi's `auth.json` itself (the default).
    File,
    /// The OS keyring; `path` then only names the lock.
    Keyring(KeyringStore),
    /// A document held in memory: the broker's logic under test, with no
    /// disk, no lock and no D-Bus. Nobody else can write it, so it is not
    /// locked.
    Memory(std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>),
}

/// The credential store: pi's `auth.json` at a fixed path, or the OS
/// keyring. Either way writes happen under pi's lock for `path`.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    lock_wait: Duration,
    backend: Backend,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore {
            path: path.into(),
            lock_wait: DEFAULT_WAIT,
            backend: Backend::File,
        }
    }

    /// The OS keyring, with `lock_path` naming the lock that serialises
    /// writers (piauthd processes) of the same keyring item.
    pub fn keyring(lock_path: impl Into<PathBuf>, keyring: KeyringStore) -> FileStore {
        FileStore {
            path: lock_path.into(),
            lock_wait: DEFAULT_WAIT,
            backend: Backend::Keyring(keyring),
        }
    }

    /// A store in memory holding `bytes` (`None`: no file yet), named
    /// `name` for people. Clones share the one document.
    pub fn memory(name: &str, bytes: Option<&[u8]>) -> FileStore {
        FileStore {
            path: PathBuf::from(format!("memory:{name}")),
            lock_wait: DEFAULT_WAIT,
            backend: Backend::Memory(std::sync::Arc::new(std::sync::Mutex::new(
                bytes.map(<[u8]>::to_vec),
            ))),
        }
    }

    /// Whether pi's lock guards this store (not for a store in memory).
    fn is_locked_by_pi(&self) -> bool {
        !matches!(self.backend, Backend::Memory(_))
    }

    /// Whether this is the OS keyring.
    pub fn is_keyring(&self) -> bool {
        matches!(self.backend, Backend::Keyring(_))
    }

    /// The store's identity in piauthd's state directory ([`StoreId`]):
    /// the resolved `auth.json`, or the keyring item. Blocking: it resolves
    /// the path.
    pub fn identity(&self) -> StoreId {
        match &self.backend {
            Backend::File => StoreId::file(&self.path),
            Backend::Keyring(k) => StoreId::named(&k.describe()),
            Backend::Memory(_) => StoreId::named(&self.describe()),
        }
    }

    /// Where the credentials are, for people.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::File | Backend::Memory(_) => self.path.display().to_string(),
            Backend::Keyring(k) => k.describe(),
        }
    }

    /// Reads the document with no retry, for callers holding pi's lock.
    /// Private: writers go through a [`Transaction`].
    ///
    /// ```compile_fail
    /// # async fn f(store: piauthd::FileStore) {
    /// let _ = store.read_locked().await;
    /// # }
    /// ```
    async fn read_locked(&self) -> Result<Option<Document>, StoreError> {
        match &self.backend {
            Backend::File => self.read_parsed().await,
            Backend::Keyring(k) => {
                let bytes = k.read().await.map_err(|source| StoreError::Io {
                    path: self.path.clone(),
                    action: "read the keyring item for",
                    source,
                })?;
                self.parse(bytes)
            }
            Backend::Memory(doc) => {
                let bytes = doc.lock().unwrap_or_else(|p| p.into_inner()).clone();
                self.parse(bytes)
            }
        }
    }

    /// Writes the document durably (the caller holds pi's lock). Private:
    /// writers go through a [`Transaction`].
    ///
    /// ```compile_fail
    /// # async fn f(store: piauthd::FileStore) {
    /// let _ = store.write(&Default::default()).await;
    /// # }
    /// ```
    async fn write(&self, doc: &Document) -> io::Result<()> {
        let mut bytes = doc.to_bytes();
        match &self.backend {
            // No deadline: a rotated token must land, and an abandoned
            // write finishing late could overwrite a newer one.
            Backend::File => {
                let path = self.path.clone();
                off_runtime("piauthd-store-write", move || {
                    let written = durable::write(&path, &bytes);
                    zeroize::Zeroize::zeroize(&mut bytes);
                    written
                })
                .await?
            }
            Backend::Keyring(k) => {
                let written = k.write(bytes.clone()).await;
                zeroize::Zeroize::zeroize(&mut bytes);
                written
            }
            Backend::Memory(doc) => {
                *doc.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
                Ok(())
            }
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
        if !matches!(self.backend, Backend::File) {
            // Keyring and memory writes are atomic: there is no half-written item.
            return self.read_locked().await;
        }
        for _ in 0..UNLOCKED_RETRIES {
            match self.read_parsed().await {
                Err(StoreError::Corrupt { .. }) => tokio::time::sleep(RETRY_PAUSE).await,
                other => return other,
            }
        }
        // Still unparsable: look again while no pi process can be writing.
        let guard = PiLock::acquire(&self.path, self.lock_wait).await?;
        let result = self.read_parsed().await;
        if let Err(e) = guard.release().await {
            tracing::warn!(error = %e, "could not remove pi's lock directory after a read");
        }
        result
    }

    /// Applies `edit` to the document under pi's lock and writes the result
    /// durably. A missing file starts as `{}`; a corrupt one is left alone
    /// and reported. Nothing is written when `edit` leaves the document as it
    /// was.
    pub async fn update<R>(&self, edit: impl FnOnce(&mut Document) -> R) -> Result<R, StoreError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let owned = dir.to_owned();
            let created = within("piauthd-store-dir", IO_DEADLINE, move || ensure_dir(&owned))
                .await
                .map_err(|overdue| StoreError::Hung {
                    path: dir.to_owned(),
                    overdue,
                })?;
            created.and_then(|r| r).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                action: "create",
                source,
            })?;
        }
        let mut tx = self.begin(Unlockable::Fail).await?;
        let mut doc = tx.document();
        let result = edit(&mut doc);
        let written = tx.commit(&doc).await;
        tx.finish().await;
        written?;
        Ok(result)
    }

    /// Reads and parses the file on a thread of its own, within
    /// [`IO_DEADLINE`], so a hung filesystem never stalls the runtime.
    async fn read_parsed(&self) -> Result<Option<Document>, StoreError> {
        let path = self.path.clone();
        let read = within("piauthd-store-read", IO_DEADLINE, move || {
            durable::read(&path)
        })
        .await
        .map_err(|overdue| StoreError::Hung {
            path: self.path.clone(),
            overdue,
        })?
        .map_err(|source| StoreError::Io {
            path: self.path.clone(),
            action: "start a thread to read",
            source,
        })?;
        let path = self.path.clone();
        let bytes = read.map_err(|e| match e {
            ReadError::NotRegular { kind } => StoreError::NotRegular { path, kind },
            ReadError::TooLarge { size } => StoreError::TooLarge { path, size },
            ReadError::Io(source) => StoreError::Io {
                path,
                action: "read",
                source,
            },
        })?;
        self.parse(bytes)
    }

    /// Parses the bytes read, then wipes them: they hold the tokens.
    fn parse(&self, bytes: Option<Vec<u8>>) -> Result<Option<Document>, StoreError> {
        let Some(mut bytes) = bytes else {
            return Ok(None);
        };
        let parsed = Document::parse(&bytes).map_err(|source| StoreError::Corrupt {
            path: self.path.clone(),
            source,
        });
        zeroize::Zeroize::zeroize(&mut bytes);
        parsed.map(Some)
    }
}
