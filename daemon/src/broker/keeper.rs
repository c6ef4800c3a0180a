//! The keeper: the one task that owns an account's credential.
//!
//! Everything that changes the credential happens here, one thing at a
//! time: reads of the store, refreshes (asked for or scheduled), saves and
//! their retries, logins, logouts and the last save at shutdown. That order
//! is the single flight; nothing beside the task (no gate, no counters, no
//! detached retry) assembles it.
//!
//! The keeper publishes every change as an immutable [`View`]; the
//! [`super::Broker`] handle reads it without waiting (GetToken is a memory
//! read) and sends a [`Command`] only when the snapshot cannot answer.
//! Callers that asked while a refresh ran share its outcome: each command
//! carries the attempt count its sender saw (`View::refresh.attempts`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inflight::{self, Recovery, recover};
use super::need::Need;
use super::{AccountError, Clock, Phase, Refresher, StoreHealth, TokenError, View};
use crate::backoff::Backoff;
use crate::store::{CredentialStore, Document, OAuthCredential, StoreError};

/// How long a burst of file changes settles before the store is read: an
/// editor's save is often several writes.
const RELOAD_SETTLE: Duration = Duration::from_millis(30);
/// The first and the longest pause between attempts to save a token that
/// lives only in memory.
const PERSIST_FIRST: Duration = Duration::from_millis(500);
const PERSIST_MAX: Duration = Duration::from_secs(30);

/// What a caller asks of the keeper. Every command is answered once; a
/// command dropped at shutdown is answered by its closed channel.
#[derive(Debug)]
pub(super) enum Command {
    /// Read the store again, unless a read finished after the sender saw
    /// `unless_since` reads (a burst of callers costs one read).
    Reload {
        unless_since: Option<u64>,
        reply: oneshot::Sender<()>,
    },
    /// Make `need` hold; `seen` is the attempt count the sender saw.
    Refresh {
        need: Need,
        seen: u64,
        reply: oneshot::Sender<Result<(), TokenError>>,
    },
    /// The user's word (the Refresh RPC): forget an unanswered refresh and
    /// refresh a token older than `generation` now.
    Force {
        generation: u64,
        reply: oneshot::Sender<Result<(), TokenError>>,
    },
    /// Store and serve a completed login's credential.
    Install {
        fresh: OAuthCredential,
        lifetime_ms: i64,
        reply: oneshot::Sender<Result<(), AccountError>>,
    },
    /// Put another account's credential in place of this one's, shelving
    /// the outgoing one first (see [`super::Broker::swap`]).
    Swap {
        incoming: OAuthCredential,
        lifetime_ms: i64,
        shelve: Option<super::Slot>,
        reply: oneshot::Sender<Result<Option<OAuthCredential>, AccountError>>,
    },
    /// Remove a provider's entry; answers whether there was one.
    Logout {
        provider: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
}

/// The keeper's duties beyond answering commands.
#[derive(Debug, Default)]
pub struct Duties {
    /// Refresh ahead of expiry on its own ([`super::policy`]).
    pub schedule: bool,
    /// Changes of the store on disk; each burst leads to one read.
    pub changes: Option<mpsc::Receiver<()>>,
}

/// What woke the keeper.
enum Event {
    Command(Box<Command>),
    Changed,
    ChangesEnded,
    Reload,
    Persist,
    Due,
    Stop,
}

/// The state the keeper task owns.
#[derive(Debug)]
pub(super) struct Keeper {
    pub(super) store: CredentialStore,
    pub(super) issuer: Arc<dyn Refresher>,
    pub(super) clock: Clock,
    pub(super) view: watch::Sender<Arc<View>>,
    /// The durable record of a refresh on the wire, so that not even a
    /// crash re-sends a token the issuer may have rotated.
    pub(super) inflight: inflight::InFlight,
    /// The outcome of the last refresh attempt, shared with the callers
    /// that asked while it ran.
    last_outcome: Result<(), TokenError>,
}

impl Keeper {
    pub(super) fn new(
        store: CredentialStore,
        issuer: Arc<dyn Refresher>,
        clock: Clock,
        view: watch::Sender<Arc<View>>,
        inflight: inflight::InFlight,
    ) -> Keeper {
        Keeper {
            store,
            issuer,
            clock,
            view,
            inflight,
            last_outcome: Ok(()),
        }
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(super) fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    pub(super) fn modify(&self, f: impl FnOnce(&mut View)) {
        self.view.send_modify(|v| f(Arc::make_mut(v)));
    }

    /// Answers commands and does its duties until `stop`, or until every
    /// handle is gone; then saves what is unsaved, once.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        duties: Duties,
        stop: CancellationToken,
    ) {
        let Duties {
            schedule,
            mut changes,
        } = duties;
        let mut reload_at: Option<Instant> = None;
        let mut persist_at: Option<Instant> = None;
        let mut persist_pause = Backoff::new(PERSIST_FIRST, PERSIST_MAX);
        loop {
            let view = self.view();
            if !view.refresh.unpersisted {
                persist_at = None;
                persist_pause.reset();
            } else if persist_at.is_none() {
                persist_at = Some(Instant::now() + persist_pause.fail());
            }
            let due = view.next_refresh_ms().filter(|_| schedule);
            drop(view);
            let event = tokio::select! {
                biased;
                () = stop.cancelled() => Event::Stop,
                () = sleep_until(persist_at) => Event::Persist,
                () = sleep_until(reload_at) => Event::Reload,
                () = self.sleep_until_ms(due) => Event::Due,
                changed = next_change(&mut changes) => {
                    if changed { Event::Changed } else { Event::ChangesEnded }
                }
                command = commands.recv() => match command {
                    Some(c) => Event::Command(Box::new(c)),
                    None => Event::Stop,
                },
            };
            match event {
                Event::Stop => break,
                Event::Changed => {
                    reload_at.get_or_insert_with(|| Instant::now() + RELOAD_SETTLE);
                }
                Event::ChangesEnded => changes = None,
                Event::Reload => {
                    reload_at = None;
                    tracing::debug!("auth.json changed on disk; reloading");
                    // A hung read (a stuck network file system) must not
                    // keep shutdown from saving what is unsaved.
                    tokio::select! {
                        () = self.reload() => {}
                        () = stop.cancelled() => break,
                    }
                }
                Event::Persist => {
                    persist_at = None;
                    self.persist_pending().await;
                }
                Event::Due => {
                    tracing::debug!("scheduled refresh is due");
                    // Errors are recorded in the snapshot (backoff, parked).
                    let seen = self.view().refresh.attempts;
                    let _ = self.refresh(Need::Scheduled, seen).await;
                }
                Event::Command(command) => {
                    if self.answer(*command, &stop).await.is_break() {
                        break;
                    }
                }
            }
        }
        // A refresh in flight has finished (it ran in this loop); save what
        // only memory holds.
        if !self.persist_pending().await {
            tracing::error!("stopping with a token that could not be saved");
        }
    }

    /// Answers one command. Breaks when shutdown interrupted a read.
    async fn answer(
        &mut self,
        command: Command,
        stop: &CancellationToken,
    ) -> std::ops::ControlFlow<()> {
        match command {
            Command::Reload {
                unless_since,
                reply,
            } => {
                if unless_since.is_none_or(|seen| self.view().loads == seen) {
                    tokio::select! {
                        () = self.reload() => {}
                        () = stop.cancelled() => return std::ops::ControlFlow::Break(()),
                    }
                }
                let _ = reply.send(());
            }
            Command::Refresh { need, seen, reply } => {
                let _ = reply.send(self.refresh(need, seen).await);
            }
            Command::Force { generation, reply } => {
                let _ = reply.send(self.force(generation).await);
            }
            Command::Install {
                fresh,
                lifetime_ms,
                reply,
            } => {
                let _ = reply.send(self.install(fresh, lifetime_ms).await);
            }
            Command::Swap {
                incoming,
                lifetime_ms,
                shelve,
                reply,
            } => {
                let _ = reply.send(self.swap(incoming, lifetime_ms, shelve).await);
            }
            Command::Logout { provider, reply } => {
                let _ = reply.send(self.logout(&provider).await);
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    /// Runs a refresh so that `need` holds, unless it holds already or an
    /// attempt since the caller's `seen` failed (its outcome is shared).
    pub(super) async fn refresh(&mut self, need: Need, seen: u64) -> Result<(), TokenError> {
        let view = self.view();
        if need.satisfied(&view, self.now_ms()) {
            return Ok(());
        }
        if view.refresh.attempts != seen {
            // A refresh ran after the caller asked and did not give it what
            // it needs: share its outcome rather than call the issuer again.
            // A forced refresh is the user's word to try again.
            let forced = matches!(need, Need::Forced(_));
            let last = self.last_outcome.clone();
            if !forced && (last.is_err() || matches!(need, Need::Scheduled)) {
                return last;
            }
        }
        drop(view);
        let outcome = self.refresh_locked(need).await;
        self.last_outcome = outcome.clone();
        self.modify(|v| v.refresh.attempts += 1);
        outcome
    }

    /// Re-reads the store and publishes a new snapshot.
    pub(super) async fn reload(&self) {
        let loaded = self.store.load().await;
        let path = self.store.describe();
        let now = self.now_ms();
        self.modify(|view| {
            match loaded {
                Ok(Some(doc)) => super::adopt_document(view, &doc, now),
                Ok(None) => {
                    super::adopt_document(view, &Document::default(), now);
                    view.health = StoreHealth::Missing;
                    view.detail = format!("{path} does not exist yet: run `pi-authctl login`");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot use the credential store; keeping the last good credentials");
                    view.health = match e {
                        StoreError::Corrupt { .. } => StoreHealth::Corrupt,
                        _ => StoreHealth::Unreadable,
                    };
                    view.detail = e.to_string();
                }
            }
            view.loads += 1;
        });
        self.recover_in_flight().await;
        let view = self.view();
        tracing::debug!(health = ?view.health, providers = view.entries.len(), "credential store loaded");
    }

    async fn sleep_until_ms(&self, at_ms: Option<i64>) {
        match at_ms {
            Some(at) => self.clock.sleep_until_ms(at).await,
            None => std::future::pending().await,
        }
    }
}

impl Keeper {
    /// Marks the stored token's refresh as "outcome unknown" when a record
    /// says it was sent and never answered (a crash mid-refresh), and drops
    /// a record that no longer matches the stored token. Runs in the
    /// keeper's turn, after each load of the store and under the store's
    /// lock before each refresh: a refresh in flight is the keeper's own
    /// turn (this daemon's) or holds the lock (another's), so it is never
    /// mistaken for a crashed one.
    pub(super) async fn recover_in_flight(&self) {
        let record = self.inflight.read().await;
        let view = self.view();
        let unpersisted = view.refresh.unpersisted;
        let stored = view.codex().map(|c| c.refresh.clone());
        let sent_at_ms = match record {
            Ok(record) => match recover(record.as_ref(), stored.as_ref(), unpersisted) {
                Recovery::Clear { stale: false } | Recovery::Keep => return,
                Recovery::Clear { stale: true } => {
                    if let Err(e) = self.inflight.settle().await {
                        tracing::warn!(error = %e, path = %self.inflight.path().display(), "cannot remove a settled refresh record");
                    }
                    return;
                }
                Recovery::Unknown { sent_at_ms } => Some(sent_at_ms),
            },
            // Unreadable while a newer token is held: as Recovery::Keep.
            Err(_) if unpersisted => return,
            // Unreadable: it may be the only sign of a refresh on the wire.
            Err(e) => {
                tracing::error!(error = %e, path = %self.inflight.path().display(), "cannot read the refresh record; assuming a refresh was on the wire");
                None
            }
        };
        let Some(used) = stored else { return };
        if matches!(view.refresh.phase, Phase::OutcomeUnknown { .. }) {
            return;
        }
        let when = sent_at_ms.map_or_else(
            || "at an unknown time".to_owned(),
            |ms| format!("{} s ago", (self.now_ms() - ms).max(0) / 1000),
        );
        let reason = format!(
            "piauthd stopped while a refresh was on the wire (sent {when}); the issuer may have \
             rotated the refresh token, so piauthd will not send it again. The current access \
             token is served until it expires. Run `pi-authctl refresh` to try anyway, or \
             `pi-authctl login`"
        );
        tracing::error!("{reason}");
        self.modify(|v| {
            v.refresh.phase = Phase::OutcomeUnknown {
                refresh_used: used,
                reason: reason.clone(),
            };
            v.refresh.last_error = reason;
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next change of the store; `false` when its watcher is gone.
async fn next_change(changes: &mut Option<mpsc::Receiver<()>>) -> bool {
    match changes {
        Some(rx) => rx.recv().await.is_some(),
        None => std::future::pending().await,
    }
}
