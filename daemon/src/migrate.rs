//! Moving the `openai-codex` login between `auth.json` and the OS keyring.
//!
//! Both stores are locked for the whole move, the copy is read back before
//! the original is removed, and other providers in `auth.json` stay as they
//! are. A failure at any step leaves the original in place.

use std::path::Path;

use crate::serving::{self, Holder, Serving, ServingError};
use crate::store::{
    Credential, CredentialStore, DEFAULT_WAIT, KeyringStore, StoreError, Unlockable,
};

/// The provider that moves.
const PROVIDER: &str = crate::shared::DEFAULT_PROVIDER;

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
    /// A daemon (or another move) holds one of the two stores: moving the
    /// login now would leave it serving a store that no longer has one.
    #[error("{}", served_message(store, holder, to))]
    Served {
        store: String,
        holder: Holder,
        /// The store the move was asked for (`file` or `keyring`).
        to: &'static str,
    },
    /// Whether a daemon serves the stores cannot be told, so nothing moves.
    #[error("cannot tell whether piauthd serves {store}, so nothing was moved: {reason}")]
    ServingUnknown { store: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What to do about a held store, for people.
fn served_message(store: &str, holder: &Holder, to: &str) -> String {
    let stop = if cfg!(target_os = "macos") {
        "launchctl bootout gui/$(id -u)/dev.piauthd"
    } else {
        "systemctl --user stop piauthd"
    };
    match holder.socket {
        Some(_) => format!(
            "{holder} is serving {store}: stop it first ({stop}), then run the move again, \
             and start it with --store {to}"
        ),
        None => format!("{holder} holds {store}: let it finish, then run the move again"),
    }
}

/// Takes both stores' serving locks for the move, refusing while a daemon
/// serves either. Held until the move ends, so no daemon starts on a store
/// half moved.
fn claim(
    state_dir: Option<&Path>,
    stores: [&CredentialStore; 2],
    direction: Direction,
) -> Result<Vec<Serving>, MigrateError> {
    let ids = stores.map(CredentialStore::identity);
    let names = || {
        ids.iter()
            .map(|id| id.key().to_owned())
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let Some(state_dir) = state_dir else {
        return Err(MigrateError::ServingUnknown {
            store: names(),
            reason: "neither XDG_STATE_HOME nor HOME is set".to_owned(),
        });
    };
    let to = match direction {
        Direction::ToKeyring => "keyring",
        Direction::ToFile => "file",
    };
    serving::claim_for_move(state_dir, &ids).map_err(|e| match e {
        ServingError::Busy { store, holder } => {
            // Named for people as status names it, not by its lock key.
            let store = ids
                .iter()
                .zip(stores)
                .find_map(|(id, s)| (id.key() == store).then(|| s.describe()))
                .unwrap_or(store);
            MigrateError::Served { store, holder, to }
        }
        e @ ServingError::Io { .. } => MigrateError::ServingUnknown {
            store: names(),
            reason: e.to_string(),
        },
    })
}

/// Moves the login. `auth_file` is pi's `auth.json`; `keyring_lock` is the
/// lock path keyring-mode daemons use; `state_dir` is piauthd's state
/// directory, where daemons mark the stores they serve. Refuses, before it
/// locks or reads anything, while a daemon serves either store.
pub async fn migrate(
    auth_file: &Path,
    keyring_lock: &Path,
    state_dir: Option<&Path>,
    direction: Direction,
) -> Result<(), MigrateError> {
    let file = CredentialStore::file(auth_file).with_lock_wait(DEFAULT_WAIT);
    let keyring = CredentialStore::keyring(keyring_lock, KeyringStore::default())
        .with_lock_wait(DEFAULT_WAIT);
    let _serving = claim(state_dir, [&file, &keyring], direction)?;
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
                store: keyring.describe(),
                action: "delete",
                cause: source,
            })?;
    } else {
        from.commit(&source).await?;
    }
    keyring_tx.finish().await;
    file_tx.finish().await;
    Ok(())
}
