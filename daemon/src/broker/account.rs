//! Logging in and out: the two other ways the broker writes the store.

use std::sync::Arc;

use super::{Broker, DEFAULT_PROVIDER, Phase, StoreHealth, now_ms};
use crate::oauth::{Claims, TokenResponse};
use crate::store::{Document, LockError, OAuthCredential, PiLock, StoreError};

/// Why a login's credential could not be stored, or a logout made.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "the token has no ChatGPT account id (claim https://api.openai.com/auth.chatgpt_account_id)"
    )]
    NoAccountId,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Broker {
    /// Stores the tokens of a completed login and starts serving them.
    /// `sent_at` is when the code exchange was sent (expiry counts from it).
    pub async fn install_login(
        self: &Arc<Self>,
        tokens: TokenResponse,
        claims: &Claims,
        sent_at: i64,
    ) -> Result<(), AccountError> {
        let account_id = claims.account_id.clone().ok_or(AccountError::NoAccountId)?;
        let (Some(refresh), Some(expires_in)) = (tokens.refresh_token, tokens.expires_in) else {
            return Err(AccountError::NoAccountId);
        };
        let lifetime = expires_in.saturating_mul(1000);
        let fresh = OAuthCredential {
            access: tokens.access_token,
            refresh,
            expires_ms: sent_at + lifetime,
            account_id: Some(account_id),
        };
        let _gate = self.gate.lock().await;
        let lock = match PiLock::acquire(self.store.path(), super::refresh::LOCK_WAIT).await {
            Ok(lock) => Some(lock),
            Err(LockError::Unwritable { .. }) => None,
            Err(e) => return Err(StoreError::Lock(e).into()),
        };
        // A corrupt file is never overwritten, not even by a login.
        let read = self.store.read_locked().await;
        let mut doc = match read {
            Ok(doc) => doc.unwrap_or_default(),
            Err(e) => {
                PiLock::release_logged(lock).await;
                return Err(e.into());
            }
        };
        if let Err(e) = self
            .save_and_publish(&mut doc, fresh, lifetime, now_ms(), false)
            .await
        {
            tracing::error!(error = %e, "logged in, but cannot save the tokens yet; keeping them in memory");
        }
        PiLock::release_logged(lock).await;
        tracing::info!("logged in to {DEFAULT_PROVIDER}");
        Ok(())
    }

    /// Removes `provider`'s entry under pi's lock, leaving every other entry
    /// as it was. Returns whether there was one.
    pub async fn logout(self: &Arc<Self>, provider: &str) -> Result<bool, StoreError> {
        let _gate = self.gate.lock().await;
        let lock = PiLock::acquire(self.store.path(), super::refresh::LOCK_WAIT).await?;
        let result = self.remove_locked(provider).await;
        PiLock::release_logged(Some(lock)).await;
        let Some((doc, removed)) = result? else {
            self.forget(provider);
            return Ok(false);
        };
        let was_in_memory = self.view().entry(provider).is_some();
        self.forget(provider);
        let now = now_ms();
        self.modify(|v| super::adopt_document(v, &doc, now));
        tracing::info!(provider, "logged out");
        Ok(removed || was_in_memory)
    }

    /// Removes `provider` from the file (the caller holds pi's lock).
    /// `None` when there is no file.
    async fn remove_locked(&self, provider: &str) -> Result<Option<(Document, bool)>, StoreError> {
        let Some(mut doc) = self.store.read_locked().await? else {
            return Ok(None);
        };
        let removed = doc.remove(provider);
        if removed {
            self.store
                .write(&doc)
                .await
                .map_err(|source| StoreError::Io {
                    path: self.store.path().to_owned(),
                    action: "write",
                    source,
                })?;
        }
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
