//! The `piauth.v1.Auth` service: proto in, broker calls, proto out.

use std::pin::Pin;
use std::sync::Arc;

use piauth_proto::v1 as pb;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use tonic::Code;

use super::error::{Reason, only_default, provider_arg, session_arg, status};
use crate::accounts::Accounts;
use crate::broker::{self, Broker, CredentialKind, Grant, StoreHealth};
use crate::codex::Codex;
use crate::login::{FailureKind, LoginEvent, Logins, Method, SubmitError};
use crate::secret::Secret;

/// The daemon's own settings that Status reports, so a user can confirm
/// which socket, issuer, backend and config file are in use.
#[derive(Debug, Clone, Default)]
pub struct About {
    pub socket_path: String,
    pub issuer: String,
    pub codex_base_url: String,
    /// Empty when no config file was read.
    pub config_file: String,
}

/// Serves `piauth.v1.Auth` from a broker.
#[derive(Debug, Clone)]
pub struct AuthService {
    /// The keeper of the active account.
    broker: Arc<Broker>,
    accounts: Arc<Accounts>,
    logins: Arc<Logins>,
    /// The Codex backend, for its usage endpoint.
    codex: Codex,
    about: About,
    /// Ends open streams (WatchToken) at shutdown.
    shutdown: CancellationToken,
    /// Bounds the WatchToken streams open at once (each holds a task).
    watchers: Arc<tokio::sync::Semaphore>,
}

impl AuthService {
    pub fn new(
        accounts: Arc<Accounts>,
        logins: Arc<Logins>,
        codex: Codex,
        about: About,
        shutdown: CancellationToken,
    ) -> AuthService {
        AuthService {
            broker: accounts.active().clone(),
            accounts,
            logins,
            codex,
            about,
            shutdown,
            watchers: Arc::new(tokio::sync::Semaphore::new(super::MAX_WATCHERS)),
        }
    }
}

fn token_of(grant: Grant) -> pb::Token {
    pb::Token {
        provider: grant.provider,
        access_token: grant.access.into_exposed(),
        expires_at_ms: grant.expires_at_ms,
        account_id: grant.account_id,
    }
}

/// A server stream of the Auth service (WatchToken, Login).
pub(super) type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let view = self.broker.view();
        let now = self.broker.now_ms();
        let health = match view.health {
            StoreHealth::Ok => pb::StoreHealth::Ok,
            StoreHealth::Missing => pb::StoreHealth::Missing,
            StoreHealth::Corrupt => pb::StoreHealth::Corrupt,
            StoreHealth::Unreadable => pb::StoreHealth::Unreadable,
            StoreHealth::Degraded => pb::StoreHealth::Degraded,
        };
        let providers = broker::report(&view, now)
            .into_iter()
            .map(|r| pb::ProviderStatus {
                provider: r.provider,
                kind: match r.kind {
                    CredentialKind::OAuth => pb::CredentialKind::Oauth,
                    CredentialKind::ApiKey => pb::CredentialKind::ApiKey,
                    CredentialKind::Other => pb::CredentialKind::Other,
                } as i32,
                state: super::accounts::state(r.state) as i32,
                account_id: r.account_id,
                email: r.email,
                plan: r.plan,
                expires_at_ms: r.expires_at_ms,
                hint: r.hint,
                // The wire's 0 for "none".
                last_refresh_ms: r.last_refresh_ms.unwrap_or(0),
                refresh_count: r.refresh_count,
                next_refresh_ms: r.next_refresh_ms.unwrap_or(0),
                last_error: r.last_error,
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            now_ms: now,
            store: Some(pb::StoreStatus {
                kind: if self.broker.store_is_keyring() {
                    pb::StoreKind::Keyring
                } else {
                    pb::StoreKind::File
                } as i32,
                path: self.broker.store_describe(),
                health: health as i32,
                detail: view.detail.clone(),
            }),
            providers,
            socket_path: self.about.socket_path.clone(),
            issuer: self.about.issuer.clone(),
            codex_base_url: self.about.codex_base_url.clone(),
            config_file: self.about.config_file.clone(),
            accounts: super::accounts::list(&self.accounts).accounts,
            follow: None,
        }))
    }

    async fn get_token(
        &self,
        req: Request<pb::GetTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let req = req.into_inner();
        let provider = provider_arg(&req.provider)?;
        let session = session_arg(&req.session_id)?;
        let grant = self
            .accounts
            .get_token(session, provider, req.min_valid_secs)
            .await?;
        tracing::debug!(
            provider,
            expires_at_ms = grant.expires_at_ms,
            "served a token"
        );
        Ok(Response::new(token_of(grant)))
    }

    type WatchTokenStream = EventStream<pb::Token>;

    async fn watch_token(
        &self,
        req: Request<pb::WatchTokenRequest>,
    ) -> Result<Response<Self::WatchTokenStream>, Status> {
        let req = req.into_inner();
        let provider = provider_arg(&req.provider)?.to_owned();
        let session = session_arg(&req.session_id)?.to_owned();
        let permit = self.watchers.clone().try_acquire_owned().map_err(|_| {
            status(
                Code::ResourceExhausted,
                Reason::Unspecified,
                format!(
                    "piauthd already serves {} WatchToken streams; close some (one per \
                     process is enough) and try again",
                    super::MAX_WATCHERS
                ),
            )
        })?;
        let accounts = self.accounts.clone();
        let shutdown = self.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let _permit = permit;
            let mut switches = accounts.switches();
            // The keeper serving this session; another account's when the
            // session moves (other providers: the active store's).
            let choose = |keep: &Arc<Broker>| -> Arc<Broker> {
                if provider != broker::DEFAULT_PROVIDER {
                    return accounts.active().clone();
                }
                accounts.choose(&session).unwrap_or_else(|_| keep.clone())
            };
            let mut me = choose(accounts.active());
            let mut changes = me.subscribe();
            let mut last_sent: Option<Secret<String>> = None;
            loop {
                let view = changes.borrow_and_update().clone();
                match broker::current_grant(&view, &provider, me.now_ms()) {
                    Ok(Some(grant)) if last_sent.as_ref() != Some(&grant.access) => {
                        last_sent = Some(grant.access.clone());
                        if tx.send(Ok(token_of(grant))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                }
                tokio::select! {
                    () = tx.closed() => return,
                    () = shutdown.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                    switched = switches.changed() => {
                        if switched.is_err() {
                            return;
                        }
                        let next = choose(&me);
                        if !Arc::ptr_eq(&next, &me) {
                            me = next;
                            changes = me.subscribe();
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn refresh(
        &self,
        req: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let req = req.into_inner();
        let provider = provider_arg(&req.provider)?;
        only_default(provider, "piauthd refreshes")?;
        self.broker.force_refresh().await?;
        let grant = self.broker.get_token(provider, 0).await?;
        Ok(Response::new(token_of(grant)))
    }

    type LoginStream = EventStream<pb::LoginEvent>;

    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<Self::LoginStream>, Status> {
        let req = req.into_inner();
        let provider = provider_arg(&req.provider)?;
        only_default(provider, "piauthd logs in to")?;
        let method = match pb::LoginMethod::try_from(req.method).unwrap_or_default() {
            pb::LoginMethod::DeviceCode => Method::DeviceCode,
            pb::LoginMethod::Browser | pb::LoginMethod::Unspecified => Method::Browser,
        };
        let timeout =
            (req.timeout_secs > 0).then(|| Duration::from_secs(u64::from(req.timeout_secs)));
        let mut events = self
            .logins
            .start(method, timeout, self.shutdown.clone())
            .map_err(|e| {
                status(
                    Code::FailedPrecondition,
                    Reason::LoginInProgress,
                    e.to_string(),
                )
            })?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            // Forwarding ends when the client goes away; dropping `events`
            // then cancels the login and closes the callback port.
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(event) => if tx.send(Ok(login_event(event))).await.is_err() { return },
                        None => return,
                    },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn submit_code(
        &self,
        req: Request<pb::SubmitCodeRequest>,
    ) -> Result<Response<pb::SubmitCodeResponse>, Status> {
        let req = req.into_inner();
        provider_arg(&req.provider)?;
        self.logins
            .submit(Secret::new(req.input))
            .await
            .map_err(|e| match e {
                SubmitError::NoLogin | SubmitError::DeviceLogin => status(
                    Code::FailedPrecondition,
                    Reason::NoLoginInProgress,
                    e.to_string(),
                ),
                SubmitError::Rejected(_) | SubmitError::Exchange(_) => {
                    status(Code::InvalidArgument, Reason::PasteRejected, e.to_string())
                }
            })?;
        Ok(Response::new(pb::SubmitCodeResponse {}))
    }

    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let req = req.into_inner();
        let provider = provider_arg(&req.provider)?;
        let removed = self.broker.logout(provider).await.map_err(|e| {
            let reason = match e {
                broker::TokenError::StoreCorrupt { .. } => Reason::StoreCorrupt,
                _ => Reason::StoreUnavailable,
            };
            status(Code::FailedPrecondition, reason, e.to_string())
        })?;
        Ok(Response::new(pb::LogoutResponse { removed }))
    }

    async fn usage(
        &self,
        req: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let fresh = req.into_inner().fresh;
        super::usage::usage(&self.accounts, &self.codex, fresh)
            .await
            .map(Response::new)
    }

    async fn report_limit(
        &self,
        req: Request<pb::LimitReport>,
    ) -> Result<Response<pb::Token>, Status> {
        let req = req.into_inner();
        let session = session_arg(&req.session_id)?;
        let account = super::accounts::account_arg(&req.account_id)?;
        if !self.accounts.knows(account) {
            return Err(super::accounts::refused(self.accounts.unknown(account)));
        }
        self.accounts
            .note_limit(account, (req.resets_at > 0).then_some(req.resets_at));
        let grant = self
            .accounts
            .get_token(session, broker::DEFAULT_PROVIDER, req.min_valid_secs)
            .await?;
        Ok(Response::new(token_of(grant)))
    }

    async fn accounts(
        &self,
        _req: Request<pb::AccountsRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        Ok(Response::new(super::accounts::list(&self.accounts)))
    }

    async fn use_account(
        &self,
        req: Request<pb::UseAccountRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        let req = req.into_inner();
        if req.automatic {
            self.accounts.prefer(None).await;
            return Ok(Response::new(super::accounts::list(&self.accounts)));
        }
        let id = super::accounts::account_arg(&req.account_id)?;
        self.accounts
            .use_account(id)
            .await
            .map_err(super::accounts::refused)?;
        Ok(Response::new(super::accounts::list(&self.accounts)))
    }

    async fn remove_account(
        &self,
        req: Request<pb::RemoveAccountRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        let req = req.into_inner();
        let id = super::accounts::account_arg(&req.account_id)?;
        self.accounts
            .remove(id)
            .await
            .map_err(super::accounts::refused)?;
        Ok(Response::new(super::accounts::list(&self.accounts)))
    }
}

fn login_event(event: LoginEvent) -> pb::LoginEvent {
    use pb::login_event::Event;
    let event = match event {
        LoginEvent::AuthorizeUrl {
            url,
            issuer_url,
            callback_addr,
        } => Event::AuthorizeUrl(pb::AuthorizeUrl {
            url,
            callback_addr: callback_addr.map(|a| a.to_string()).unwrap_or_default(),
            issuer_url,
        }),
        LoginEvent::Waiting(message) => Event::Waiting(pb::Waiting { message }),
        LoginEvent::DeviceCode {
            verification_url,
            user_code,
            expires_at_ms,
        } => Event::DeviceCode(pb::DeviceCode {
            verification_url,
            user_code,
            expires_at_ms,
        }),
        LoginEvent::CallbackUnavailable(message) => {
            Event::CallbackUnavailable(pb::CallbackUnavailable { message })
        }
        LoginEvent::Success {
            account_id,
            email,
            plan,
            kept,
        } => Event::Success(pb::LoginSuccess {
            provider: broker::DEFAULT_PROVIDER.into(),
            account_id,
            email,
            plan,
            kept: kept.unwrap_or_default(),
        }),
        LoginEvent::Failure { kind, message } => Event::Failure(pb::LoginFailure {
            kind: match kind {
                FailureKind::Denied => pb::LoginFailureKind::Denied,
                FailureKind::ExchangeFailed => pb::LoginFailureKind::ExchangeFailed,
                FailureKind::Timeout => pb::LoginFailureKind::Timeout,
                FailureKind::InvalidToken => pb::LoginFailureKind::InvalidToken,
                FailureKind::StoreFailed => pb::LoginFailureKind::StoreFailed,
                FailureKind::DeviceCodeUnavailable => pb::LoginFailureKind::DeviceCodeUnavailable,
                FailureKind::CallbackPortHeld => pb::LoginFailureKind::CallbackPortHeld,
            } as i32,
            message,
        }),
        LoginEvent::Cancelled(message) => Event::Cancelled(pb::LoginCancelled { message }),
    };
    pb::LoginEvent { event: Some(event) }
}
