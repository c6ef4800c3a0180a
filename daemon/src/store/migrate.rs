//! Moving the `openai-codex` login between `auth.json` and the OS keyring.
//!
//! Both stores are locked for the whole move, the copy is read back before
//! the original is removed, and other providers in `auth.json` stay as they
//! are. A failure at any step leaves the original in place.

use std::path::Path;

use super::{Credential, DEFAULT_WAIT, FileStore, KeyringStore, PiLock, StoreError};

/// The provider that moves.
const PROVIDER: &str = piauth_proto::DEFAULT_PROVIDER;

/// Which way to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToKeyring,
    ToFile,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("there is no {PROVIDER} login in {0} to move")]
    Nothing(String),
    #[error("the copy in {0} did not read back the same; the original was kept")]
    Mismatch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(store: &FileStore) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: store.path().to_owned(),
        action: "write",
        source,
    }
}

/// Moves the login. `auth_file` is pi's `auth.json`; `keyring_lock` is the
/// lock path keyring-mode daemons use.
pub async fn migrate(
    auth_file: &Path,
    keyring_lock: &Path,
    direction: Direction,
) -> Result<(), MigrateError> {
    let file = FileStore::new(auth_file);
    let keyring = FileStore::keyring(keyring_lock, KeyringStore::default());
    let _file_lock = PiLock::acquire(file.path(), DEFAULT_WAIT)
        .await
        .map_err(StoreError::from)?;
    let _keyring_lock = PiLock::acquire(keyring.path(), DEFAULT_WAIT)
        .await
        .map_err(StoreError::from)?;
    let (from, to) = match direction {
        Direction::ToKeyring => (&file, &keyring),
        Direction::ToFile => (&keyring, &file),
    };
    let mut source = from.read_locked().await?.unwrap_or_default();
    let Some(Credential::OAuth(cred)) = source.credential(PROVIDER) else {
        return Err(MigrateError::Nothing(from.describe()));
    };
    let mut target = to.read_locked().await?.unwrap_or_default();
    target.set_oauth(PROVIDER, &cred);
    to.write(&target).await.map_err(io(to))?;
    let back = to.read_locked().await?.unwrap_or_default();
    if back.credential(PROVIDER) != Some(Credential::OAuth(cred)) {
        return Err(MigrateError::Mismatch(to.describe()));
    }
    source.remove(PROVIDER);
    match direction {
        Direction::ToKeyring => from.write(&source).await.map_err(io(from))?,
        Direction::ToFile => {
            if source.providers().next().is_none() {
                KeyringStore::default().delete().await.map_err(io(from))?;
            } else {
                from.write(&source).await.map_err(io(from))?;
            }
        }
    }
    Ok(())
}
