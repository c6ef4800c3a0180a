//! The broker owns the credentials in memory and every decision about them.
//!
//! * **Hot path.** GetToken reads an immutable snapshot ([`View`]) from a
//!   `watch` channel: no file I/O, no JSON parsing, no lock held across an
//!   await. In steady state the token is always fresh, because refreshes
//!   are scheduled ahead of expiry ([`policy`]).
//! * **Single flight.** Every refresh, whoever asks for it (the schedule, a
//!   caller whose token is too short, an explicit Refresh), is a command to
//!   the one task that owns the credential ([`keeper`]). Callers that asked
//!   while a refresh ran share its result, so N concurrent callers cause
//!   one upstream request.
//! * **Across processes.** A refresh holds pi's lock directory, re-reads
//!   `auth.json`, and adopts a token another process already rotated
//!   instead of calling the issuer.
//! * **Durability first.** The rotated token is fsync'd before anyone is
//!   served from it; if that fails the broker keeps it in memory, reports
//!   `degraded`, and retries the write.
//!
//! The broker is the only writer of the store.

mod account;
pub mod clock;
mod grant;
pub mod inflight;
mod keeper;
mod need;
mod policy;
mod refresh;
mod report;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::oauth::TokenResponse;
use crate::oauth::{self, Claims};
use crate::secret::Secret;
use crate::store::{Credential, CredentialStore, Document, OAuthCredential};
use crate::upstream::{Issuer, RefreshError};
pub use clock::Clock;

pub use account::{AccountError, Slot, login_credential};
pub use grant::{Decision, current_grant, decide, grant_static};
use grant::{answers_from_snapshot, describe_remaining, grant_codex, unavailable};
pub use keeper::Duties;
use keeper::Keeper;
pub use policy::{DEFAULT_LEAD_MS, MAX_MIN_VALID_MS, effective_min_valid_ms, refresh_at};
pub use report::{CredentialKind, ProviderState, report};

/// The provider piauthd refreshes.
pub use crate::shared::DEFAULT_PROVIDER;

/// How the store looked at the last read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHealth {
    Ok,
    /// No `auth.json` yet.
    Missing,
    /// `auth.json` does not parse; it is left untouched.
    Corrupt,
    /// `auth.json` cannot be read.
    Unreadable,
    /// A rotated token could not be written; it is kept in memory and the
    /// write is retried.
    Degraded,
}

/// One provider's credential as last read, with its JWT claims.
#[derive(Debug, Clone)]
pub struct Entry {
    pub credential: Credential,
    /// Claims of an OAuth access token, when it is a readable JWT.
    pub claims: Option<Claims>,
}

/// Where the refresh of the default provider stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Idle,
    Refreshing,
    /// The issuer rejected `refresh_used` for good. Nothing is sent again
    /// until a login or another process puts a different token in place.
    NeedsLogin {
        refresh_used: Secret<String>,
        reason: String,
    },
    /// `refresh_used` was sent but no answer came back; the issuer may have
    /// spent it, so it is never re-sent automatically. The current access
    /// token is served until it expires.
    OutcomeUnknown {
        refresh_used: Secret<String>,
        reason: String,
    },
}

impl Phase {
    /// Why refreshing stopped, for a parked phase; empty otherwise.
    pub fn reason(&self) -> &str {
        match self {
            Phase::NeedsLogin { reason, .. } | Phase::OutcomeUnknown { reason, .. } => reason,
            Phase::Idle | Phase::Refreshing => "",
        }
    }
}

/// Refresh bookkeeping for the default provider, shown in Status.
#[derive(Debug, Clone)]
pub struct RefreshState {
    pub phase: Phase,
    /// How far ahead of expiry a long-lived token is refreshed (configured;
    /// capped at half the lifetime, see [`policy`]).
    pub lead_ms: i64,
    /// Lifetime of the current access token.
    pub lifetime_ms: i64,
    /// When this daemon last obtained a token from the issuer; `None`:
    /// never.
    pub last_refresh_ms: Option<i64>,
    pub refresh_count: u32,
    /// Completed refresh attempts, so callers that asked while one ran can
    /// share its outcome.
    pub attempts: u64,
    /// Consecutive transient failures.
    pub failures: u32,
    /// No automatic attempt before this time (backoff); `None`: no backoff.
    pub retry_at_ms: Option<i64>,
    pub last_error: String,
    /// The current credential is newer than what is on disk.
    pub unpersisted: bool,
    /// Refresh tokens this daemon has rotated away (most recent last). A
    /// file that brings one back (an old copy restored) is stale: the
    /// current token is kept and written over it, never the spent one
    /// adopted, because presenting it would revoke the login.
    pub spent: Vec<Secret<String>>,
    /// While unpersisted: the refresh token that was on disk when ours
    /// failed to save. Ours replaces only that; anything else on disk was
    /// put there by someone else (a new login) and wins.
    pub superseded: Option<Secret<String>>,
}

impl Default for RefreshState {
    fn default() -> RefreshState {
        RefreshState {
            phase: Phase::default(),
            lead_ms: DEFAULT_LEAD_MS,
            lifetime_ms: 0,
            last_refresh_ms: None,
            refresh_count: 0,
            attempts: 0,
            failures: 0,
            retry_at_ms: None,
            last_error: String::new(),
            unpersisted: false,
            spent: Vec::new(),
            superseded: None,
        }
    }
}

/// An immutable snapshot of everything the broker knows.
#[derive(Debug, Clone)]
pub struct View {
    pub health: StoreHealth,
    /// Why the store is not OK, for people. Never contains a token.
    pub detail: String,
    /// Providers in file order. Kept from the last good read while the
    /// file is corrupt or unreadable, so a bad edit does not log anyone out.
    pub entries: Vec<(String, Entry)>,
    pub refresh: RefreshState,
    /// Increases whenever the default provider's access token changes.
    pub generation: u64,
    /// Completed reads of the store, so callers that asked for one at the
    /// same time share it.
    pub loads: u64,
}

impl View {
    pub fn entry(&self, provider: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find_map(|(p, e)| (p == provider).then_some(e))
    }

    /// The default provider's OAuth credential, if any.
    pub fn codex(&self) -> Option<&OAuthCredential> {
        match self.entry(DEFAULT_PROVIDER).map(|e| &e.credential) {
            Some(Credential::OAuth(c)) => Some(c),
            _ => None,
        }
    }

    /// When the default provider's token should next be refreshed
    /// automatically; `None` when nothing should happen on its own.
    pub fn next_refresh_ms(&self) -> Option<i64> {
        let cred = self.codex()?;
        if matches!(
            self.refresh.phase,
            Phase::NeedsLogin { .. } | Phase::OutcomeUnknown { .. }
        ) {
            return None;
        }
        let at = refresh_at(
            cred.expires_ms,
            self.refresh.lifetime_ms,
            self.refresh.last_refresh_ms,
            self.refresh.lead_ms,
        );
        Some(self.refresh.retry_at_ms.map_or(at, |retry| at.max(retry)))
    }
}

/// A token handed to a client.
#[derive(Debug, Clone)]
pub struct Grant {
    pub provider: String,
    pub access: Secret<String>,
    /// 0 for credentials without expiry.
    pub expires_at_ms: i64,
    pub account_id: String,
    /// The snapshot generation the token came from (see [`View::generation`]).
    pub generation: u64,
}

/// Why no token can be served. Messages are for people and never contain a
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not logged in to {provider}: run `pi-authctl login`")]
    NotLoggedIn { provider: String },
    #[error("the {provider} login must be renewed ({reason}): run `pi-authctl login`")]
    NeedsLogin { provider: String, reason: String },
    #[error("{detail}")]
    StoreCorrupt { detail: String },
    #[error("{detail}")]
    StoreUnavailable { detail: String },
    #[error("the {provider} access token {when}, and it cannot be refreshed right now: {reason}")]
    Unavailable {
        provider: String,
        when: String,
        reason: String,
    },
    #[error(
        "the {provider} access token {when}; piauthd does not refresh {provider} \
         (pi refreshes it), or run `pi-authctl login`"
    )]
    Expiring { provider: String, when: String },
    #[error("the {provider} entry in auth.json is unusable: {reason}")]
    Unusable { provider: String, reason: String },
    #[error(
        "every ChatGPT account piauthd keeps has reached its usage limit{when}; add another \
         with `pi-authctl login`, or wait (`pi-authctl usage` shows each reset)"
    )]
    AllLimited {
        /// The earliest reset, epoch seconds.
        resets_at: Option<i64>,
        /// When that is, for people ("; it resets in …"), or empty.
        when: String,
    },
}

/// Who answers a refresh: the issuer over HTTP, or a script in tests.
pub trait Refresher: std::fmt::Debug + Send + Sync {
    /// Sends one refresh with `token` (see [`Issuer::refresh`]).
    fn refresh<'a>(
        &'a self,
        token: &'a Secret<String>,
    ) -> BoxFuture<'a, Result<TokenResponse, RefreshError>>;
}

impl Refresher for Issuer {
    fn refresh<'a>(
        &'a self,
        token: &'a Secret<String>,
    ) -> BoxFuture<'a, Result<TokenResponse, RefreshError>> {
        Box::pin(Issuer::refresh(self, token))
    }
}

/// The handle every caller holds: it reads the keeper's snapshot without
/// waiting and sends it a [`keeper::Command`] when the snapshot cannot
/// answer. The keeper task (see [`keeper`]) owns the credential.
#[derive(Debug)]
pub struct Broker {
    /// Where every time the broker decides on comes from.
    clock: Clock,
    view: watch::Receiver<Arc<View>>,
    commands: mpsc::Sender<keeper::Command>,
    store_describe: String,
    store_is_keyring: bool,
    /// Ends the keeper (see [`Broker::quiesce`]).
    stop: CancellationToken,
    keeper: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// How many commands may wait for the keeper before senders wait too.
const QUEUE: usize = 256;

impl Broker {
    /// Starts a broker with an empty view; call [`Broker::reload`] to fill
    /// it. Long-lived tokens are refreshed `refresh_lead_ms` ahead of
    /// expiry; `inflight` is where a refresh on the wire is recorded. The
    /// issuer is any [`Refresher`] and the time any [`Clock`] (how tests run
    /// the broker with a scripted issuer under a paused clock); `duties` are
    /// the keeper's beyond answering: the schedule, and the store's changes.
    pub fn with_parts(
        store: CredentialStore,
        issuer: Arc<dyn Refresher>,
        refresh_lead_ms: i64,
        inflight: inflight::InFlight,
        clock: Clock,
        duties: Duties,
    ) -> Arc<Broker> {
        let empty = View {
            health: StoreHealth::Missing,
            detail: String::new(),
            entries: Vec::new(),
            refresh: RefreshState {
                lead_ms: refresh_lead_ms,
                ..RefreshState::default()
            },
            generation: 0,
            loads: 0,
        };
        let (view, receiver) = watch::channel(Arc::new(empty));
        let (commands, queue) = mpsc::channel(QUEUE);
        let stop = CancellationToken::new();
        let store_describe = store.describe();
        let store_is_keyring = store.is_keyring();
        let keeper = Keeper::new(store, issuer, clock.clone(), view, inflight);
        let task = tokio::spawn(keeper.run(queue, duties, stop.clone()));
        Arc::new(Broker {
            clock,
            view: receiver,
            commands,
            store_describe,
            store_is_keyring,
            stop,
            keeper: std::sync::Mutex::new(Some(task)),
        })
    }

    /// The broker's time, in ms since the epoch (see [`Clock`]).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Whether the credentials live in the OS keyring.
    pub fn store_is_keyring(&self) -> bool {
        self.store_is_keyring
    }

    /// Where the credentials are, for people.
    pub fn store_describe(&self) -> String {
        self.store_describe.clone()
    }

    /// The current snapshot.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// A receiver that wakes on every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Sends the keeper a command and waits for its answer; `None` once
    /// the keeper has stopped.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> keeper::Command,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Re-reads the store and publishes a new snapshot, after any refresh
    /// in flight, so an older file never replaces a newer token.
    pub async fn reload(&self) {
        self.ask(|reply| keeper::Command::Reload {
            unless_since: None,
            reply,
        })
        .await;
    }

    /// Runs (or joins) a refresh so that `need` holds. The keeper does the
    /// work: a caller that goes away (a cancelled RPC) never abandons a
    /// refresh the issuer may already have completed.
    pub async fn refresh_flight(&self, need: need::Need) -> Result<(), TokenError> {
        let seen = self.view().refresh.attempts;
        self.ask(|reply| keeper::Command::Refresh { need, seen, reply })
            .await
            .unwrap_or_else(|| Err(shutting_down()))
    }

    /// Forces a refresh now (the Refresh RPC). An unknown outcome is the
    /// user's to retry; a terminal rejection is not.
    pub async fn force_refresh(&self) -> Result<(), TokenError> {
        let view = self.view();
        if view.codex().is_none() {
            return Err(TokenError::NotLoggedIn {
                provider: DEFAULT_PROVIDER.into(),
            });
        }
        if let Phase::NeedsLogin { reason, .. } = &view.refresh.phase {
            return Err(TokenError::NeedsLogin {
                provider: DEFAULT_PROVIDER.into(),
                reason: reason.clone(),
            });
        }
        let generation = view.generation;
        self.ask(|reply| keeper::Command::Force { generation, reply })
            .await
            .unwrap_or_else(|| Err(shutting_down()))
    }

    /// The backend rejected a token of `generation` although it looked
    /// valid (revoked early): refresh once through the single flight, unless
    /// a newer token exists already.
    pub async fn refresh_rejected(&self, generation: u64) -> Result<(), TokenError> {
        self.refresh_flight(need::Need::Newer(generation)).await
    }

    /// Ends the keeper: a refresh in flight finishes first, then what only
    /// memory holds is saved. Called at shutdown; commands sent after it
    /// are answered as "shutting down".
    pub async fn quiesce(&self) {
        self.stop.cancel();
        let task = self.keeper.lock().ok().and_then(|mut k| k.take());
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the credential keeper ended abnormally");
        }
    }

    /// A token for `provider` valid for at least `min_valid_secs` (capped,
    /// see [`policy`]). Refreshes first only when the current token is too
    /// short and no refresh is known to be futile right now.
    pub async fn get_token(
        &self,
        provider: &str,
        min_valid_secs: u32,
    ) -> Result<Grant, TokenError> {
        // A store last seen corrupt or unreadable may have been repaired
        // before the watcher said so: look again, rather than answer from
        // the bad read. Only when the snapshot cannot serve the call, so a
        // token kept from the last good read is still served without I/O.
        let view = self.view();
        if !answers_from_snapshot(&view, provider, min_valid_secs, self.now_ms()) {
            let seen = view.loads;
            self.ask(|reply| keeper::Command::Reload {
                unless_since: Some(seen),
                reply,
            })
            .await;
        }
        drop(view);
        if provider != DEFAULT_PROVIDER {
            return grant_static(&self.view(), provider, min_valid_secs, self.now_ms());
        }
        match decide(&self.view(), min_valid_secs, self.now_ms()) {
            Decision::Serve(grant) => Ok(grant),
            Decision::Fail(e) => Err(e),
            Decision::Refresh { wanted_ms } => {
                let outcome = self.refresh_flight(need::Need::ValidFor(wanted_ms)).await;
                let view = self.view();
                let now = self.now_ms();
                // Serve whatever is valid now; a failed refresh only matters
                // if nothing valid is left.
                match (grant_codex(&view, now), outcome) {
                    (Some(g), _) if g.expires_at_ms > now => Ok(g),
                    (_, Err(e)) => Err(e),
                    (_, Ok(())) => Err(unavailable(
                        &view,
                        now,
                        "the refreshed token is already expired",
                    )),
                }
            }
        }
    }
}

/// The answer to a call the keeper can no longer take.
pub(crate) fn shutting_down() -> TokenError {
    TokenError::StoreUnavailable {
        detail: "piauthd is shutting down".into(),
    }
}

/// Builds the entries of a parsed document.
pub fn entries_of(doc: &Document) -> Vec<(String, Entry)> {
    doc.providers()
        .filter_map(|p| {
            let credential = doc.credential(p)?;
            let claims = match &credential {
                Credential::OAuth(c) => oauth::read_claims(c.access.expose()).ok(),
                _ => None,
            };
            Some((p.to_owned(), Entry { credential, claims }))
        })
        .collect()
}

/// Takes a document read from disk into the view. While the in-memory
/// default credential is newer than the disk (unpersisted), it is kept.
pub fn adopt_document(view: &mut View, doc: &Document, now: i64) {
    let mut entries = entries_of(doc);
    let stale = entries.iter().any(|(p, e)| {
        p == DEFAULT_PROVIDER
            && matches!(&e.credential, Credential::OAuth(c) if view.refresh.spent.contains(&c.refresh))
    });
    if stale && view.codex().is_some() {
        tracing::warn!(
            "auth.json holds a refresh token this daemon already spent (an old copy restored?); \
             keeping the current one and writing it back"
        );
        view.refresh.unpersisted = true;
    }
    if view.refresh.unpersisted
        && let Some(mine) = view.entry(DEFAULT_PROVIDER).cloned()
    {
        match entries.iter_mut().find(|(p, _)| p == DEFAULT_PROVIDER) {
            Some((_, e)) => *e = mine,
            None => entries.insert(0, (DEFAULT_PROVIDER.into(), mine)),
        }
    }
    let before = view.codex().cloned();
    view.entries = entries;
    if !view.refresh.unpersisted {
        let repaired = matches!(view.health, StoreHealth::Corrupt | StoreHealth::Unreadable);
        view.health = StoreHealth::Ok;
        view.detail.clear();
        if repaired {
            // The backoff was for a store that could not be read; it reads
            // now, so the next call is served (and refreshes) at once.
            view.refresh.failures = 0;
            view.refresh.retry_at_ms = None;
            if view.refresh.phase == Phase::Idle {
                view.refresh.last_error.clear();
            }
        }
    }
    let after = view.codex().cloned();
    if before.as_ref().map(|c| &c.access) != after.as_ref().map(|c| &c.access) {
        view.generation += 1;
        if let Some(c) = &after {
            let claims = view.entry(DEFAULT_PROVIDER).and_then(|e| e.claims.clone());
            view.refresh.lifetime_ms = policy::lifetime_ms(
                claims.as_ref().and_then(|c| c.exp_secs),
                claims.as_ref().and_then(|c| c.iat_secs),
                c.expires_ms,
                now,
            );
        }
    }
    // A different refresh token on disk (a login, or another process's
    // refresh) ends a stuck phase and any backoff.
    let stuck_on = match &view.refresh.phase {
        Phase::NeedsLogin { refresh_used, .. } | Phase::OutcomeUnknown { refresh_used, .. } => {
            Some(refresh_used.clone())
        }
        _ => None,
    };
    if let Some(used) = stuck_on
        && after.as_ref().map(|c| &c.refresh) != Some(&used)
    {
        view.refresh.phase = Phase::Idle;
        view.refresh.last_error.clear();
        view.refresh.failures = 0;
        view.refresh.retry_at_ms = None;
    }
    if before.as_ref().map(|c| &c.refresh) != after.as_ref().map(|c| &c.refresh) {
        view.refresh.failures = 0;
        view.refresh.retry_at_ms = None;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod paused_tests;
