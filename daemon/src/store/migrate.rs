//! Moving the `openai-codex` login between `auth.json` and the OS keyring.
//!
//! Both stores are locked for the whole move, the copy is read back before
//! the original is removed, and other providers in `auth.json` stay as they
//! are. A failure at any step leaves the original in place.

use std::path::Path;

use super::{Credential, DEFAULT_WAIT, FileStore, KeyringStore, StoreError, Unlockable};

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

/// Moves the login. `auth_file` is pi's `auth.json`; `keyring_lock` is the
/// lock path keyring-mode daemons use.
pub async fn migrate(
    auth_file: &Path,
    keyring_lock: &Path,
    direction: Direction,
) -> Result<(), MigrateError> {
    let file = FileStore::new(auth_file).with_lock_wait(DEFAULT_WAIT);
    let keyring =
        FileStore::keyring(keyring_lock, KeyringStore::default()).with_lock_wait(DEFAULT_WAIT);
    // Both stores are locked for the whole move, the file first: every
    // mover takes them in this order, so two moves cannot deadlock.
    let mut file_tx = file.begin(Unlockable::Fail).await?;
    let mut keyring_tx = keyring.begin(Unlockable::Fail).await?;
    let (from, to) = match direction {
        Direction::ToKeyring => (&mut file_tx, &mut keyring_tx),
        Direction::ToFile => (&mut keyring_tx, &mut file_tx),
    };
    let (from_name, to_name) = match direction {
        Direction::ToKeyring => (file.describe(), keyring.describe()),
        Direction::ToFile => (keyring.describe(), file.describe()),
    };
    let mut source = from.document();
    let Some(Credential::OAuth(cred)) = source.credential(PROVIDER) else {
        return Err(MigrateError::Nothing(from_name));
    };
    let mut target = to.document();
    target.set_oauth(PROVIDER, &cred);
    to.commit(&target).await?;
    let back = to.reread().await?;
    if back.credential(PROVIDER) != Some(Credential::OAuth(cred)) {
        return Err(MigrateError::Mismatch(to_name));
    }
    source.remove(PROVIDER);
    if direction == Direction::ToFile && source.providers().next().is_none() {
        KeyringStore::default()
            .delete()
            .await
            .map_err(|source| StoreError::Io {
                path: keyring.path().to_owned(),
                action: "delete the keyring item locked by",
                source,
            })?;
    } else {
        from.commit(&source).await?;
    }
    keyring_tx.finish().await;
    file_tx.finish().await;
    Ok(())
}
