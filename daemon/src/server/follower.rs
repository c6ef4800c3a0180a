//! A follower's start-up, serving and shutdown (`piauthd --follow`).
//!
//! A follower binds its socket like an owner, but opens no store for
//! writing, runs no keeper and calls no issuer: it reads its own store
//! once, only to refuse a copied login, then serves the owner's tokens
//! through [`crate::rpc::FollowerAuth`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{DRAIN_LIMIT, Listen, RunError};
use crate::config::{Config, FollowTarget, StoreKind};
use crate::forward::{ForwardSpec, ForwardState};
use crate::rpc::{FollowerAuth, FollowerCompletions, LinkSpec};
use crate::shared::DEFAULT_PROVIDER;
use crate::store::{Credential, CredentialStore};

/// Where a follower reaches the owner's socket through its own forward:
/// beside its socket, so in its own 0700 directory.
pub fn forwarded_socket(own: &Path) -> PathBuf {
    let mut name = own.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

/// The account of a login kept in this machine's file store, if any.
/// (A keyring-mode follower keeps nothing: its target is what it serves.)
async fn local_account(config: &Config) -> Option<String> {
    if config.store != StoreKind::File || !config.auth_file.exists() {
        return None;
    }
    let store = CredentialStore::file(&config.auth_file);
    match store.load().await {
        Ok(Some(doc)) => match doc.credential(DEFAULT_PROVIDER) {
            Some(Credential::OAuth(c)) => c.account_id,
            _ => None,
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this machine's auth.json to look for a copied login");
            None
        }
    }
}

/// Runs a follower of `target` until `shutdown`.
pub async fn run(
    config: Config,
    target: FollowTarget,
    listen: Listen,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let uid = rustix::process::geteuid().as_raw();
    let (listener, bound) = super::listen_on(&config, listen, uid)?;
    let (owner_socket, forward) = match &target {
        FollowTarget::Socket(path) => {
            let same = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
            if same(path) == same(bound.path()) {
                return Err(RunError::FollowSelf(path.clone()));
            }
            (path.clone(), None)
        }
        FollowTarget::Ssh(ssh) => {
            let spec = ForwardSpec {
                ssh: config.ssh.clone(),
                target: ssh.clone(),
                local: forwarded_socket(bound.path()),
            };
            let (tx, rx) = watch::channel(ForwardState::Starting);
            let local = spec.local.clone();
            tokio::spawn(crate::forward::run(spec, tx, shutdown.child_token()));
            (local, Some(rx))
        }
    };
    let (link, fatal) = crate::rpc::start_link(
        LinkSpec {
            target: target.to_string(),
            socket: owner_socket,
            forward,
            local_account: local_account(&config).await,
        },
        shutdown.child_token(),
    );
    tracing::info!(socket = %bound.path().display(), owner = %target, "piauthd follows its owner");
    crate::supervisor::notify(&format!(
        "READY=1\nSTATUS=following {target} on {}",
        bound.path().display()
    ));
    let serving = shutdown.child_token();
    let serve = crate::rpc::serve_services(
        listener,
        FollowerAuth::new(
            link.clone(),
            bound.path().display().to_string(),
            serving.clone(),
        ),
        FollowerCompletions::new(link),
        crate::rpc::Serving {
            about: crate::rpc::About::default(),
            own_uid: uid,
            idle_timeout: Duration::from_secs(config.connection_idle_secs),
        },
        serving.clone(),
    );
    tokio::pin!(serve);
    let mut refused = None;
    let result = tokio::select! {
        r = &mut serve => r,
        why = fatal => {
            if let Ok(why) = why {
                refused = Some(why);
            }
            serving.cancel();
            (&mut serve).await
        }
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_LIMIT).await;
        } => Ok(()),
    };
    serving.cancel();
    bound.remove();
    if let Some(why) = refused {
        return Err(RunError::CopiedLogin(why));
    }
    tracing::info!("piauthd stopped");
    result.map_err(RunError::from)
}
