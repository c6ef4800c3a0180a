//! Logging in and out: the two other ways the broker writes the store.

use super::keeper::{Command, Keeper};
use super::{Broker, DEFAULT_PROVIDER, Phase, StoreHealth, TokenError};
use crate::oauth::{Claims, TokenResponse};
use crate::store::{Document, OAuthCredential, StoreError, Transaction, Unlockable};

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
}

impl Broker {
    /// Stores the tokens of a completed login and starts serving them.
    /// `sent_at` is when the code exchange was sent (expiry counts from it).
    pub async fn install_login(
        &self,
        tokens: TokenResponse,
        claims: &Claims,
        sent_at: i64,
    ) -> Result<(), AccountError> {
        let (fresh, lifetime_ms) = login_credential(tokens, claims, sent_at)?;
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

/// The credential a login's answer gives, and its lifetime. Pure.
fn login_credential(
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
