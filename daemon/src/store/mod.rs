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
mod memory;
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
pub use memory::MemoryStore;
pub use owner::{OwnerError, check_dir, check_store, owner_hint};
pub use transaction::{Transaction, Unlockable};
pub use watch::{FileWatcher, watch_file};

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store} is corrupt ({cause}); piauthd will not overwrite it: fix or remove it")]
    Corrupt { store: String, cause: ParseError },
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
    Hung { path: PathBuf, overdue: Overdue },
    #[error("cannot {action} {store}: {cause}")]
    Io {
        store: String,
        action: &'static str,
        cause: io::Error,
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
    /// pi's `auth.json` itself (the default), under pi's lock for it.
    File { auth_file: PathBuf },
    /// The OS keyring; writers are serialised by pi's lock protocol on
    /// `lock`, a path of piauthd's own.
    Keyring { lock: PathBuf, item: KeyringStore },
    /// A document in memory, for tests of the broker: not locked.
    Memory(MemoryStore),
}

/// The credential store: pi's `auth.json`, the OS keyring, or (in tests) a
/// document in memory. Writes to the first two happen under pi's lock.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    lock_wait: Duration,
    backend: Backend,
}

impl CredentialStore {
    /// pi's `auth.json` at `auth_file`.
    pub fn file(auth_file: impl Into<PathBuf>) -> CredentialStore {
        CredentialStore {
            lock_wait: DEFAULT_WAIT,
            backend: Backend::File {
                auth_file: auth_file.into(),
            },
        }
    }

    /// The OS keyring, with `lock` naming the lock that serialises
    /// writers (piauthd processes) of the same keyring item.
    pub fn keyring(lock: impl Into<PathBuf>, item: KeyringStore) -> CredentialStore {
        CredentialStore {
            lock_wait: DEFAULT_WAIT,
            backend: Backend::Keyring {
                lock: lock.into(),
                item,
            },
        }
    }

    /// A document in memory.
    pub fn memory(store: MemoryStore) -> CredentialStore {
        CredentialStore {
            lock_wait: DEFAULT_WAIT,
            backend: Backend::Memory(store),
        }
    }

    /// The path pi's lock protocol guards for this store: `auth.json`, or
    /// the keyring's lock; `None` for a store in memory.
    pub fn lock_path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::File { auth_file } => Some(auth_file),
            Backend::Keyring { lock, .. } => Some(lock),
            Backend::Memory(_) => None,
        }
    }

    /// Whether this is the OS keyring.
    pub fn is_keyring(&self) -> bool {
        matches!(self.backend, Backend::Keyring { .. })
    }

    /// The store's identity in piauthd's state directory ([`StoreId`]):
    /// the resolved `auth.json`, or the keyring item. Blocking: it resolves
    /// the path.
    pub fn identity(&self) -> StoreId {
        match &self.backend {
            Backend::File { auth_file } => StoreId::file(auth_file),
            Backend::Keyring { item, .. } => StoreId::named(&item.describe()),
            Backend::Memory(m) => StoreId::named(&m.describe()),
        }
    }

    /// Where the credentials are, for people.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::File { auth_file } => auth_file.display().to_string(),
            Backend::Keyring { item, .. } => item.describe(),
            Backend::Memory(m) => m.describe(),
        }
    }

    /// Reads the document with no retry, for callers holding pi's lock.
    /// Private: writers go through a [`Transaction`].
    ///
    /// ```compile_fail
    /// # async fn f(store: piauthd::CredentialStore) {
    /// let _ = store.read_locked().await;
    /// # }
    /// ```
    async fn read_locked(&self) -> Result<Option<Document>, StoreError> {
        match &self.backend {
            Backend::File { auth_file } => self.read_parsed(auth_file).await,
            Backend::Keyring { item, .. } => {
                let bytes = item.read().await.map_err(|source| StoreError::Io {
                    store: self.describe(),
                    action: "read",
                    cause: source,
                })?;
                self.parse(bytes)
            }
            Backend::Memory(m) => self.parse(m.read()),
        }
    }

    /// Writes the document durably (the caller holds pi's lock). Private:
    /// writers go through a [`Transaction`].
    ///
    /// ```compile_fail
    /// # async fn f(store: piauthd::CredentialStore) {
    /// let _ = store.write(&Default::default()).await;
    /// # }
    /// ```
    async fn write(&self, doc: &Document) -> io::Result<()> {
        let mut bytes = doc.to_bytes();
        match &self.backend {
            // No deadline: a rotated token must land, and an abandoned
            // write finishing late could overwrite a newer one.
            Backend::File { auth_file } => {
                let path = auth_file.clone();
                off_runtime("piauthd-store-write", move || {
                    let written = durable::write(&path, &bytes);
                    zeroize::Zeroize::zeroize(&mut bytes);
                    written
                })
                .await?
            }
            Backend::Keyring { item, .. } => {
                let written = item.write(bytes.clone()).await;
                zeroize::Zeroize::zeroize(&mut bytes);
                written
            }
            Backend::Memory(m) => m.write(bytes),
        }
    }

    /// Sets how long a write waits for pi's lock before failing.
    pub fn with_lock_wait(mut self, wait: Duration) -> CredentialStore {
        self.lock_wait = wait;
        self
    }

    /// Reads the document; `Ok(None)` when the file does not exist.
    pub async fn load(&self) -> Result<Option<Document>, StoreError> {
        let Backend::File { auth_file } = &self.backend else {
            // Keyring and memory writes are atomic: there is no half-written item.
            return self.read_locked().await;
        };
        for _ in 0..UNLOCKED_RETRIES {
            match self.read_parsed(auth_file).await {
                Err(StoreError::Corrupt { .. }) => tokio::time::sleep(RETRY_PAUSE).await,
                other => return other,
            }
        }
        // Still unparsable: look again while no pi process can be writing.
        let guard = PiLock::acquire(auth_file, self.lock_wait).await?;
        let result = self.read_parsed(auth_file).await;
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
        let dir = self.lock_path().and_then(Path::parent);
        if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
            let owned = dir.to_owned();
            let created = within("piauthd-store-dir", IO_DEADLINE, move || ensure_dir(&owned))
                .await
                .map_err(|overdue| StoreError::Hung {
                    path: dir.to_owned(),
                    overdue,
                })?;
            created.and_then(|r| r).map_err(|source| StoreError::Io {
                store: dir.display().to_string(),
                action: "create",
                cause: source,
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
    async fn read_parsed(&self, auth_file: &Path) -> Result<Option<Document>, StoreError> {
        let path = auth_file.to_owned();
        let read = within("piauthd-store-read", IO_DEADLINE, move || {
            durable::read(&path)
        })
        .await
        .map_err(|overdue| StoreError::Hung {
            path: auth_file.to_owned(),
            overdue,
        })?
        .map_err(|source| StoreError::Io {
            store: self.describe(),
            action: "start a thread to read",
            cause: source,
        })?;
        let path = auth_file.to_owned();
        let bytes = read.map_err(|e| match e {
            ReadError::NotRegular { kind } => StoreError::NotRegular { path, kind },
            ReadError::TooLarge { size } => StoreError::TooLarge { path, size },
            ReadError::Io(source) => StoreError::Io {
                store: self.describe(),
                action: "read",
                cause: source,
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
            store: self.describe(),
            cause: source,
        });
        zeroize::Zeroize::zeroize(&mut bytes);
        parsed.map(Some)
    }
}
