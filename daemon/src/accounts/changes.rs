//! Changes of the set of accounts: a login that adds or renews one, `use`,
//! `remove`, and the moves between `auth.json` and the shelf they make.
//! One change at a time (`Accounts::changing`).

use super::{Accounts, AccountsError, Added, Shelf, account_id, usable};
use crate::broker::{AccountError, DEFAULT_PROVIDER, login_credential};
use crate::oauth::{Claims, TokenResponse};
use crate::store::off_runtime;

impl Accounts {
    /// Stores a completed login: the active account's, a shelved one's,
    /// or a new account's, which becomes active while the one before is
    /// kept on the shelf.
    pub async fn install_login(
        &self,
        tokens: TokenResponse,
        claims: &Claims,
        sent_at: i64,
    ) -> Result<Added, AccountsError> {
        let (fresh, lifetime_ms) = login_credential(tokens, claims, sent_at)?;
        let id = fresh.account_id.clone().ok_or(AccountError::NoAccountId)?;
        let _change = self.changing.lock().await;
        let active_id = account_id(&self.active.view());
        if active_id.is_none() || active_id.as_deref() == Some(id.as_str()) {
            self.active.install(fresh, lifetime_ms).await?;
            return Ok(Added::Active);
        }
        let shelved = self.read_shelved().get(&id).cloned();
        if let Some(keeper) = shelved {
            keeper.install(fresh, lifetime_ms).await?;
            return Ok(Added::Renewed);
        }
        let previous = active_id.unwrap_or_default();
        let slot = self.shelf.slot(&previous)?;
        self.active.swap(fresh, lifetime_ms, Some(slot)).await?;
        self.shelve(&previous).await?;
        tracing::info!(account = %id, previous = %previous, "added an account; the one before is kept");
        Ok(Added::Beside { previous })
    }

    /// Starts the keeper of `account`, just written to the shelf.
    async fn shelve(&self, account: &str) -> Result<(), AccountsError> {
        let keeper = self.shelf.start(self.shelf.slot(account)?).await;
        self.write_shelved().insert(account.to_owned(), keeper);
        Ok(())
    }

    /// Makes `id` the active account: it moves into `auth.json`, and the
    /// one there moves to the shelf.
    pub async fn use_account(&self, id: &str) -> Result<(), AccountsError> {
        let _change = self.changing.lock().await;
        let active_id = account_id(&self.active.view());
        if active_id.as_deref() == Some(id) {
            return Ok(());
        }
        let shelve = match &active_id {
            Some(a) => Some(self.shelf.slot(a)?),
            None => None,
        };
        self.promote(id, shelve).await?;
        if let Some(previous) = active_id {
            self.shelve(&previous).await?;
        }
        self.prefer(Some(id)).await;
        tracing::info!(account = %id, "switched the active account");
        Ok(())
    }

    /// Sets (or with `None`, undoes) the preference for one account.
    pub async fn prefer(&self, account: Option<&str>) {
        self.choices().preferred = account.map(str::to_owned);
        self.switches.send_modify(|n| *n += 1);
        let (shelf, account) = (self.shelf.clone(), account.map(str::to_owned));
        let saved = off_runtime("piauthd-accounts", move || {
            shelf.set_preference(account.as_deref())
        })
        .await;
        if let Ok(Err(e)) | Err(e) = saved {
            tracing::warn!(error = %e, "cannot save the preferred account; it holds until piauthd stops");
        }
    }

    /// Removes `id`: a shelved account's file goes; the active account is
    /// replaced by the first usable shelved one, or logged out when there
    /// is none.
    pub async fn remove(&self, id: &str) -> Result<(), AccountsError> {
        let _change = self.changing.lock().await;
        if account_id(&self.active.view()).as_deref() == Some(id) {
            let next = self
                .read_shelved()
                .iter()
                .find(|(_, k)| usable(&k.view()).is_ok())
                .map(|(n, _)| n.clone());
            match next {
                Some(next) => self.promote(&next, None).await?,
                None => {
                    self.active.logout(DEFAULT_PROVIDER).await.map_err(|e| {
                        AccountsError::Logout {
                            detail: e.to_string(),
                        }
                    })?;
                }
            }
            self.forget(id).await;
            tracing::info!(account = %id, "removed the active account");
            return Ok(());
        }
        let keeper = self.write_shelved().remove(id);
        let Some(keeper) = keeper else {
            return Err(self.unknown(id));
        };
        keeper.quiesce().await;
        delete(&self.shelf, id).await;
        self.forget(id).await;
        tracing::info!(account = %id, "removed an account");
        Ok(())
    }

    /// Moves shelved `id` into `auth.json`, writing the outgoing account
    /// to `shelve` (none: it is dropped). Its keeper stops first; if the
    /// move fails, it starts again.
    async fn promote(
        &self,
        id: &str,
        shelve: Option<crate::broker::Slot>,
    ) -> Result<(), AccountsError> {
        let keeper = self.read_shelved().get(id).cloned();
        let Some(keeper) = keeper else {
            return Err(self.unknown(id));
        };
        usable(&keeper.view()).map_err(|reason| AccountsError::Unusable {
            id: id.to_owned(),
            reason,
        })?;
        keeper.quiesce().await;
        let view = keeper.view();
        let moved = match view.codex().cloned() {
            Some(cred) => self
                .active
                .swap(cred, view.refresh.lifetime_ms, shelve)
                .await
                .map_err(AccountsError::from),
            None => Err(AccountsError::Unusable {
                id: id.to_owned(),
                reason: "it holds no login".into(),
            }),
        };
        if let Err(e) = moved {
            self.shelve(id).await?;
            return Err(e);
        }
        self.write_shelved().remove(id);
        delete(&self.shelf, id).await;
        Ok(())
    }

    /// Drops every pin to, and a preference for, removed `id`.
    async fn forget(&self, id: &str) {
        let preferred = {
            let mut choices = self.choices();
            choices.pins.forget(id);
            if choices.unpinned.as_deref() == Some(id) {
                choices.unpinned = None;
            }
            choices.preferred.as_deref() == Some(id)
        };
        if preferred {
            self.prefer(None).await;
        }
    }
}

/// Deletes a shelf file, logging a failure: the next start removes a
/// copy of the active account anyway.
pub(super) async fn delete(shelf: &Shelf, account: &str) {
    let (shelf, name) = (shelf.clone(), account.to_owned());
    let deleted = off_runtime("piauthd-accounts", move || shelf.delete(&name)).await;
    if let Ok(Err(e)) | Err(e) = deleted {
        tracing::warn!(error = %e, account, "cannot delete the account's shelf file");
    }
}
