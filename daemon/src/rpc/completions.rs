//! The `piauth.v1.Completions` service: completions relayed to the Codex
//! Responses API, so clients never hold the token.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use piauth_proto::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::error::{Reason, only_default, provider_arg, status};
use crate::accounts::Accounts;
use crate::codex::{self, Ask, Codex, CodexError, RelayError, Relayed};

/// Events buffered between the upstream read and a slow client. Small on
/// purpose: it is what bounds the daemon's memory per stream.
const CHANNEL_EVENTS: usize = 8;

#[derive(Debug, Clone)]
pub struct CompletionsService {
    accounts: Arc<Accounts>,
    codex: Codex,
    models: Vec<codex::models::Model>,
    /// Bounds the completions relayed upstream at once.
    relays: Arc<tokio::sync::Semaphore>,
}

impl CompletionsService {
    /// The Codex client (it shares the limits it learns with its clones).
    pub fn codex(&self) -> Codex {
        self.codex.clone()
    }

    pub fn new(
        accounts: Arc<Accounts>,
        codex: Codex,
        models: Vec<codex::models::Model>,
    ) -> CompletionsService {
        CompletionsService {
            accounts,
            codex,
            models,
            relays: Arc::new(tokio::sync::Semaphore::new(super::MAX_COMPLETIONS)),
        }
    }
}

fn event_of(r: Relayed) -> pb::CompletionEvent {
    pb::CompletionEvent {
        r#type: r.event_type,
        data_json: r.data_json,
        response: r.response.map(|i| pb::ResponseInfo {
            http_status: u32::from(i.http_status),
            rate_limit_headers: i.rate_limits.into_iter().collect(),
        }),
        usage: r.usage.map(|u| pb::Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
        }),
    }
}

/// A relay failure as a status a client can act on.
pub fn relay_status(e: RelayError) -> Status {
    match e {
        RelayError::Token(e) => e.into(),
        RelayError::Codex(e) => codex_status(e),
    }
}

fn codex_status(e: CodexError) -> Status {
    let message = e.to_string();
    let mut meta = HashMap::new();
    let (code, reason) = match &e {
        CodexError::UsageLimit {
            plan,
            resets_at,
            retry_after_secs,
            ..
        } => {
            if let Some(p) = plan {
                meta.insert("plan_type".to_owned(), p.clone());
            }
            if let Some(r) = resets_at {
                meta.insert("resets_at".to_owned(), r.to_string());
            }
            if let Some(s) = retry_after_secs {
                meta.insert("retry_after_secs".to_owned(), s.to_string());
            }
            (Code::ResourceExhausted, Reason::UsageLimit)
        }
        CodexError::PlanExcludesCodex { plan, .. } => {
            if let Some(p) = plan {
                meta.insert("plan_type".to_owned(), p.clone());
            }
            (Code::FailedPrecondition, Reason::PlanExcludesCodex)
        }
        CodexError::Unauthorized { .. } => (Code::Unauthenticated, Reason::NeedsLogin),
        CodexError::ContextLength { .. } => (Code::OutOfRange, Reason::ContextLengthExceeded),
        CodexError::InvalidPrompt { .. } => (Code::InvalidArgument, Reason::InvalidPrompt),
        CodexError::Overloaded { .. } => (Code::Unavailable, Reason::UpstreamOverloaded),
        CodexError::Upstream { .. } | CodexError::Network { .. } => {
            (Code::Unavailable, Reason::UpstreamUnavailable)
        }
        CodexError::Refused { .. } => (Code::FailedPrecondition, Reason::UpstreamFailed),
        CodexError::Incomplete { .. } => (Code::Unavailable, Reason::StreamIncomplete),
        CodexError::Idle { .. } => (Code::DeadlineExceeded, Reason::StreamIdle),
        CodexError::Failed { .. } => (Code::Internal, Reason::UpstreamFailed),
    };
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason.as_str_name(), piauth_proto::ERROR_DOMAIN, meta),
    )
}

#[tonic::async_trait]
impl pb::completions_server::Completions for CompletionsService {
    type StreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::CompletionEvent, Status>> + Send + 'static>>;

    async fn stream(
        &self,
        req: Request<pb::CompletionRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let req = req.into_inner();
        let provider = provider_arg(&req.provider)?;
        only_default(provider, "piauthd relays completions for")?;
        let ask = Ask {
            model: req.model,
            instructions: req.instructions,
            input_json: req.input_json,
            reasoning_effort: req.reasoning_effort,
            session_id: req.session_id,
            body_json: req.body_json,
        };
        // Refuse a malformed request before anything is sent upstream.
        let prepared = codex::request::prepare(&ask).map_err(|e| {
            status(
                Code::InvalidArgument,
                Reason::InvalidArgument,
                e.to_string(),
            )
        })?;
        let permit = self.relays.clone().try_acquire_owned().map_err(|_| {
            status(
                Code::ResourceExhausted,
                Reason::Unspecified,
                format!(
                    "piauthd is already relaying {} completions; try again when one ends",
                    super::MAX_COMPLETIONS
                ),
            )
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_EVENTS);
        let relay = self.codex.clone();
        let accounts = self.accounts.clone();
        tokio::spawn(async move {
            // Held until the relay is over. A client that goes away drops
            // `rx` with its stream, which ends the relay and drops (aborts)
            // the upstream request.
            let _permit = permit;
            relay.relay(accounts, prepared, tx).await;
        });
        let events = ReceiverStream::new(rx).map(|item| item.map(event_of).map_err(relay_status));
        Ok(Response::new(Box::pin(events)))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        provider_arg(&req.into_inner().provider)?;
        let models = codex::models::list(&self.models)
            .into_iter()
            .map(|m| pb::Model {
                id: m.id,
                context_window: m.context_window,
                max_output_tokens: m.max_output_tokens,
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }
}
