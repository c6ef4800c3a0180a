//! Logging in and out: the two other ways the broker writes the store.

use super::inflight::InFlight;
use super::keeper::{Command, Keeper};
use super::{Broker, DEFAULT_PROVIDER, Phase, StoreHealth, TokenError};
use crate::oauth::{Claims, TokenResponse};
use crate::store::{
    CredentialStore, Document, OAuthCredential, StoreError, Transaction, Unlockable,
};

/// Why a login's credential could not be stored, or a logout made.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "the token has no ChatGPT account id (claim https://api.openai.com/auth.chatgpt_account_id)"
    )]
    NoAccountId,
    #[error("the issuer's answer lacks a refresh_token or expires_in")]
    IncompleteAnswer,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("piauthd is shutting down")]
    ShuttingDown,
    #[error("cannot record the unanswered refresh in {}: {cause}", path.display())]
    Record {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
}

impl Broker {
    /// Stores a credential of this account (a login's) and serves it.
    pub async fn install(
        &self,
        fresh: OAuthCredential,
        lifetime_ms: i64,
    ) -> Result<(), AccountError> {
        self.ask(|reply| Command::Install {
            fresh,
            lifetime_ms,
            reply,
        })
        .await
        .unwrap_or(Err(AccountError::ShuttingDown))
    }

    /// Removes `provider`'s entry under pi's lock, leaving every other entry
    /// as it was. Returns whether there was one.
    pub async fn logout(&self, provider: &str) -> Result<bool, TokenError> {
        let provider = provider.to_owned();
        let Some(removed) = self.ask(|reply| Command::Logout { provider, reply }).await else {
            return Err(super::shutting_down());
        };
        removed.map_err(|e| match e {
            StoreError::Corrupt { .. } => TokenError::StoreCorrupt {
                detail: e.to_string(),
            },
            e => TokenError::StoreUnavailable {
                detail: e.to_string(),
            },
        })
    }
}

/// Where the credential leaving a store goes in a [`Broker::swap`]: the
/// store of its own account, and that store's record of a refresh on the
/// wire.
#[derive(Debug)]
pub struct Slot {
    pub store: CredentialStore,
    pub inflight: InFlight,
}

impl Broker {
    /// Puts `incoming` (another account's credential) in this store and
    /// serves it. The credential it replaces is returned, and first written
    /// to `shelve`, so a crash in between leaves it in both places, never
    /// in neither. An outgoing refresh whose answer never came is recorded
    /// in the shelf's record too: no keeper ever sends that token again.
    pub async fn swap(
        &self,
        incoming: OAuthCredential,
        lifetime_ms: i64,
        shelve: Option<Slot>,
    ) -> Result<Option<OAuthCredential>, AccountError> {
        self.ask(|reply| Command::Swap {
            incoming,
            lifetime_ms,
            shelve,
            reply,
        })
        .await
        .unwrap_or(Err(AccountError::ShuttingDown))
    }
}

/// The credential a login's answer gives, and its lifetime. Pure.
pub fn login_credential(
    tokens: TokenResponse,
    claims: &Claims,
    sent_at: i64,
) -> Result<(OAuthCredential, i64), AccountError> {
    let account_id = claims.account_id.clone().ok_or(AccountError::NoAccountId)?;
    let (Some(refresh), Some(expires_in)) = (tokens.refresh_token, tokens.expires_in) else {
        return Err(AccountError::IncompleteAnswer);
    };
    let lifetime = expires_in.saturating_mul(1000);
    let fresh = OAuthCredential {
        access: tokens.access_token,
        refresh,
        expires_ms: sent_at + lifetime,
        account_id: Some(account_id),
    };
    Ok((fresh, lifetime))
}

impl Keeper {
    /// Stores a login's credential and starts serving it.
    pub(super) async fn install(
        &self,
        fresh: OAuthCredential,
        lifetime_ms: i64,
    ) -> Result<(), AccountError> {
        // A corrupt file is never overwritten, not even by a login.
        let mut tx = self
            .store
            .begin_waiting(super::refresh::LOCK_WAIT, Unlockable::Proceed)
            .await?;
        let on_disk = super::refresh::codex_refresh(&tx.document());
        let written = super::refresh::write_credential(&mut tx, &fresh).await;
        tx.finish().await;
        if let Err(e) = &written {
            tracing::error!(error = %e, "logged in, but cannot save the tokens yet; keeping them in memory");
        }
        self.publish(fresh, lifetime_ms, self.now_ms(), false, on_disk, &written);
        tracing::info!("logged in to {DEFAULT_PROVIDER}");
        Ok(())
    }

    /// The body of [`Broker::swap`], in the keeper's turn.
    pub(super) async fn swap(
        &self,
        incoming: OAuthCredential,
        lifetime_ms: i64,
        shelve: Option<Slot>,
    ) -> Result<Option<OAuthCredential>, AccountError> {
        let mut tx = self
            .store
            .begin_waiting(super::refresh::LOCK_WAIT, Unlockable::Proceed)
            .await?;
        let now = self.now_ms();
        // The newest outgoing credential: memory's while it is unsaved,
        // else the file's (another process may have refreshed it).
        if !self.view().refresh.unpersisted {
            let doc = tx.document();
            self.modify(|v| super::adopt_document(v, &doc, now));
        }
        let view = self.view();
        let outgoing = view.codex().cloned();
        if let (Some(slot), Some(out)) = (&shelve, &outgoing) {
            let unanswered = matches!(&view.refresh.phase,
                Phase::OutcomeUnknown { refresh_used, .. } if *refresh_used == out.refresh);
            if unanswered {
                slot.inflight
                    .begin(&out.refresh, now)
                    .await
                    .map_err(|e| AccountError::Record {
                        path: slot.inflight.path().to_owned(),
                        cause: e,
                    })?;
            }
            let shelved = slot
                .store
                .update(|doc| doc.set_oauth(DEFAULT_PROVIDER, out))
                .await;
            if let Err(e) = shelved {
                tx.finish().await;
                return Err(AccountError::Store(e));
            }
        }
        let on_disk = super::refresh::codex_refresh(&tx.document());
        let written = super::refresh::write_credential(&mut tx, &incoming).await;
        tx.finish().await;
        if let Err(e) = &written {
            tracing::error!(error = %e, "switched accounts, but cannot save the new one yet; keeping it in memory");
        }
        self.publish(incoming, lifetime_ms, now, false, on_disk, &written);
        Ok(outgoing)
    }

    /// Removes `provider` from the store and from memory.
    pub(super) async fn logout(&self, provider: &str) -> Result<bool, StoreError> {
        let mut tx = self
            .store
            .begin_waiting(super::refresh::LOCK_WAIT, Unlockable::Fail)
            .await?;
        let result = Self::remove_from(&mut tx, provider).await;
        tx.finish().await;
        let Some((doc, removed)) = result? else {
            self.forget(provider);
            return Ok(false);
        };
        let was_in_memory = self.view().entry(provider).is_some();
        self.forget(provider);
        let now = self.now_ms();
        self.modify(|v| super::adopt_document(v, &doc, now));
        tracing::info!(provider, "logged out");
        Ok(removed || was_in_memory)
    }
    /// Removes `provider` from the document of `tx`. `None` when there is
    /// no file.
    async fn remove_from(
        tx: &mut Transaction<'_>,
        provider: &str,
    ) -> Result<Option<(Document, bool)>, StoreError> {
        if !tx.exists() {
            return Ok(None);
        }
        let mut doc = tx.document();
        let removed = doc.remove(provider);
        tx.commit(&doc).await?;
        Ok(Some((doc, removed)))
    }

    /// Drops `provider` from memory (and any unsaved token of it).
    fn forget(&self, provider: &str) {
        self.modify(|v| {
            v.entries.retain(|(p, _)| p != provider);
            if provider == DEFAULT_PROVIDER {
                v.refresh = Default::default();
                v.refresh.phase = Phase::Idle;
                v.generation += 1;
                if v.health == StoreHealth::Degraded {
                    v.health = StoreHealth::Ok;
                    v.detail.clear();
                }
            }
        });
    }
}
