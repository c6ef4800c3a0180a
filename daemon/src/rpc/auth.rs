//! The `piauth.v1.Auth` service: proto in, broker calls, proto out.

use std::pin::Pin;
use std::sync::Arc;

use piauth_proto::v1 as pb;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::error::{not_yet, provider_arg};
use crate::broker::{self, Broker, CredentialKind, Grant, ProviderState, StoreHealth};

/// Serves `piauth.v1.Auth` from a broker.
#[derive(Debug, Clone)]
pub struct AuthService {
    broker: Arc<Broker>,
    socket_path: String,
    /// Ends open streams (WatchToken) at shutdown.
    shutdown: CancellationToken,
}

impl AuthService {
    pub fn new(
        broker: Arc<Broker>,
        socket_path: String,
        shutdown: CancellationToken,
    ) -> AuthService {
        AuthService {
            broker,
            socket_path,
            shutdown,
        }
    }
}

fn token_of(grant: Grant) -> pb::Token {
    pb::Token {
        provider: grant.provider,
        access_token: grant.access.expose().clone(),
        expires_at_ms: grant.expires_at_ms,
        account_id: grant.account_id,
    }
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let view = self.broker.view();
        let now = broker::now_ms();
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
                state: match r.state {
                    ProviderState::NotLoggedIn => pb::ProviderState::NotLoggedIn,
                    ProviderState::Valid => pb::ProviderState::Valid,
                    ProviderState::Expired => pb::ProviderState::Expired,
                    ProviderState::Static => pb::ProviderState::Static,
                    ProviderState::Unusable => pb::ProviderState::Unspecified,
                    ProviderState::Refreshing => pb::ProviderState::Refreshing,
                    ProviderState::NeedsLogin => pb::ProviderState::NeedsLogin,
                    ProviderState::Degraded => pb::ProviderState::Degraded,
                } as i32,
                account_id: r.account_id,
                email: r.email,
                plan: r.plan,
                expires_at_ms: r.expires_at_ms,
                hint: r.hint,
                last_refresh_ms: r.last_refresh_ms,
                refresh_count: r.refresh_count,
                next_refresh_ms: r.next_refresh_ms,
                last_error: r.last_error,
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            now_ms: now,
            store: Some(pb::StoreStatus {
                kind: pb::StoreKind::File as i32,
                path: self.broker.store().path().display().to_string(),
                health: health as i32,
                detail: view.detail.clone(),
            }),
            providers,
            socket_path: self.socket_path.clone(),
        }))
    }

    async fn get_token(
        &self,
        req: Request<pb::GetTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let req = req.into_inner();
        let provider = provider_arg(&req.provider)?;
        let grant = self.broker.get_token(provider, req.min_valid_secs).await?;
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
        let provider = provider_arg(&req.into_inner().provider)?.to_owned();
        let mut changes = self.broker.subscribe();
        let shutdown = self.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut last_sent: Option<String> = None;
            loop {
                let view = changes.borrow_and_update().clone();
                match broker::current_grant(&view, &provider, broker::now_ms()) {
                    Ok(Some(grant)) if last_sent.as_deref() != Some(grant.access.expose()) => {
                        last_sent = Some(grant.access.expose().clone());
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
        if provider != broker::DEFAULT_PROVIDER {
            return Err(super::error::status(
                tonic::Code::InvalidArgument,
                super::error::Reason::UnsupportedProvider,
                format!(
                    "piauthd refreshes only {}; pi refreshes {provider} itself",
                    broker::DEFAULT_PROVIDER
                ),
            ));
        }
        self.broker.force_refresh().await?;
        let grant = self.broker.get_token(provider, 0).await?;
        Ok(Response::new(token_of(grant)))
    }

    type LoginStream = EventStream<pb::LoginEvent>;

    async fn login(
        &self,
        _req: Request<pb::LoginRequest>,
    ) -> Result<Response<Self::LoginStream>, Status> {
        Err(not_yet("Login (browser, paste and device-code login)"))
    }

    async fn submit_code(
        &self,
        _req: Request<pb::SubmitCodeRequest>,
    ) -> Result<Response<pb::SubmitCodeResponse>, Status> {
        Err(not_yet("SubmitCode (pasted login codes)"))
    }

    async fn logout(
        &self,
        _req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        Err(not_yet("Logout"))
    }
}
