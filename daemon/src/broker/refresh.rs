//! The single flight: one refresh at a time, under pi's lock, persisted
//! before it is served.

use std::time::Duration;

use super::keeper::Keeper;
use super::need::Need;
use super::{DEFAULT_PROVIDER, Phase, StoreHealth, TokenError, View, policy};
use crate::backoff::Backoff;
use crate::oauth::{self, Failure};
use crate::secret::Secret;
use crate::store::{Credential, Document, OAuthCredential, StoreError, Transaction, Unlockable};
use crate::upstream::{REFRESH_BOUND, RefreshError};

/// How long a refresh waits for pi's lock before giving up for now: the
/// store's own wait (40 s, beyond pi's 30 s stale limit).
pub(super) const LOCK_WAIT: Duration = crate::store::DEFAULT_WAIT;
/// How many spent refresh tokens are remembered.
const SPENT_KEPT: usize = 16;
/// The lifetime assumed for a token whose answer gives no expiry.
const ASSUMED_LIFETIME_MS: i64 = 3600 * 1000;
/// Retries of a request that never left the machine (connection refused).
const NOT_SENT_RETRIES: u32 = 2;
/// The longest a refresh can keep pi's lock away: every attempt at its
/// bound, then the wait to re-take the lock.
const ROUND_TRIP_BOUND_MS: i64 = (REFRESH_BOUND.as_millis() as i64) * (1 + NOT_SENT_RETRIES as i64)
    + LOCK_WAIT.as_millis() as i64;

impl Keeper {
    /// Forces a refresh now (the Refresh RPC): a record of an unanswered
    /// refresh no longer stops it, on the user's word.
    pub(super) async fn force(&mut self, generation: u64) -> Result<(), TokenError> {
        if let Err(e) = self.inflight.settle().await {
            return Err(TokenError::StoreUnavailable {
                detail: format!(
                    "cannot clear the record of the last refresh ({}): {e}",
                    self.inflight.path().display()
                ),
            });
        }
        self.modify(|v| {
            if matches!(v.refresh.phase, Phase::OutcomeUnknown { .. }) {
                v.refresh.phase = Phase::Idle;
            }
            v.refresh.retry_at_ms = None;
        });
        let seen = self.view().refresh.attempts;
        self.refresh(Need::Forced(generation), seen).await
    }

    /// The refresh itself, in the keeper's turn.
    pub(super) async fn refresh_locked(&self, need: Need) -> Result<(), TokenError> {
        let before = self.view();
        if let Phase::NeedsLogin { reason, .. } | Phase::OutcomeUnknown { reason, .. } =
            &before.refresh.phase
        {
            return Err(TokenError::NeedsLogin {
                provider: DEFAULT_PROVIDER.into(),
                reason: reason.clone(),
            });
        }
        self.modify(|v| v.refresh.phase = Phase::Refreshing);
        let result = self.refresh_under_lock(need).await;
        self.modify(|v| {
            if v.refresh.phase == Phase::Refreshing {
                v.refresh.phase = Phase::Idle;
            }
        });
        result
    }

    async fn refresh_under_lock(&self, need: Need) -> Result<(), TokenError> {
        // Nobody can lock or write a read-only or full directory, pi
        // included; refresh anyway so clients keep being served, and keep
        // the result in memory until the disk recovers.
        let mut tx = match self
            .store
            .begin_waiting(LOCK_WAIT, Unlockable::Proceed)
            .await
        {
            Ok(tx) => tx,
            Err(e @ StoreError::Lock(_)) => return Err(self.transient(&e.to_string(), None)),
            Err(e) => {
                let corrupt = matches!(e, StoreError::Corrupt { .. });
                self.modify(|v| {
                    v.health = if corrupt {
                        StoreHealth::Corrupt
                    } else {
                        StoreHealth::Unreadable
                    };
                    v.detail = e.to_string();
                });
                return Err(self.transient(&format!("{e}; not refreshing until it is fixed"), None));
            }
        };
        let result = self.refresh_in(need, &mut tx).await;
        tx.finish().await;
        result
    }

    /// The refresh proper, inside the store transaction `tx`.
    async fn refresh_in(&self, need: Need, tx: &mut Transaction<'_>) -> Result<(), TokenError> {
        // Another process may have refreshed (or logged out) meanwhile.
        if self.view().refresh.unpersisted {
            self.persist(tx).await;
        } else {
            let now = self.now_ms();
            let doc = tx.document();
            self.modify(|v| super::adopt_document(v, &doc, now));
            if need.satisfied(&self.view(), now) {
                tracing::info!("another process already refreshed the token; adopted it");
                return Ok(());
            }
        }
        let view = self.view();
        let Some(current) = view.codex().cloned() else {
            return Err(TokenError::NotLoggedIn {
                provider: DEFAULT_PROVIDER.into(),
            });
        };
        // A record for this very token, found under the lock, was left by a
        // piauthd that stopped with it on the wire: another daemon on this
        // store, perhaps one that reached it by another path. Sending it
        // again could be reuse.
        self.recover_in_flight().await;
        if let Phase::OutcomeUnknown { reason, .. } = &self.view().refresh.phase {
            return Err(TokenError::NeedsLogin {
                provider: DEFAULT_PROVIDER.into(),
                reason: reason.clone(),
            });
        }

        // Expiry counts from when the request left: the token cannot have
        // been issued earlier, so `expires` never overstates its life.
        let sent_at = self.now_ms();
        let short = tx.can_pause()
            && codex_refresh(&tx.document()).as_ref() == Some(&current.refresh)
            && policy::may_release_pi_lock(current.expires_ms - sent_at, ROUND_TRIP_BOUND_MS);
        if let Err(e) = self.inflight.begin(&current.refresh, sent_at).await {
            let detail = format!(
                "cannot record the refresh before sending it ({}: {e}); not refreshing until it can be recorded",
                self.inflight.path().display()
            );
            return Err(self.transient(&detail, None));
        }
        if short && let Err(e) = tx.pause().await {
            self.settle_in_flight().await;
            return Err(self.transient(&e.to_string(), None));
        }
        tracing::info!(
            holds_pi_lock = !short,
            "refreshing the {DEFAULT_PROVIDER} token"
        );
        let transition = outcome(self.send(&current).await, &current, sent_at);
        if transition.token_unspent() {
            self.settle_in_flight().await;
        }
        match transition {
            Transition::Store(fresh) => self.on_tokens(tx, short, &current, fresh).await,
            Transition::Retry {
                message,
                retry_after_ms,
            } => Err(self.transient(&message, retry_after_ms)),
            Transition::Park { phase, error } => {
                match &phase {
                    Phase::NeedsLogin { .. } => tracing::warn!(
                        reason = phase.reason(),
                        "the refresh token was rejected; the login must be renewed"
                    ),
                    _ => tracing::error!("{}", phase.reason()),
                }
                self.modify(|v| {
                    v.refresh.last_error = phase.reason().to_owned();
                    v.refresh.phase = phase;
                });
                Err(error)
            }
        }
    }

    /// Sends the refresh, retrying only what never left the machine.
    async fn send(
        &self,
        current: &OAuthCredential,
    ) -> Result<crate::oauth::TokenResponse, RefreshError> {
        let mut result = self.issuer.refresh(&current.refresh).await;
        let mut pause = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        for _ in 1..=NOT_SENT_RETRIES {
            let Err(RefreshError::NotSent { .. }) = &result else {
                break;
            };
            tokio::time::sleep(pause.fail()).await;
            result = self.issuer.refresh(&current.refresh).await;
        }
        result
    }

    /// Stores and serves the tokens the issuer answered with. If pi's lock
    /// was given back meanwhile (`paused`), it is re-taken and the file
    /// re-read first: a file that no longer holds the token just sent was
    /// changed by a new login or a logout, and the file wins.
    async fn on_tokens(
        &self,
        tx: &mut Transaction<'_>,
        paused: bool,
        current: &OAuthCredential,
        fresh: Fresh,
    ) -> Result<(), TokenError> {
        let now = self.now_ms();
        let resumed = if paused {
            tx.resume().await
        } else {
            Ok(tx.document())
        };
        let written = match resumed {
            Ok(doc) if paused && codex_refresh(&doc).as_ref() != Some(&current.refresh) => {
                tracing::warn!(
                    "auth.json changed while the refresh was on the wire (a new login or a logout); using the file's"
                );
                self.modify(|v| super::adopt_document(v, &doc, now));
                self.settle_in_flight().await;
                return Ok(());
            }
            Ok(_) => write_credential(tx, &fresh.credential).await,
            Err(e) => Err(e),
        };
        self.publish(
            fresh.credential,
            fresh.lifetime_ms,
            now,
            true,
            Some(current.refresh.clone()),
            &written,
        );
        match written {
            Ok(()) => {
                tracing::info!("refreshed and saved the {DEFAULT_PROVIDER} token");
                self.settle_in_flight().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "refreshed, but cannot save the new token; keeping it in memory");
            }
        }
        Ok(())
    }

    /// Drops the record of the refresh just answered; a failure only costs
    /// a stale record, which the next load recognises by its token.
    async fn settle_in_flight(&self) {
        if let Err(e) = self.inflight.settle().await {
            tracing::warn!(error = %e, path = %self.inflight.path().display(), "cannot remove the record of a settled refresh");
        }
    }

    /// Publishes `fresh` after the attempt to store it (`written`).
    /// Durability first: callers write, then publish. If the write failed,
    /// the token is published anyway (it exists nowhere else), marked
    /// unpersisted, and a retry loop is started. `on_disk` is the codex
    /// refresh token the file held before.
    pub(super) fn publish(
        &self,
        fresh: OAuthCredential,
        lifetime_ms: i64,
        now: i64,
        refreshed: bool,
        on_disk: Option<Secret<String>>,
        written: &Result<(), StoreError>,
    ) {
        let claims = oauth::read_claims(fresh.access.expose()).ok();
        let path = self.store.describe();
        self.modify(|v| {
            if refreshed
                && let Some(old) = v.codex().map(|c| c.refresh.clone())
                && old != fresh.refresh
            {
                v.refresh.spent.push(old);
                let excess = v.refresh.spent.len().saturating_sub(SPENT_KEPT);
                v.refresh.spent.drain(..excess);
            }
            set_codex(v, fresh, claims);
            v.refresh.lifetime_ms = lifetime_ms;
            if refreshed {
                v.refresh.last_refresh_ms = Some(now);
                v.refresh.refresh_count += 1;
            }
            v.refresh.phase = Phase::Idle;
            v.refresh.failures = 0;
            v.refresh.retry_at_ms = None;
            v.refresh.last_error.clear();
            match written {
                Ok(()) => {
                    v.refresh.unpersisted = false;
                    v.refresh.superseded = None;
                    v.health = StoreHealth::Ok;
                    v.detail.clear();
                }
                Err(e) => {
                    if !v.refresh.unpersisted {
                        v.refresh.superseded = on_disk.clone();
                    }
                    v.refresh.unpersisted = true;
                    v.health = StoreHealth::Degraded;
                    v.detail = format!(
                        "cannot write {path}: {e}; the new token is kept in memory and the write is retried"
                    );
                }
            }
        });
    }

    /// Records a transient failure and schedules the retry.
    fn transient(&self, message: &str, retry_after_ms: Option<u64>) -> TokenError {
        use rand::Rng;
        let now = self.now_ms();
        let jitter: f64 = rand::rng().random();
        let mut when = String::new();
        self.modify(|v| {
            v.refresh.failures += 1;
            let delay = policy::backoff_ms(v.refresh.failures, jitter, retry_after_ms);
            v.refresh.retry_at_ms = Some(now + delay);
            v.refresh.last_error = message.to_owned();
            when = super::describe_remaining(v.codex().map_or(0, |c| c.expires_ms - now));
        });
        tracing::warn!(error = %message, "refresh failed; will retry with backoff");
        TokenError::Unavailable {
            provider: DEFAULT_PROVIDER.into(),
            when,
            reason: message.to_owned(),
        }
    }

    /// Writes the in-memory credential into the document of `tx`.
    async fn persist(&self, tx: &mut Transaction<'_>) -> bool {
        let mut doc = tx.document();
        let view = self.view();
        let Some(mine) = view.codex().cloned() else {
            return false;
        };
        let on_disk = codex_refresh(&doc);
        let stale = on_disk
            .as_ref()
            .is_some_and(|t| view.refresh.spent.contains(t));
        if on_disk.is_some()
            && on_disk.as_ref() != Some(&mine.refresh)
            && on_disk != view.refresh.superseded
            && !stale
        {
            // Someone else (a new login) wrote the file meanwhile: theirs wins.
            tracing::warn!(
                "auth.json holds a newer login than the unsaved token; using the file's"
            );
            let now = self.now_ms();
            self.modify(|v| {
                v.refresh.unpersisted = false;
                v.refresh.superseded = None;
                super::adopt_document(v, &doc, now);
            });
            return true;
        }
        doc.set_oauth(DEFAULT_PROVIDER, &mine);
        match tx.commit(&doc).await {
            Ok(()) => {
                tracing::info!("saved the token that was kept in memory");
                self.modify(|v| {
                    v.refresh.unpersisted = false;
                    v.refresh.superseded = None;
                    v.health = StoreHealth::Ok;
                    v.detail.clear();
                });
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "still cannot save the token kept in memory");
                false
            }
        }
    }

    /// Saves an unpersisted token now, if there is one: the keeper's retry
    /// and its last act at shutdown.
    pub(super) async fn persist_pending(&self) -> bool {
        if !self.view().refresh.unpersisted {
            return true;
        }
        let Ok(mut tx) = self.store.begin_waiting(LOCK_WAIT, Unlockable::Fail).await else {
            return false;
        };
        let saved = self.persist(&mut tx).await;
        tx.finish().await;
        saved
    }
}

/// The codex refresh token a document holds, if any.
pub(super) fn codex_refresh(doc: &Document) -> Option<Secret<String>> {
    match doc.credential(DEFAULT_PROVIDER) {
        Some(Credential::OAuth(c)) => Some(c.refresh),
        _ => None,
    }
}

/// Writes `fresh` as the codex credential of the document of `tx`.
pub(super) async fn write_credential(
    tx: &mut Transaction<'_>,
    fresh: &OAuthCredential,
) -> Result<(), StoreError> {
    let mut doc = tx.document();
    doc.set_oauth(DEFAULT_PROVIDER, fresh);
    tx.commit(&doc).await
}

/// What an answer to a refresh leads to.
#[derive(Debug)]
enum Transition {
    /// New tokens: store them, then serve them.
    Store(Fresh),
    /// Nothing rotated (the issuer's own transient error, or nothing was
    /// sent): back off and retry with the same token.
    Retry {
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// Stop refreshing until the user acts: the token is dead
    /// ([`Phase::NeedsLogin`]), or may have been spent by an answer that
    /// never arrived ([`Phase::OutcomeUnknown`]).
    Park { phase: Phase, error: TokenError },
}

impl Transition {
    /// Whether the token sent is certainly not spent, so the record of it
    /// on the wire can go. An unknown outcome keeps the record; stored
    /// tokens settle it once written.
    fn token_unspent(&self) -> bool {
        match self {
            Transition::Retry { .. } => true,
            Transition::Park { phase, .. } => matches!(phase, Phase::NeedsLogin { .. }),
            Transition::Store(_) => false,
        }
    }
}

/// Sorts the answer to a refresh of `current` sent at `sent_at`. Pure.
fn outcome(
    result: Result<crate::oauth::TokenResponse, RefreshError>,
    current: &OAuthCredential,
    sent_at: i64,
) -> Transition {
    let error = match result {
        Ok(response) => return Transition::Store(fresh_credential(current, response, sent_at)),
        Err(e) => e,
    };
    match error {
        RefreshError::Rejected(Failure::Terminal { code, message }) => {
            let reason = format!("the issuer answered {code}: {message}");
            Transition::Park {
                error: TokenError::NeedsLogin {
                    provider: DEFAULT_PROVIDER.into(),
                    reason: reason.clone(),
                },
                phase: Phase::NeedsLogin {
                    refresh_used: current.refresh.clone(),
                    reason,
                },
            }
        }
        RefreshError::Rejected(Failure::Transient {
            message,
            retry_after_ms,
            ..
        }) => Transition::Retry {
            message,
            retry_after_ms,
        },
        e @ RefreshError::NotSent { .. } => Transition::Retry {
            message: e.to_string(),
            retry_after_ms: None,
        },
        e @ RefreshError::OutcomeUnknown { .. } => {
            let reason = format!(
                "{e}; the issuer may have spent the refresh token, so piauthd will not resend it. \
                 Run `pi-authctl refresh` to try anyway, or `pi-authctl login`"
            );
            Transition::Park {
                error: TokenError::Unavailable {
                    provider: DEFAULT_PROVIDER.into(),
                    when: super::describe_remaining(current.expires_ms - sent_at),
                    reason: reason.clone(),
                },
                phase: Phase::OutcomeUnknown {
                    refresh_used: current.refresh.clone(),
                    reason,
                },
            }
        }
    }
}

/// A refreshed credential and its lifetime.
#[derive(Debug)]
struct Fresh {
    credential: OAuthCredential,
    lifetime_ms: i64,
}

/// The credential an answer to a refresh sent at `sent_at` gives. Without
/// `expires_in` or a JWT `exp`, an hour is assumed rather than the old
/// expiry inherited (which would refresh ever sooner). Pure.
fn fresh_credential(
    current: &OAuthCredential,
    response: crate::oauth::TokenResponse,
    sent_at: i64,
) -> Fresh {
    let claims = oauth::read_claims(response.access_token.expose()).ok();
    let expires_ms = match response.expires_in {
        Some(secs) => sent_at.saturating_add(secs.saturating_mul(1000)),
        None => claims
            .as_ref()
            .and_then(|c| c.exp_secs)
            .map_or(sent_at + ASSUMED_LIFETIME_MS, |s| s.saturating_mul(1000)),
    };
    let lifetime_ms = response
        .expires_in
        .map_or((expires_ms - sent_at).max(0), |s| s.saturating_mul(1000));
    Fresh {
        credential: OAuthCredential {
            account_id: claims
                .and_then(|c| c.account_id)
                .or(current.account_id.clone()),
            access: response.access_token,
            refresh: response.refresh_token.unwrap_or(current.refresh.clone()),
            expires_ms,
        },
        lifetime_ms,
    }
}

fn set_codex(view: &mut View, fresh: OAuthCredential, claims: Option<oauth::Claims>) {
    let entry = super::Entry {
        credential: Credential::OAuth(fresh),
        claims,
    };
    match view.entries.iter_mut().find(|(p, _)| p == DEFAULT_PROVIDER) {
        Some((_, e)) => *e = entry,
        None => view.entries.insert(0, (DEFAULT_PROVIDER.into(), entry)),
    }
    view.generation += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::TokenResponse;

    fn current() -> OAuthCredential {
        OAuthCredential {
            access: Secret::new("old-access".into()),
            refresh: Secret::new("old-refresh".into()),
            expires_ms: 10_000,
            account_id: Some("acc".into()),
        }
    }

    fn tokens(refresh: Option<&str>, expires_in: Option<i64>) -> TokenResponse {
        TokenResponse {
            access_token: Secret::new("new-access".into()),
            refresh_token: refresh.map(|r| Secret::new(r.to_owned())),
            id_token: None,
            expires_in,
        }
    }

    #[test]
    fn tokens_are_stored_with_expiry_from_when_the_request_left() {
        let Transition::Store(f) = outcome(Ok(tokens(Some("r2"), Some(60))), &current(), 5_000)
        else {
            panic!("tokens are stored")
        };
        assert_eq!(f.credential.refresh.expose(), "r2");
        assert_eq!(f.credential.expires_ms, 65_000);
        assert_eq!(f.lifetime_ms, 60_000);
        assert_eq!(f.credential.account_id.as_deref(), Some("acc"));
        // No rotation in the answer: the old refresh token stays; no
        // expiry at all: an hour, not the old expiry.
        let Transition::Store(f) = outcome(Ok(tokens(None, None)), &current(), 5_000) else {
            panic!("tokens are stored")
        };
        assert_eq!(f.credential.refresh.expose(), "old-refresh");
        assert_eq!(f.credential.expires_ms, 5_000 + ASSUMED_LIFETIME_MS);
    }

    #[test]
    fn only_what_proves_nothing_rotated_is_retried() {
        let refused = RefreshError::Rejected(Failure::Transient {
            status: 503,
            message: "busy".into(),
            retry_after_ms: Some(7_000),
        });
        let t = outcome(Err(refused), &current(), 0);
        assert!(t.token_unspent());
        assert!(matches!(
            t,
            Transition::Retry {
                retry_after_ms: Some(7_000),
                ..
            }
        ));
        let not_sent = RefreshError::NotSent {
            message: "connection refused".into(),
        };
        let t = outcome(Err(not_sent), &current(), 0);
        assert!(t.token_unspent() && matches!(t, Transition::Retry { .. }));
    }

    #[test]
    fn a_dead_token_parks_for_a_login_and_an_unknown_outcome_keeps_its_record() {
        let dead = RefreshError::Rejected(Failure::Terminal {
            code: "refresh_token_reused".into(),
            message: "reused".into(),
        });
        let t = outcome(Err(dead), &current(), 0);
        assert!(t.token_unspent(), "the issuer refused: the record can go");
        let Transition::Park { phase, error } = t else {
            panic!("parked")
        };
        assert!(
            matches!(phase, Phase::NeedsLogin { ref refresh_used, .. } if refresh_used.expose() == "old-refresh")
        );
        assert!(phase.reason().contains("refresh_token_reused"));
        assert!(matches!(error, TokenError::NeedsLogin { .. }));

        let lost = RefreshError::OutcomeUnknown {
            message: "reset after sending".into(),
        };
        let t = outcome(Err(lost), &current(), 0);
        assert!(
            !t.token_unspent(),
            "the record stays: the token may be spent"
        );
        let Transition::Park { phase, error } = t else {
            panic!("parked")
        };
        assert!(matches!(phase, Phase::OutcomeUnknown { .. }));
        assert!(phase.reason().contains("pi-authctl refresh"));
        assert!(matches!(error, TokenError::Unavailable { .. }));
    }
}
