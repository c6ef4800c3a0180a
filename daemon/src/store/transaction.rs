//! The store's one transaction: lock, re-read, modify, durable write.
//!
//! Every writer of the credentials (refresh, login, logout, migrate) goes
//! through a [`Transaction`], and the store's raw read and write are private
//! to this module's parent, so no caller can write without pi's lock or
//! without re-reading what another process may have written meanwhile.
//!
//! A transaction may be paused around a slow step (a refresh on the wire):
//! pi's lock directory is given back while piauthd's own queue (the sidecar
//! flock) stays held, and [`Transaction::resume`] re-takes the lock and
//! re-reads the document before anything is written.

use std::time::Duration;

use super::{CredentialStore, Document, LockError, PiLock, StoreError};

/// How a transaction treats a directory nobody can lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlockable {
    /// Fail with [`LockError::Unwritable`].
    Fail,
    /// Go on without the lock: no process, pi included, can take it or
    /// write the file, so nobody can race us. Used to keep serving a token
    /// refreshed while the disk is full or read-only.
    Proceed,
}

/// A held lock on the store and the document read under it.
#[derive(Debug)]
pub struct Transaction<'s> {
    store: &'s CredentialStore,
    /// `None` when the directory cannot be locked by anyone
    /// ([`Unlockable::Proceed`]).
    lock: Option<PiLock>,
    /// The document as last read or written under the lock; `None` when
    /// there is no file.
    doc: Option<Document>,
}

impl CredentialStore {
    /// Takes pi's lock and reads the document under it. A corrupt file is
    /// an error: it is never overwritten.
    pub async fn begin(&self, unlockable: Unlockable) -> Result<Transaction<'_>, StoreError> {
        self.begin_waiting(self.lock_wait, unlockable).await
    }

    /// [`CredentialStore::begin`], waiting up to `wait` for the lock.
    pub async fn begin_waiting(
        &self,
        wait: Duration,
        unlockable: Unlockable,
    ) -> Result<Transaction<'_>, StoreError> {
        let acquired = match self.lock_path() {
            Some(path) => Some(PiLock::acquire(path, wait).await),
            None => None,
        };
        let lock = match acquired {
            None => None,
            Some(Ok(lock)) => Some(lock),
            Some(Err(e @ LockError::Unwritable { .. })) if unlockable == Unlockable::Proceed => {
                tracing::warn!(error = %e, "going on without pi's lock");
                None
            }
            Some(Err(e)) => return Err(e.into()),
        };
        let mut tx = Transaction {
            store: self,
            lock,
            doc: None,
        };
        // On error the transaction drops here, which releases the lock.
        tx.doc = self.read_locked().await?;
        Ok(tx)
    }
}

impl Transaction<'_> {
    /// The document as read under the lock (`{}` when there is no file).
    pub fn document(&self) -> Document {
        self.doc.clone().unwrap_or_default()
    }

    /// Whether the file (or keyring item) existed when last read.
    pub fn exists(&self) -> bool {
        self.doc.is_some()
    }

    /// Whether pi's lock is held (it is not when nobody can lock the
    /// directory, or while paused).
    pub fn is_locked(&self) -> bool {
        self.lock.as_ref().is_some_and(PiLock::holds_dir)
    }

    /// Writes `doc` durably, unless it equals what is stored. The lock stays
    /// held: a caller may commit again, or re-read.
    pub async fn commit(&mut self, doc: &Document) -> Result<(), StoreError> {
        if self.doc.as_ref() == Some(doc) {
            return Ok(());
        }
        if self.lock.as_ref().is_some_and(|l| !l.holds_dir()) {
            return Err(StoreError::Paused);
        }
        self.store
            .write(doc)
            .await
            .map_err(|source| StoreError::Io {
                store: self.store.describe(),
                action: "write",
                cause: source,
            })?;
        self.doc = Some(doc.clone());
        Ok(())
    }

    /// Reads the document again under the lock (a read-back after a write).
    pub async fn reread(&mut self) -> Result<Document, StoreError> {
        self.doc = self.store.read_locked().await?;
        Ok(self.document())
    }

    /// Whether [`Transaction::pause`] would give pi's lock back: only with
    /// piauthd's queue (the sidecar flock) to keep other daemons out.
    pub fn can_pause(&self) -> bool {
        self.lock.as_ref().is_some_and(PiLock::can_pause)
    }

    /// Gives pi's lock directory back while keeping piauthd's queue. A
    /// transaction that cannot pause stays as it is.
    pub async fn pause(&mut self) -> Result<(), StoreError> {
        if let Some(lock) = self.lock.take() {
            let path = lock.path().to_owned();
            let paused = lock.pause().await.map_err(|source| LockError::Io {
                path,
                cause: source,
            })?;
            self.lock = Some(paused);
        }
        Ok(())
    }

    /// Takes pi's lock again after [`Transaction::pause`] and re-reads the
    /// document: pi may have written it meanwhile.
    pub async fn resume(&mut self) -> Result<Document, StoreError> {
        if let Some(lock) = self.lock.take() {
            self.lock = Some(lock.resume(self.store.lock_wait).await?);
        }
        self.reread().await
    }

    /// Ends the transaction and releases the lock, logging a failure to
    /// remove pi's lock directory (the write itself has landed).
    pub async fn finish(self) {
        PiLock::release_logged(self.lock).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OAuthCredential, lock_path};

    fn cred(refresh: &str) -> OAuthCredential {
        OAuthCredential {
            access: String::from("acc").into(),
            refresh: refresh.to_owned().into(),
            expires_ms: 1,
            account_id: None,
        }
    }

    #[tokio::test]
    async fn commit_writes_only_a_change_and_pause_gives_the_lock_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, br#"{"other":{"type":"api_key","key":"k"}}"#).unwrap();
        let store = CredentialStore::file(&path);
        let lock_dir = lock_path(&path).unwrap();

        let mut tx = store.begin(Unlockable::Fail).await.unwrap();
        assert!(tx.is_locked() && lock_dir.is_dir());
        let mut doc = tx.document();
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        tx.commit(&doc).await.unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before,
            "an unchanged document is not rewritten"
        );

        assert!(tx.can_pause());
        tx.pause().await.unwrap();
        assert!(!lock_dir.exists(), "paused: pi may take its lock");
        assert!(!tx.is_locked());
        doc.set_oauth("openai-codex", &cred("r1"));
        let refused = tx.commit(&doc).await.unwrap_err();
        assert!(matches!(refused, StoreError::Paused), "{refused}");

        // Meanwhile pi writes the file.
        std::fs::write(&path, br#"{"pi":{"type":"api_key","key":"p"}}"#).unwrap();
        let seen = tx.resume().await.unwrap();
        assert!(lock_dir.is_dir());
        assert!(seen.credential("pi").is_some(), "resume re-reads");
        tx.commit(&doc).await.unwrap();
        tx.finish().await;
        assert!(!lock_dir.exists());
        let stored = Document::parse(&std::fs::read(&path).unwrap()).unwrap();
        assert!(stored.credential("openai-codex").is_some());
    }

    #[tokio::test]
    async fn a_paused_transaction_keeps_other_daemons_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, b"{}").unwrap();
        let store = CredentialStore::file(&path).with_lock_wait(Duration::from_millis(300));
        let mut tx = store.begin(Unlockable::Fail).await.unwrap();
        tx.pause().await.unwrap();
        let other = CredentialStore::file(&path).with_lock_wait(Duration::from_millis(300));
        let queued = other.begin(Unlockable::Fail).await.unwrap_err();
        assert!(
            matches!(queued, StoreError::Lock(LockError::Timeout { .. })),
            "{queued}"
        );
        tx.finish().await;
        other.begin(Unlockable::Fail).await.unwrap().finish().await;
    }

    #[tokio::test]
    async fn a_corrupt_file_ends_the_transaction_and_frees_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, b"{not json").unwrap();
        let store = CredentialStore::file(&path);
        let err = store.begin(Unlockable::Fail).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(!lock_path(&path).unwrap().exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
    }
}
