//! A follower's link to its owner: one task that connects to the owner's
//! socket, checks who it is, and mirrors the tokens the owner pushes
//! (WatchToken), reconnecting by itself whenever the owner goes away.
//!
//! The task owns the connection; everyone else reads its [`LinkView`] and
//! borrows the current [`Owner`] client to forward a call.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use piauth_client::Client;
use piauth_proto::v1 as pb;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::forward::ForwardState;
use crate::secret::Secret;

/// A client of the owner's Auth service.
pub type Owner = pb::auth_client::AuthClient<Channel>;
/// A client of the owner's Completions service.
pub type OwnerCompletions = pb::completions_client::CompletionsClient<Channel>;

/// The first pause before the owner is tried again; it doubles up to
/// [`MAX_PAUSE`], and a forward that comes up ends it early.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A token the owner pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirrored {
    pub provider: String,
    pub access: Secret<String>,
    pub expires_at_ms: i64,
    pub account_id: String,
    /// When it arrived here (ms since the epoch): with the expiry, its
    /// lifetime as this daemon saw it.
    pub received_ms: i64,
}

impl Mirrored {
    pub fn to_wire(&self) -> pb::Token {
        pb::Token {
            provider: self.provider.clone(),
            access_token: self.access.expose().clone(),
            expires_at_ms: self.expires_at_ms,
            account_id: self.account_id.clone(),
        }
    }
}

/// What the link knows now.
#[derive(Debug, Clone, Default)]
pub struct LinkView {
    /// The owner answers now.
    pub reachable: bool,
    /// Since when it has (or has not).
    pub since_ms: i64,
    /// Why it cannot be reached, or why it has no token; empty otherwise.
    pub detail: String,
    /// The owner's latest token; kept while the owner is away.
    pub token: Option<Mirrored>,
    pub owner_account_id: String,
    pub owner_email: String,
}

/// The link: its view, and the current connection to the owner.
#[derive(Debug)]
pub struct Link {
    /// The target as given, for messages and Status.
    pub target: String,
    /// The owner's socket on this machine.
    pub socket: PathBuf,
    view: watch::Receiver<LinkView>,
    owner: watch::Receiver<Option<(Owner, OwnerCompletions)>>,
}

impl Link {
    pub fn view(&self) -> LinkView {
        self.view.borrow().clone()
    }

    /// `read` applied to the view in place, without copying it.
    pub fn with_view<R>(&self, read: impl FnOnce(&LinkView) -> R) -> R {
        read(&self.view.borrow())
    }

    pub fn subscribe(&self) -> watch::Receiver<LinkView> {
        self.view.clone()
    }

    /// The owner's Auth client, while it is reachable.
    pub fn owner(&self) -> Option<Owner> {
        self.owner.borrow().as_ref().map(|(a, _)| a.clone())
    }

    pub fn owner_completions(&self) -> Option<OwnerCompletions> {
        self.owner.borrow().as_ref().map(|(_, c)| c.clone())
    }
}

/// Where the link starts from.
#[derive(Debug)]
pub struct LinkSpec {
    pub target: String,
    pub socket: PathBuf,
    /// The forward's state, when this daemon runs the forward itself.
    pub forward: Option<watch::Receiver<ForwardState>>,
    /// The account of a login kept on this machine's own store, if any: an
    /// owner serving the same account means a copied login.
    pub local_account: Option<String>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Starts the link's task. `fatal` is cancelled with the reason in
/// `why` when the follower must not go on (a copied login).
pub fn start(
    spec: LinkSpec,
    shutdown: CancellationToken,
) -> (Arc<Link>, tokio::sync::oneshot::Receiver<String>) {
    let (view_tx, view) = watch::channel(LinkView {
        since_ms: now_ms(),
        detail: "connecting to the owner".into(),
        ..LinkView::default()
    });
    let (owner_tx, owner) = watch::channel(None);
    let (fatal_tx, fatal) = tokio::sync::oneshot::channel();
    let link = Arc::new(Link {
        target: spec.target.clone(),
        socket: spec.socket.clone(),
        view,
        owner,
    });
    let task = Task {
        spec,
        view: view_tx,
        owner: owner_tx,
        shutdown,
    };
    tokio::spawn(async move {
        if let Err(why) = task.run().await {
            let _ = fatal_tx.send(why);
        }
    });
    (link, fatal)
}

struct Task {
    spec: LinkSpec,
    view: watch::Sender<LinkView>,
    owner: watch::Sender<Option<(Owner, OwnerCompletions)>>,
    shutdown: CancellationToken,
}

/// How one connection ended.
enum Ended {
    /// Try again after a pause, for this reason.
    Down(String),
    /// The owner answered but has no token to give (not logged in, say):
    /// ask again after a pause, still connected.
    NoToken(String),
    /// Do not go on.
    Fatal(String),
}

impl Task {
    /// Connects and follows until shutdown; `Err` when the follower must
    /// stop.
    async fn run(mut self) -> Result<(), String> {
        let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
        loop {
            let shutdown = self.shutdown.clone();
            let ended = tokio::select! {
                ended = self.follow(&mut backoff) => ended,
                () = shutdown.cancelled() => return Ok(()),
            };
            match ended {
                Ended::Fatal(why) => return Err(why),
                Ended::NoToken(why) => self.no_token(why),
                Ended::Down(why) => self.down(why),
            }
            let pause = backoff.fail();
            let mut forward = self.spec.forward.clone();
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = forward_changed(forward.as_mut()) => {}
                () = self.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// One connection: connect, check, and mirror tokens until it ends.
    async fn follow(&mut self, backoff: &mut Backoff) -> Ended {
        if let Some(why) = self.forward_problem() {
            return Ended::Down(why);
        }
        let mut client = match Client::connect(&self.spec.socket).await {
            Ok(c) => c,
            Err(e) => return Ended::Down(self.unreachable(&e)),
        };
        let status = match client.status().await {
            Ok(s) => s,
            Err(e) => return Ended::Down(self.unreachable(&e)),
        };
        let (account, email) = owner_account(&status);
        if let (Some(local), Some(owner)) = (&self.spec.local_account, &account)
            && local == owner
        {
            return Ended::Fatal(copied_login(&self.spec.target, owner));
        }
        self.owner
            .send_replace(Some((client.auth().clone(), client.completions().clone())));
        self.view.send_modify(|v| {
            v.owner_account_id = account.clone().unwrap_or_default();
            v.owner_email = email.clone();
        });
        let mut tokens = match client.watch_token("").await {
            Ok(t) => t,
            Err(e) => return self.refused(&e),
        };
        // The owner answers; its first token follows when it has one (a
        // logged-out owner sends it after a login).
        self.answered();
        loop {
            match tokens.next().await {
                Ok(Some(token)) => {
                    backoff.reset();
                    self.mirror(token);
                }
                Ok(None) => return Ended::Down("the owner closed its token stream".into()),
                Err(e) => return self.refused(&e),
            }
        }
    }

    /// An error from the owner: still reachable when it answered with a
    /// status of its own, unreachable when the connection failed.
    fn refused(&self, e: &piauth_client::Error) -> Ended {
        use piauth_client::Error as E;
        match e {
            E::Unauthenticated { .. }
            | E::FailedPrecondition { .. }
            | E::ResourceExhausted { .. } => Ended::NoToken(format!("the owner says: {e}")),
            _ => Ended::Down(self.unreachable(e)),
        }
    }

    fn mirror(&self, token: pb::Token) {
        let now = now_ms();
        tracing::debug!(
            expires_at_ms = token.expires_at_ms,
            "the owner sent a token"
        );
        self.view.send_modify(|v| {
            if !v.reachable {
                v.since_ms = now;
            }
            v.reachable = true;
            v.detail.clear();
            v.owner_account_id.clone_from(&token.account_id);
            v.token = Some(Mirrored {
                provider: token.provider,
                access: Secret::new(token.access_token),
                expires_at_ms: token.expires_at_ms,
                account_id: token.account_id,
                received_ms: now,
            });
        });
    }

    fn answered(&self) {
        let now = now_ms();
        self.view.send_modify(|v| {
            if !v.reachable {
                v.since_ms = now;
            }
            v.reachable = true;
            v.detail.clear();
        });
    }

    fn no_token(&self, why: String) {
        let now = now_ms();
        self.view.send_modify(|v| {
            if !v.reachable {
                v.since_ms = now;
            }
            v.reachable = true;
            v.token = None;
            v.detail = why;
        });
    }

    fn down(&self, why: String) {
        self.owner.send_replace(None);
        let now = now_ms();
        let changed = self.view.send_if_modified(|v| {
            let was = v.reachable;
            if was {
                v.since_ms = now;
            }
            v.reachable = false;
            let changed = was || v.detail != why;
            v.detail.clone_from(&why);
            changed
        });
        if changed {
            tracing::warn!(target = %self.spec.target, %why, "the owner cannot be reached; serving the last token while it is valid");
        }
    }

    /// Why the forward is not up, when this daemon runs one.
    fn forward_problem(&self) -> Option<String> {
        match self.spec.forward.as_ref().map(|f| f.borrow().clone())? {
            ForwardState::Up { .. } => None,
            ForwardState::Starting => Some("ssh is connecting".into()),
            ForwardState::Down { why, .. } => Some(format!("ssh: {why}")),
        }
    }

    /// Why the owner cannot be reached: the forward's own reason when it
    /// is not up, else what connecting said.
    fn unreachable(&self, e: &piauth_client::Error) -> String {
        use piauth_client::Error as E;
        if let Some(why) = self.forward_problem() {
            return why;
        }
        match e {
            E::PermissionDenied { message } => {
                format!("the owner's piauthd refused this user, so it is another user's: {message}")
            }
            E::NotRunning { socket, .. } if self.spec.forward.is_none() => format!(
                "nothing answers at {}; is the owner's piauthd running, and the socket forwarded?",
                socket.display()
            ),
            E::Untrusted { .. } => e.to_string(),
            _ => format!(
                "the owner's socket does not answer as piauthd; is piauthd running there? ({e})"
            ),
        }
    }
}

/// Waits until the forward's state changes (forever without a forward):
/// up, the link tries at once; down, it says why at once.
async fn forward_changed(forward: Option<&mut watch::Receiver<ForwardState>>) {
    let Some(forward) = forward else {
        return std::future::pending().await;
    };
    forward.mark_unchanged();
    if forward.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The owner's active account, from its Status.
fn owner_account(status: &pb::StatusResponse) -> (Option<String>, String) {
    status
        .accounts
        .iter()
        .find(|a| a.active)
        .map(|a| (Some(a.account_id.clone()), a.email.clone()))
        .unwrap_or((None, String::new()))
}

/// The refusal for a login that was copied to this machine.
fn copied_login(target: &str, account: &str) -> String {
    format!(
        "this machine's own store holds a login for account {account}, the account of the owner at \
         {target}: two machines refreshing one login revoke it for both. Remove the copy here \
         (pi-authctl logout, with no --follow) and follow the owner, or run piauthd without \
         --follow to own the login on this machine"
    )
}
