//! A follower's services: `piauth.v1.Auth` and `Completions` served from
//! another piauthd, the owner, reached through [`link`].
//!
//! Tokens are served from what the owner pushed, while they are valid for
//! the caller; everything that changes or reads the login (Refresh, Login,
//! Logout, Usage, Accounts) is forwarded to the owner. Nothing here calls
//! the issuer, and nothing here holds a refresh token: the owner never
//! sends one.

pub mod link;

use std::sync::Arc;

use piauth_proto::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

use super::auth::EventStream;
use super::error::{Reason, provider_arg, session_arg, status};
use crate::broker::{MAX_MIN_VALID_MS, effective_min_valid_ms};
use crate::secret::Secret;
use link::{Link, LinkView, Mirrored, now_ms};

/// Serves `piauth.v1.Auth` from the owner.
#[derive(Debug, Clone)]
pub struct FollowerAuth {
    link: Arc<Link>,
    /// The follower's own socket, for Status.
    socket_path: String,
    shutdown: CancellationToken,
    watchers: Arc<tokio::sync::Semaphore>,
}

impl FollowerAuth {
    pub fn new(link: Arc<Link>, socket_path: String, shutdown: CancellationToken) -> FollowerAuth {
        FollowerAuth {
            link,
            socket_path,
            shutdown,
            watchers: Arc::new(tokio::sync::Semaphore::new(super::MAX_WATCHERS)),
        }
    }

    /// The owner's client, or UNAVAILABLE naming the owner and what to do.
    fn owner(&self) -> Result<link::Owner, Status> {
        self.link
            .owner()
            .ok_or_else(|| unreachable(&self.link, &self.link.view()))
    }
}

/// UNAVAILABLE: the owner cannot be reached, and why.
fn unreachable(link: &Link, view: &LinkView) -> Status {
    status(
        Code::Unavailable,
        Reason::OwnerUnreachable,
        format!(
            "piauthd follows the owner at {}, which cannot be reached ({}), and has no token \
             valid long enough. Check that the owner's piauthd runs and that this machine can \
             reach it (`pi-authctl status` here says more); this daemon reconnects by itself",
            link.target, view.detail
        ),
    )
}

/// The mirrored token, when it is valid for `min_valid_secs` more.
fn valid_for(view: &LinkView, min_valid_secs: u32, now: i64) -> Option<&Mirrored> {
    let token = view.token.as_ref()?;
    let lifetime = token.expires_at_ms - token.received_ms;
    let wanted = effective_min_valid_ms(min_valid_secs, lifetime).min(MAX_MIN_VALID_MS);
    (token.expires_at_ms - now > wanted.max(0)).then_some(token)
}

/// A session's token comes from the owner's default while the session
/// asks for nothing more (its pins are the owner's business).
fn default_provider(provider: &str) -> Result<(), Status> {
    if provider == crate::shared::DEFAULT_PROVIDER {
        Ok(())
    } else {
        Err(status(
            Code::InvalidArgument,
            Reason::UnsupportedProvider,
            format!("a follower serves only {}", crate::shared::DEFAULT_PROVIDER),
        ))
    }
}

#[tonic::async_trait]
impl pb::auth_server::Auth for FollowerAuth {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let view = self.link.view();
        let mut out = match self.link.owner() {
            Some(mut owner) => match owner.status(pb::StatusRequest {}).await {
                Ok(r) => r.into_inner(),
                Err(_) => pb::StatusResponse::default(),
            },
            None => pb::StatusResponse::default(),
        };
        out.daemon_version = env!("CARGO_PKG_VERSION").into();
        out.pid = std::process::id();
        out.now_ms = now_ms();
        out.socket_path.clone_from(&self.socket_path);
        out.follow = Some(pb::FollowStatus {
            target: self.link.target.clone(),
            reachable: view.reachable,
            since_ms: view.since_ms,
            detail: view.detail.clone(),
            owner_account_id: view.owner_account_id.clone(),
            owner_email: view.owner_email.clone(),
            owner_socket: self.link.socket.display().to_string(),
        });
        Ok(Response::new(out))
    }

    async fn get_token(
        &self,
        req: Request<pb::GetTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let req = req.into_inner();
        default_provider(provider_arg(&req.provider)?)?;
        session_arg(&req.session_id)?;
        // The hot path reads the view in place: no copy of it per call.
        let now = now_ms();
        let served = self
            .link
            .with_view(|v| valid_for(v, req.min_valid_secs, now).map(Mirrored::to_wire));
        if let Some(token) = served {
            return Ok(Response::new(token));
        }
        // Too short for this caller: the owner refreshes if it must.
        match self.link.owner() {
            Some(mut owner) => owner.get_token(req).await,
            None => Err(unreachable(&self.link, &self.link.view())),
        }
    }

    type WatchTokenStream = EventStream<pb::Token>;

    async fn watch_token(
        &self,
        req: Request<pb::WatchTokenRequest>,
    ) -> Result<Response<Self::WatchTokenStream>, Status> {
        let req = req.into_inner();
        default_provider(provider_arg(&req.provider)?)?;
        session_arg(&req.session_id)?;
        // As the owner's own stream: the first token when there is one.
        let view = self.link.view();
        if view.token.is_none() && !view.reachable {
            return Err(unreachable(&self.link, &view));
        }
        let permit = self.watchers.clone().try_acquire_owned().map_err(|_| {
            status(
                Code::ResourceExhausted,
                Reason::Unspecified,
                "this follower already serves its most WatchToken streams; close some",
            )
        })?;
        let mut changes = self.link.subscribe();
        let shutdown = self.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let _permit = permit;
            let mut last: Option<Secret<String>> = None;
            loop {
                let token = changes.borrow_and_update().token.clone();
                if let Some(token) = token
                    && last.as_ref() != Some(&token.access)
                {
                    last = Some(token.access.clone());
                    if tx.send(Ok(token.to_wire())).await.is_err() {
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
        self.owner()?.refresh(req.into_inner()).await
    }

    type LoginStream = EventStream<pb::LoginEvent>;

    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<Self::LoginStream>, Status> {
        let mut req = req.into_inner();
        // The owner's browser callback listens on the owner's machine,
        // which a browser here cannot reach: a device code works anywhere.
        if req.method == pb::LoginMethod::Unspecified as i32 {
            req.method = pb::LoginMethod::DeviceCode as i32;
        }
        let events = self.owner()?.login(req).await?.into_inner();
        Ok(Response::new(Box::pin(events)))
    }

    async fn submit_code(
        &self,
        req: Request<pb::SubmitCodeRequest>,
    ) -> Result<Response<pb::SubmitCodeResponse>, Status> {
        self.owner()?.submit_code(req.into_inner()).await
    }

    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        self.owner()?.logout(req.into_inner()).await
    }

    async fn usage(
        &self,
        req: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        self.owner()?.usage(req.into_inner()).await
    }

    async fn report_limit(
        &self,
        req: Request<pb::LimitReport>,
    ) -> Result<Response<pb::Token>, Status> {
        self.owner()?.report_limit(req.into_inner()).await
    }

    async fn accounts(
        &self,
        req: Request<pb::AccountsRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        self.owner()?.accounts(req.into_inner()).await
    }

    async fn use_account(
        &self,
        req: Request<pb::UseAccountRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        self.owner()?.use_account(req.into_inner()).await
    }

    async fn remove_account(
        &self,
        req: Request<pb::RemoveAccountRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        self.owner()?.remove_account(req.into_inner()).await
    }
}

/// Serves `piauth.v1.Completions` through the owner.
#[derive(Debug, Clone)]
pub struct FollowerCompletions {
    link: Arc<Link>,
}

impl FollowerCompletions {
    pub fn new(link: Arc<Link>) -> FollowerCompletions {
        FollowerCompletions { link }
    }

    fn owner(&self) -> Result<link::OwnerCompletions, Status> {
        self.link
            .owner_completions()
            .ok_or_else(|| unreachable(&self.link, &self.link.view()))
    }
}

#[tonic::async_trait]
impl pb::completions_server::Completions for FollowerCompletions {
    type StreamStream = EventStream<pb::CompletionEvent>;

    async fn stream(
        &self,
        req: Request<pb::CompletionRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let events = self.owner()?.stream(req.into_inner()).await?.into_inner();
        Ok(Response::new(Box::pin(events)))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        self.owner()?.list_models(req.into_inner()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(expires_in_ms: i64, lifetime_ms: i64, now: i64) -> LinkView {
        LinkView {
            token: Some(Mirrored {
                provider: "openai-codex".into(),
                access: Secret::new("a".into()),
                expires_at_ms: now + expires_in_ms,
                account_id: "acct".into(),
                received_ms: now + expires_in_ms - lifetime_ms,
            }),
            ..LinkView::default()
        }
    }

    #[test]
    fn a_mirrored_token_serves_while_it_is_valid_for_the_caller() {
        let now = 1_000_000;
        let hour = 3_600_000;
        assert!(valid_for(&view(hour, hour, now), 60, now).is_some());
        assert!(
            valid_for(&view(30_000, hour, now), 60, now).is_none(),
            "30 s left, 60 asked"
        );
        assert!(valid_for(&view(30_000, hour, now), 0, now).is_some());
        assert!(valid_for(&view(0, hour, now), 0, now).is_none(), "expired");
        assert!(valid_for(&LinkView::default(), 0, now).is_none());
    }

    #[test]
    fn a_short_token_is_asked_for_at_most_half_its_life() {
        let now = 1_000_000;
        // A 2 s token with 1.5 s left serves a caller asking 60 s: the
        // request is capped at half the lifetime, as the owner caps it.
        assert!(valid_for(&view(1_500, 2_000, now), 60, now).is_some());
    }
}
