//! Several ChatGPT accounts, one of them active.
//!
//! pi's `auth.json` holds the active account, so pi still sees one login;
//! the others are on the [`Shelf`], one file each in piauthd's own data
//! directory. Every account has its own keeper ([`Broker`]): its own
//! single flight, refresh-ahead and needs-login state. Accounts are keyed
//! by the ChatGPT account id.
//!
//! A credential moves between stores only through [`Broker::swap`], which
//! writes the outgoing one to its shelf file before the incoming one
//! replaces it: a crash in between leaves an account in two places (the
//! next start keeps `auth.json`'s and deletes the shelf's copy), never in
//! none. The keeper of an account that moves is stopped first, so no two
//! keepers ever hold one refresh token.

mod changes;
mod choice;
mod sessions;
mod shelf;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

pub use choice::DEFAULT_RESERVE_PERCENT;

/// How long an account rests after a limit answer that says no reset.
const LIMIT_COOL_S: i64 = 60;
pub use shelf::{Shelf, ShelfError};

use crate::broker::{
    AccountError, Broker, DEFAULT_PROVIDER, Grant, Phase, ProviderState, TokenError, View, report,
};
use crate::store::off_runtime;
use crate::usage::UsageBook;
use choice::{Candidate, Choice};
use sessions::Pins;

/// One account, as `accounts` lists it. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub account_id: String,
    pub email: String,
    pub plan: String,
    /// The account in pi's `auth.json`.
    pub active: bool,
    pub state: ProviderState,
}

/// What a login did to the set of accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// The login is the active account: the first one, or a new login of
    /// the active account.
    Active,
    /// A new login of an account on the shelf; it stays there.
    Renewed,
    /// A new account, now active; `previous` (the one active before) is
    /// kept on the shelf.
    Beside { previous: String },
}

/// Why a change of accounts was refused. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(
        "no account {id} here; `pi-authctl accounts` lists them ({})",
        known_list(known)
    )]
    Unknown { id: String, known: Vec<String> },
    #[error(
        "account {id} cannot be used now ({reason}): log in to it again with `pi-authctl login`"
    )]
    Unusable { id: String, reason: String },
    #[error(transparent)]
    Shelf(#[from] ShelfError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("cannot remove the account: {detail}")]
    Logout { detail: String },
}

impl AccountsError {
    /// Whether a store is corrupt (and left untouched): fixing it is the
    /// user's part.
    pub fn store_corrupt(&self) -> bool {
        matches!(
            self,
            AccountsError::Account(AccountError::Store(
                crate::store::StoreError::Corrupt { .. }
            ))
        )
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "there are none".into()
    } else {
        format!("known: {}", known.join(", "))
    }
}

/// Every account's keeper, and the one change of the set at a time.
#[derive(Debug)]
pub struct Accounts {
    active: Arc<Broker>,
    shelf: Shelf,
    shelved: RwLock<BTreeMap<String, Arc<Broker>>>,
    /// Held for a whole change of the set (a login, `use`, `remove`), so
    /// two changes never interleave their moves.
    changing: tokio::sync::Mutex<()>,
    /// What is known of every account's limits (the relay keeps it).
    book: Arc<UsageBook>,
    /// Which account serves whom.
    choices: Mutex<Choices>,
    /// Counts switches of a session's account, so WatchToken streams
    /// choose again.
    switches: tokio::sync::watch::Sender<u64>,
}

/// The state of the choice of account.
#[derive(Debug, Default)]
struct Choices {
    pins: Pins,
    /// The account calls without a session were last served from.
    unpinned: Option<String>,
    /// `pi-authctl accounts use`'s account, until undone.
    preferred: Option<String>,
}

/// The ChatGPT account of a keeper's credential.
pub fn account_id(view: &View) -> Option<String> {
    let entry = view.entry(DEFAULT_PROVIDER)?;
    view.codex()?
        .account_id
        .clone()
        .or_else(|| entry.claims.as_ref()?.account_id.clone())
}

impl Accounts {
    /// Starts a keeper for each account on the shelf. A shelf copy of the
    /// active account (a move a crash interrupted) is deleted: `auth.json`
    /// holds the newer one.
    pub async fn open(active: Arc<Broker>, shelf: Shelf, book: Arc<UsageBook>) -> Arc<Accounts> {
        let listing = {
            let shelf = shelf.clone();
            off_runtime("piauthd-accounts", move || {
                (shelf.list(), shelf.preference())
            })
            .await
        };
        let (listing, preferred) = match listing {
            Ok((list, preferred)) => (Ok(list), preferred),
            Err(e) => (Err(e), None),
        };
        let names = match listing {
            Ok(Ok(names)) => names,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the other accounts are not served");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "the other accounts are not served");
                Vec::new()
            }
        };
        let active_id = account_id(&active.view());
        let mut shelved = BTreeMap::new();
        for name in names {
            if active_id.as_deref() == Some(name.as_str()) {
                tracing::warn!(account = %name, "the active account was also on the shelf (an interrupted switch); keeping auth.json's");
                changes::delete(&shelf, &name).await;
                continue;
            }
            let Ok(slot) = shelf.slot(&name) else {
                continue;
            };
            shelved.insert(name, shelf.start(slot).await);
        }
        Arc::new(Accounts {
            active,
            shelf,
            shelved: RwLock::new(shelved),
            changing: tokio::sync::Mutex::new(()),
            book,
            choices: Mutex::new(Choices {
                preferred,
                ..Choices::default()
            }),
            switches: tokio::sync::watch::Sender::new(0),
        })
    }

    /// A receiver that wakes whenever a session may have to move to
    /// another account (a switch, a limit, a preference).
    pub fn switches(&self) -> tokio::sync::watch::Receiver<u64> {
        self.switches.subscribe()
    }

    fn choices(&self) -> std::sync::MutexGuard<'_, Choices> {
        self.choices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keeper that serves `session` (empty: a call without one), and
    /// its account id: see [`choice`]. With one account, that account,
    /// limited or not (its own answers say so).
    pub fn choose(&self, session: &str) -> Result<Arc<Broker>, TokenError> {
        if self.read_shelved().is_empty() {
            return Ok(self.active.clone());
        }
        let keepers = self.keepers();
        let now_s = self.active.now_ms() / 1000;
        let views: Vec<_> = keepers.iter().map(|(_, k)| k.view()).collect();
        let candidates: Vec<Candidate<'_>> = keepers
            .iter()
            .zip(&views)
            .map(|((id, _), view)| Candidate {
                id,
                usable: view.codex().is_some() && usable(view).is_ok(),
                limited_until: self.book.limited_until(id, now_s),
                used_percent: self.book.used_percent(id),
            })
            .collect();
        let mut choices = self.choices();
        let pinned = if session.is_empty() {
            choices.unpinned.clone()
        } else {
            choices.pins.get(session)
        };
        let chosen = choice::choose(
            &candidates,
            pinned.as_deref(),
            choices.preferred.as_deref(),
            DEFAULT_RESERVE_PERCENT,
        );
        let id = match chosen {
            Choice::Account(id) => id,
            Choice::NoneUsable => return Ok(self.active.clone()),
            Choice::AllLimited { resets_at } => {
                return Err(TokenError::AllLimited {
                    resets_at,
                    when: crate::usage::reset_words(resets_at, now_s),
                });
            }
        };
        if pinned.as_deref() != Some(id.as_str()) {
            if session.is_empty() {
                choices.unpinned = Some(id.clone());
            } else {
                choices.pins.set(session, &id);
            }
            if let Some(from) = &pinned {
                tracing::info!(from = %from, to = %id, "moved to another account (the one before is limited or gone)");
                self.switches.send_modify(|n| *n += 1);
            }
        }
        drop(choices);
        let keeper = keepers
            .into_iter()
            .find_map(|(k_id, k)| (k_id == id).then_some(k));
        Ok(keeper.unwrap_or_else(|| self.active.clone()))
    }

    /// A token of `provider` for `session` (see [`Accounts::choose`]);
    /// other providers are the active store's.
    pub async fn get_token(
        &self,
        session: &str,
        provider: &str,
        min_valid_secs: u32,
    ) -> Result<Grant, TokenError> {
        if provider != DEFAULT_PROVIDER {
            return self.active.get_token(provider, min_valid_secs).await;
        }
        self.choose(session)?
            .get_token(provider, min_valid_secs)
            .await
    }

    /// A limit answer for `account`: nothing goes to it before `resets_at`
    /// (epoch seconds), or for [`LIMIT_COOL_S`] when the answer said no
    /// reset ahead; its sessions move on at their next call.
    pub fn note_limit(&self, account: &str, resets_at: Option<i64>) {
        let now_s = self.active.now_ms() / 1000;
        let until_s = resets_at
            .filter(|&t| t > now_s)
            .unwrap_or(now_s + LIMIT_COOL_S);
        let was = self.book.limited_until(account, now_s);
        self.book.note_limit(account, until_s, now_s);
        if was.is_none() {
            tracing::info!(
                account,
                resets_at = until_s,
                "an account reached its usage limit"
            );
            self.switches.send_modify(|n| *n += 1);
        }
    }

    /// The keeper of the account in `auth.json`.
    pub fn active(&self) -> &Arc<Broker> {
        &self.active
    }

    fn read_shelved(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Broker>>> {
        self.shelved.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_shelved(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Broker>>> {
        self.shelved.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every account's keeper, the active one first.
    pub fn keepers(&self) -> Vec<(String, Arc<Broker>)> {
        let mut out = Vec::new();
        if let Some(id) = account_id(&self.active.view()) {
            out.push((id, self.active.clone()));
        }
        out.extend(
            self.read_shelved()
                .iter()
                .map(|(id, b)| (id.clone(), b.clone())),
        );
        out
    }

    /// Every account, the active one first.
    pub fn list(&self) -> Vec<AccountInfo> {
        self.keepers()
            .into_iter()
            .map(|(id, keeper)| info(id, &keeper, Arc::ptr_eq(&keeper, &self.active)))
            .collect()
    }

    /// Whether `id` is one of the accounts kept.
    pub fn knows(&self, id: &str) -> bool {
        self.keepers().iter().any(|(k, _)| k == id)
    }

    /// The error for an account that is not kept.
    pub fn unknown(&self, id: &str) -> AccountsError {
        AccountsError::Unknown {
            id: id.to_owned(),
            known: self.keepers().into_iter().map(|(n, _)| n).collect(),
        }
    }

    /// Stops every shelved account's keeper (the active one is the
    /// server's). Called at shutdown.
    pub async fn quiesce_shelf(&self) {
        let keepers: Vec<_> = self.read_shelved().values().cloned().collect();
        for keeper in keepers {
            keeper.quiesce().await;
        }
    }
}

/// Whether a keeper's credential can move into `auth.json`: not while its
/// login must be renewed, nor while a refresh of it went unanswered (that
/// token may be spent). Pure.
fn usable(view: &View) -> Result<(), String> {
    match &view.refresh.phase {
        Phase::NeedsLogin { reason, .. } | Phase::OutcomeUnknown { reason, .. } => {
            Err(reason.clone())
        }
        Phase::Idle | Phase::Refreshing => Ok(()),
    }
}

fn info(account_id: String, keeper: &Broker, active: bool) -> AccountInfo {
    let view = keeper.view();
    let codex = report(&view, keeper.now_ms())
        .into_iter()
        .find(|r| r.provider == DEFAULT_PROVIDER);
    AccountInfo {
        account_id,
        email: codex.as_ref().map(|r| r.email.clone()).unwrap_or_default(),
        plan: codex.as_ref().map(|r| r.plan.clone()).unwrap_or_default(),
        active,
        state: codex.map_or(ProviderState::NotLoggedIn, |r| r.state),
    }
}
