//! Running a login: browser with the localhost callback, paste, or device
//! code. One login at a time; it reports its progress as [`LoginEvent`]s.
//!
//! The flow is a task of its own. It ends, and the callback port closes,
//! when a code is exchanged, the user is refused, the time runs out, the
//! client goes away, or the daemon shuts down, whichever comes first.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, AccountsError, Added};
use crate::broker::AccountError;
use crate::callback::{self, CallbackEvent, CallbackServer, Flow, Refusal};
use crate::oauth::{self, PasteError, Pkce};
use crate::secret::Secret;
use crate::upstream::{self, Issuer, LoginHttpError};

mod device;

/// The longest a device login is polled (docs/PROTOCOL.md §1).
pub const DEVICE_LIMIT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Browser,
    DeviceCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Denied,
    ExchangeFailed,
    Timeout,
    InvalidToken,
    StoreFailed,
    DeviceCodeUnavailable,
    /// Another user holds a callback port: only the device code is safe.
    CallbackPortHeld,
}

/// Progress of a login, for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginEvent {
    /// Where to sign in. `url` is for a browser on this machine: the
    /// one-time start URL while the callback listens, else `issuer_url`.
    /// `issuer_url` holds `state`: it is shown, never put in an argv.
    AuthorizeUrl {
        url: String,
        issuer_url: String,
        callback_addr: Option<SocketAddr>,
    },
    Waiting(String),
    DeviceCode {
        verification_url: String,
        user_code: String,
        expires_at_ms: i64,
    },
    CallbackUnavailable(String),
    Success {
        account_id: String,
        email: String,
        plan: String,
        /// The account active before, when it was another one, now kept
        /// beside this one (email, else account id).
        kept: Option<String>,
    },
    Failure {
        kind: FailureKind,
        message: String,
    },
    Cancelled(String),
}

/// Settings of the login flow.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// Where the callback listener may bind, in order (1455, then 1457).
    pub callback_addrs: Vec<SocketAddr>,
    /// `originator` in the authorize URL.
    pub originator: String,
    /// How long a login may take unless the request says otherwise.
    pub default_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error(
        "a login is already in progress; finish it, or cancel it (Ctrl-C in its pi-authctl) first"
    )]
    InProgress,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("no login is in progress: run `pi-authctl login` first")]
    NoLogin,
    #[error("the login in progress uses a device code; there is nothing to paste")]
    DeviceLogin,
    #[error(transparent)]
    Rejected(#[from] PasteError),
    #[error("the issuer did not accept that code ({0}); paste the URL again")]
    Exchange(String),
}

struct Paste {
    input: Secret<String>,
    reply: oneshot::Sender<Result<(), SubmitError>>,
}

struct Active {
    id: u64,
    /// `None` for a device login.
    paste: Option<mpsc::Sender<Paste>>,
}

/// The one login that may be in progress.
pub struct Logins {
    accounts: Arc<Accounts>,
    issuer: Issuer,
    settings: LoginSettings,
    active: Mutex<Option<Active>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Clears the active login when its task ends, however it ends.
struct ActiveGuard {
    logins: Arc<Logins>,
    id: u64,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut active = self.logins.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.as_ref().is_some_and(|a| a.id == self.id) {
            *active = None;
        }
    }
}

impl Logins {
    pub fn new(accounts: Arc<Accounts>, issuer: Issuer, settings: LoginSettings) -> Arc<Logins> {
        Arc::new(Logins {
            accounts,
            issuer,
            settings,
            active: Mutex::new(None),
            next_id: AtomicU64::new(1),
        })
    }

    /// Starts a login; its events arrive on the returned receiver. Dropping
    /// the receiver cancels the login.
    pub fn start(
        self: &Arc<Self>,
        method: Method,
        timeout: Option<Duration>,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<LoginEvent>, StartError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (paste_tx, paste_rx) = mpsc::channel(4);
        {
            let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            if active.is_some() {
                return Err(StartError::InProgress);
            }
            *active = Some(Active {
                id,
                paste: (method == Method::Browser).then_some(paste_tx),
            });
        }
        let (events, rx) = mpsc::channel(16);
        let guard = ActiveGuard {
            logins: self.clone(),
            id,
        };
        let me = self.clone();
        let timeout = timeout.unwrap_or(me.settings.default_timeout);
        tokio::spawn(async move {
            let _guard = guard;
            let flow = async {
                match method {
                    Method::Browser => me.browser(&events, paste_rx).await,
                    Method::DeviceCode => me.device(&events).await,
                }
            };
            let last = tokio::select! {
                last = flow => last,
                () = tokio::time::sleep(timeout) => Some(LoginEvent::Failure {
                    kind: FailureKind::Timeout,
                    message: format!("the login timed out after {}s; run `pi-authctl login` again", timeout.as_secs()),
                }),
                () = events.closed() => {
                    tracing::info!("the login's client went away; login cancelled");
                    None
                }
                () = shutdown.cancelled() => Some(LoginEvent::Cancelled("piauthd is shutting down".into())),
            };
            if let Some(last) = last {
                let _ = events.send(last).await;
            }
        });
        Ok(rx)
    }

    /// Delivers a paste to the login in progress and waits for its verdict.
    pub async fn submit(&self, input: Secret<String>) -> Result<(), SubmitError> {
        let sender = {
            let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            match active.as_ref() {
                None => return Err(SubmitError::NoLogin),
                Some(Active { paste: None, .. }) => return Err(SubmitError::DeviceLogin),
                Some(Active {
                    paste: Some(tx), ..
                }) => tx.clone(),
            }
        };
        let (reply, verdict) = oneshot::channel();
        sender
            .send(Paste { input, reply })
            .await
            .map_err(|_| SubmitError::NoLogin)?;
        verdict.await.unwrap_or(Err(SubmitError::NoLogin))
    }

    /// The browser flow. Returns the final event.
    async fn browser(
        self: &Arc<Self>,
        events: &mpsc::Sender<LoginEvent>,
        mut pastes: mpsc::Receiver<Paste>,
    ) -> Option<LoginEvent> {
        let pkce = Pkce::generate();
        let state = oauth::new_state();
        let (codes_tx, mut codes) = mpsc::channel(4);
        let addrs = &self.settings.callback_addrs;
        let (bound, busy) = match bind_callback(addrs).await {
            Ok(bound) => bound,
            Err(failure) => return Some(failure),
        };
        let port = bound
            .as_ref()
            .map(|b| b.addr.port())
            .or_else(|| addrs.first().map(SocketAddr::port))
            .unwrap_or(1455);
        let redirect = oauth::redirect_uri(port);
        let issuer_url = oauth::authorize_url(
            &self.issuer.base(),
            upstream::CLIENT_ID,
            &redirect,
            &pkce.challenge,
            &state,
            &self.settings.originator,
        );
        let server = bound.map(|bound| {
            let flow = Flow {
                port,
                state: Secret::new(state.clone()),
                start_nonce: Secret::new(oauth::new_state()),
                cookie: Secret::new(oauth::new_state()),
                authorize_url: Secret::new(issuer_url.clone()),
            };
            CallbackServer::start(bound, flow, codes_tx)
        });
        let callback_addr = server.as_ref().map(|s| s.addr);
        let url = server
            .as_ref()
            .map_or_else(|| issuer_url.clone(), |s| s.start_url().to_owned());
        send(
            events,
            LoginEvent::AuthorizeUrl {
                url,
                issuer_url,
                callback_addr,
            },
        )
        .await;
        match &busy {
            Some(why) => {
                send(events, LoginEvent::CallbackUnavailable(format!(
                    "the browser cannot return to piauthd ({why}; another login, Codex CLI or pi may hold \
                     the port). After signing in, paste the URL your browser ends on (it will not load), \
                     or run `pi-authctl login --device`."
                )))
                .await;
            }
            None => tracing::info!(addr = ?callback_addr, "login callback listening"),
        }
        send(
            events,
            LoginEvent::Waiting("waiting for the browser sign-in or a pasted URL".into()),
        )
        .await;

        loop {
            let step = tokio::select! {
                Some(event) = codes.recv() => {
                    Step::Done(self.on_callback(event, &pkce.verifier, &redirect).await)
                }
                Some(paste) = pastes.recv() => self.on_paste(paste, &state, &pkce.verifier, &redirect).await,
                else => return None,
            };
            if let Step::Done(last) = step {
                return Some(last);
            }
        }
        // `server` drops here or on cancel: the port closes with it.
    }

    /// What a return to the callback ends the login with.
    async fn on_callback(
        &self,
        event: CallbackEvent,
        verifier: &Secret<String>,
        redirect: &str,
    ) -> LoginEvent {
        match event {
            CallbackEvent::Code(code) => match self.exchange(&code, verifier, redirect).await {
                Ok(done) => done,
                Err(e) => e.into_failure(),
            },
            CallbackEvent::Denied(reason) => LoginEvent::Failure {
                kind: FailureKind::Denied,
                message: format!("the sign-in was refused: {reason}"),
            },
            CallbackEvent::StartReused => LoginEvent::Failure {
                kind: FailureKind::Denied,
                message: "the login's start link was opened a second time, so the login \
                          was stopped for safety; run `pi-authctl login` again and open \
                          its link in one browser only"
                    .into(),
            },
        }
    }

    /// Judges a pasted URL or code and answers the paster. A paste that does
    /// not parse, or a code the issuer refuses (mistyped), leaves the login
    /// open.
    async fn on_paste(
        &self,
        paste: Paste,
        state: &str,
        verifier: &Secret<String>,
        redirect: &str,
    ) -> Step {
        let pasted = match oauth::parse_paste(paste.input.expose(), state) {
            Ok(p) => p,
            Err(PasteError::Denied(reason)) => {
                let _ = paste
                    .reply
                    .send(Err(PasteError::Denied(reason.clone()).into()));
                return Step::Done(LoginEvent::Failure {
                    kind: FailureKind::Denied,
                    message: format!("the sign-in was refused: {reason}"),
                });
            }
            Err(e) => {
                let _ = paste.reply.send(Err(e.into()));
                return Step::Open;
            }
        };
        match self.exchange(&pasted.code, verifier, redirect).await {
            Ok(done) => {
                let _ = paste.reply.send(Ok(()));
                Step::Done(done)
            }
            Err(ExchangeError::Http(e)) => {
                let _ = paste.reply.send(Err(SubmitError::Exchange(e.to_string())));
                Step::Open
            }
            Err(e) => {
                let message = e.to_string();
                let _ = paste.reply.send(Err(SubmitError::Exchange(message)));
                Step::Done(e.into_failure())
            }
        }
    }

    /// Exchanges a code, checks the claims, stores the credential.
    async fn exchange(
        &self,
        code: &Secret<String>,
        verifier: &Secret<String>,
        redirect: &str,
    ) -> Result<LoginEvent, ExchangeError> {
        let sent_at = self.accounts.active().now_ms();
        let tokens = self
            .issuer
            .exchange_code(code, verifier, redirect)
            .await
            .map_err(ExchangeError::Http)?;
        let claims =
            oauth::read_claims(tokens.access_token.expose()).map_err(ExchangeError::Claims)?;
        let id_claims = tokens
            .id_token
            .as_ref()
            .and_then(|t| oauth::read_claims(t.expose()).ok())
            .unwrap_or_default();
        let email = claims.email.clone().or(id_claims.email).unwrap_or_default();
        let plan = claims.plan.clone().or(id_claims.plan).unwrap_or_default();
        let account_id = claims
            .account_id
            .clone()
            .ok_or(ExchangeError::Account(AccountError::NoAccountId))?;
        let before = self.active_account();
        let added = self
            .accounts
            .install_login(tokens, &claims, sent_at)
            .await
            .map_err(|e| match e {
                AccountsError::Account(AccountError::Store(e)) => ExchangeError::Store(e),
                AccountsError::Account(AccountError::ShuttingDown) => ExchangeError::Stopping,
                AccountsError::Account(e) => ExchangeError::Account(e),
                e => ExchangeError::Accounts(e),
            })?;
        let kept = match added {
            Added::Beside { previous } => Some(
                before
                    .filter(|(id, _)| *id == previous)
                    .and_then(|(_, email)| email)
                    .unwrap_or(previous),
            ),
            Added::Active | Added::Renewed => None,
        };
        Ok(LoginEvent::Success {
            account_id,
            email,
            plan,
            kept,
        })
    }

    /// The active account: its id, and its email when the token says.
    fn active_account(&self) -> Option<(String, Option<String>)> {
        let view = self.accounts.active().view();
        let cred = view.codex()?;
        let claims = oauth::read_claims(cred.access.expose()).unwrap_or_default();
        let id = cred.account_id.clone().or(claims.account_id)?;
        Some((id, claims.email))
    }
}

#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("the code exchange failed: {0}")]
    Http(LoginHttpError),
    #[error("the login's token is unusable: {0}")]
    Claims(oauth::ClaimsError),
    #[error("the login's token is unusable: {0}")]
    Account(AccountError),
    #[error("signed in, but the credential could not be stored: {0}")]
    Store(crate::store::StoreError),
    #[error(
        "signed in, but piauthd stopped before the credential was stored: start piauthd and log in again"
    )]
    Stopping,
    #[error("signed in, but the account could not be added: {0}")]
    Accounts(AccountsError),
}

impl ExchangeError {
    fn into_failure(self) -> LoginEvent {
        let kind = match &self {
            ExchangeError::Http(_) => FailureKind::ExchangeFailed,
            ExchangeError::Claims(_) | ExchangeError::Account(_) => FailureKind::InvalidToken,
            ExchangeError::Store(_) | ExchangeError::Stopping | ExchangeError::Accounts(_) => {
                FailureKind::StoreFailed
            }
        };
        LoginEvent::Failure {
            kind,
            message: self.to_string(),
        }
    }
}

async fn send(events: &mpsc::Sender<LoginEvent>, event: LoginEvent) {
    let _ = events.send(event).await;
}

/// Whether a browser login goes on after an event.
enum Step {
    Open,
    Done(LoginEvent),
}

/// Binds the callback listener. `Ok((None, Some(why)))` when the port is
/// unavailable (the login goes on by paste); an error ends the login when
/// another user holds the port, since a browser could hand them the code.
async fn bind_callback(
    addrs: &[SocketAddr],
) -> Result<(Option<callback::Bound>, Option<String>), LoginEvent> {
    match callback::bind(addrs).await {
        Ok(bound) => Ok((Some(bound), None)),
        Err(Refusal::Foreign { addr, holder }) => {
            tracing::warn!(%addr, %holder, "another user holds the login callback port; browser login refused");
            Err(LoginEvent::Failure {
                kind: FailureKind::CallbackPortHeld,
                message: format!(
                    "the browser login is not safe here: {addr} is held by {holder}, not by you, \
                     and a browser could hand it your sign-in. Run `pi-authctl login --device` \
                     (device-code login) instead, or have that listener stopped"
                ),
            })
        }
        Err(Refusal::Unavailable(errors)) => Ok((
            None,
            Some(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        )),
    }
}
