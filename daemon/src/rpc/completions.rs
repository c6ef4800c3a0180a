//! The `piauth.v1.Completions` service: completions relayed to the Codex
//! Responses API, so clients never hold the token.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use piauth_proto::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::error::{Reason, only_default, provider_arg, status};
use crate::accounts::Accounts;
use crate::codex::{self, Ask, Codex, CodexError, RelayError, Relayed};

/// Batches of events buffered between the upstream read and a slow client:
/// with the bound on a batch (`codex::handover`), what bounds the daemon's
/// memory per stream.
const CHANNEL_BATCHES: usize = 4;

#[derive(Debug, Clone)]
pub struct CompletionsService {
    accounts: Arc<Accounts>,
    codex: Codex,
    models: Vec<codex::models::Model>,
    /// Bounds the completions relayed upstream at once.
    relays: Arc<tokio::sync::Semaphore>,
    /// When a stream still running is cut (see [`Cut`]).
    cut: Cut,
}

/// A stream still running this long after the daemon began stopping is
/// ended with a status of its own: the client hears that its completion
/// was cut, where a closed connection would say nothing it can act on.
#[derive(Debug, Clone, Default)]
struct Cut {
    stopping: CancellationToken,
    after: Duration,
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
            cut: Cut::default(),
        }
    }

    /// The same service, whose streams still running `after` `stopping`
    /// is cancelled end with a status that says so.
    pub fn cut_when_stopping(mut self, stopping: CancellationToken, after: Duration) -> Self {
        self.cut = Cut { stopping, after };
        self
    }
}

fn event_of(r: Relayed) -> pb::CompletionEvent {
    pb::CompletionEvent {
        r#type: r.event_type,
        data_json: r.data_json,
        response: r.response.map(response_info),
        usage: r.usage.map(usage_of),
        sse: Vec::new(),
    }
}

fn response_info(i: codex::events::ResponseInfo) -> pb::ResponseInfo {
    pb::ResponseInfo {
        http_status: u32::from(i.http_status),
        rate_limit_headers: i.rate_limits.into_iter().collect(),
    }
}

fn usage_of(u: codex::events::Usage) -> pb::Usage {
    pb::Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cached_input_tokens: u.cached_input_tokens,
    }
}

/// A batch of the relay's as one message of a stream in SSE batches, or
/// the failure that ended the relay.
fn sse_batch(item: Result<Vec<Relayed>, RelayError>) -> Result<pb::CompletionEvent, Status> {
    let events = item.map_err(relay_status)?;
    let mut batch = pb::CompletionEvent::default();
    let bytes: usize = events.iter().map(|r| r.data_json.len() + 8).sum();
    batch.sse.reserve(bytes);
    for r in events {
        codex::sse::write_event(&mut batch.sse, &r.data_json);
        batch.r#type = r.event_type;
        batch.response = batch.response.or(r.response.map(response_info));
        batch.usage = batch.usage.or(r.usage.map(usage_of));
    }
    Ok(batch)
}

/// A batch of the relay's as one message per event, or the failure that
/// ended the relay.
fn one_by_one(item: Result<Vec<Relayed>, RelayError>) -> Vec<Result<pb::CompletionEvent, Status>> {
    match item {
        Ok(events) => events.into_iter().map(|r| Ok(event_of(r))).collect(),
        Err(e) => vec![Err(relay_status(e))],
    }
}

/// The items of `items`, with `relay` (which sends them) run by the same
/// stream: the task that writes the answer to the client also reads the
/// upstream, so an event crosses no task to reach the client, and a relay
/// starts at the first poll of its answer, not whenever a new task is run.
/// A client that goes away drops the stream, and with it the relay and its
/// upstream request.
fn driven<T: Send + 'static>(
    relay: impl Future<Output = ()> + Send + 'static,
    items: impl Stream<Item = T> + Send + 'static,
) -> impl Stream<Item = T> + Send + 'static {
    let relay = futures_util::StreamExt::filter_map(futures_util::stream::once(relay), |()| {
        std::future::ready(None)
    });
    // Both are polled; it ends when the relay is over and its items are out.
    futures_util::stream::select(relay, items)
}

type Answer = Pin<Box<dyn Stream<Item = Result<pb::CompletionEvent, Status>> + Send + 'static>>;

/// `events`, ended by `cut`: once the daemon has been stopping for
/// `cut.after`, the status that says the completion was cut goes last.
fn cut_short(events: Answer, cut: Cut) -> Answer {
    let when = async move {
        cut.stopping.cancelled().await;
        tokio::time::sleep(cut.after).await;
    };
    Box::pin(CutShort {
        events: Some(events),
        when: Box::pin(when),
    })
}

/// See [`cut_short`]. The cut is looked at only while no message is ready,
/// so a stream that flows pays nothing for it per message.
struct CutShort {
    /// `None` once the answer is over.
    events: Option<Answer>,
    when: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Stream for CutShort {
    type Item = Result<pb::CompletionEvent, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let Some(events) = self.events.as_mut() else {
            return Poll::Ready(None);
        };
        match events.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Ready(None) => {
                self.events = None;
                Poll::Ready(None)
            }
            Poll::Pending => match self.when.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.events = None;
                    Poll::Ready(Some(Err(cut_status())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

fn cut_status() -> Status {
    status(
        Code::Unavailable,
        Reason::StreamIncomplete,
        "piauthd is shutting down and cut this completion before its end; ask again when it is back",
    )
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
    type StreamStream = Answer;

    async fn stream(
        &self,
        req: Request<pb::CompletionRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let req = req.into_inner();
        let in_sse_batches = req.sse_batches;
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
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_BATCHES);
        let (codex, accounts) = (self.codex.clone(), self.accounts.clone());
        let relay = async move {
            // Held until the relay is over.
            let _permit = permit;
            codex.relay(accounts, prepared, tx).await;
        };
        let relayed = driven(relay, ReceiverStream::new(rx));
        let events: Self::StreamStream = if in_sse_batches {
            Box::pin(relayed.map(sse_batch))
        } else {
            Box::pin(futures_util::StreamExt::flat_map(relayed, |item| {
                tokio_stream::iter(one_by_one(item))
            }))
        };
        Ok(Response::new(cut_short(events, self.cut.clone())))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codex::events::{ResponseInfo, Usage};

    fn relayed(event_type: &str) -> Relayed {
        Relayed {
            event_type: event_type.to_owned(),
            data_json: format!(r#"{{"type":"{event_type}"}}"#),
            response: None,
            usage: None,
        }
    }

    #[test]
    fn a_batch_is_one_message_of_sse_with_the_first_info_and_the_last_type() {
        let mut first = relayed("response.created");
        first.response = Some(ResponseInfo {
            http_status: 200,
            rate_limits: vec![("x-codex-primary-used-percent".into(), "5".into())],
        });
        let mut last = relayed("response.completed");
        last.usage = Some(Usage {
            input_tokens: 3,
            ..Usage::default()
        });
        let out = sse_batch(Ok(vec![first, relayed("response.output_text.delta"), last]));
        let Ok(batch) = &out else {
            panic!("one message: {out:?}")
        };
        assert_eq!(batch.r#type, "response.completed");
        assert!(batch.data_json.is_empty());
        assert_eq!(batch.response.as_ref().map(|r| r.http_status), Some(200));
        assert_eq!(batch.usage.as_ref().map(|u| u.input_tokens), Some(3));
        let payloads = codex::sse::SseParser::new().push(&batch.sse).unwrap();
        assert_eq!(
            payloads,
            [
                r#"{"type":"response.created"}"#,
                r#"{"type":"response.output_text.delta"}"#,
                r#"{"type":"response.completed"}"#,
            ]
        );
    }

    #[tokio::test]
    async fn a_driven_stream_runs_its_relay_and_ends_after_its_items() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let relay = async move {
            for i in 0..3 {
                let _ = tx.send(i).await;
            }
        };
        let got: Vec<i32> = driven(relay, ReceiverStream::new(rx)).collect().await;
        assert_eq!(got, [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_dropped_driven_stream_drops_its_relay() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (alive, gone) = tokio::sync::oneshot::channel::<()>();
        let relay = async move {
            let _alive = alive;
            let _ = tx.send(0).await;
            std::future::pending::<()>().await;
        };
        let mut stream = Box::pin(driven(relay, ReceiverStream::new(rx)));
        assert_eq!(stream.next().await, Some(0));
        drop(stream);
        assert!(
            gone.await.is_err(),
            "the relay (and its upstream request) is gone"
        );
    }

    #[test]
    fn a_failure_is_its_status_in_either_shape() {
        let idle = || RelayError::Codex(CodexError::Idle { secs: 1 });
        assert!(matches!(sse_batch(Err(idle())), Err(s) if s.code() == Code::DeadlineExceeded));
        let out = one_by_one(Err(idle()));
        assert!(matches!(&out[..], [Err(s)] if s.code() == Code::DeadlineExceeded));
    }

    #[test]
    fn one_by_one_gives_a_message_per_event_in_order() {
        let out = one_by_one(Ok(vec![
            relayed("response.created"),
            relayed("response.completed"),
        ]));
        let types: Vec<_> = out
            .iter()
            .map(|m| m.as_ref().map(|e| e.r#type.as_str()).unwrap_or("error"))
            .collect();
        assert_eq!(types, ["response.created", "response.completed"]);
    }

    fn message(t: &str) -> Result<pb::CompletionEvent, Status> {
        Ok(pb::CompletionEvent {
            r#type: t.into(),
            ..Default::default()
        })
    }

    /// A cut 9 s after `stopping`, as the daemon's.
    fn cut_after_9s(stopping: &CancellationToken) -> Cut {
        Cut {
            stopping: stopping.clone(),
            after: Duration::from_secs(9),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_is_cut_only_once_the_daemon_has_been_stopping_for_a_while() {
        let stopping = CancellationToken::new();
        let cut = cut_after_9s(&stopping);
        let events: Answer = Box::pin(
            futures_util::stream::iter([message("a"), message("b")])
                .chain(futures_util::stream::pending()),
        );
        let mut answer = cut_short(events, cut);
        assert_eq!(answer.next().await.unwrap().unwrap().r#type, "a");
        assert_eq!(answer.next().await.unwrap().unwrap().r#type, "b");
        stopping.cancel();
        let cut_at = tokio::time::Instant::now();
        let last = answer.next().await.unwrap();
        assert!(
            matches!(&last, Err(s) if s.code() == Code::Unavailable),
            "{last:?}"
        );
        assert_eq!(cut_at.elapsed(), Duration::from_secs(9));
        assert!(answer.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_ends_is_not_cut() {
        let stopping = CancellationToken::new();
        let cut = cut_after_9s(&stopping);
        let events: Answer = Box::pin(futures_util::stream::iter([message("a")]));
        let got: Vec<_> = cut_short(events, cut).collect().await;
        assert_eq!(got.len(), 1);
        assert!(got[0].is_ok());
        stopping.cancel();
        let events: Answer = Box::pin(futures_util::stream::iter([message("a")]));
        let got: Vec<_> = cut_short(events, cut_after_9s(&stopping)).collect().await;
        assert!(
            matches!(&got[..], [Ok(_)]),
            "stopping, but over before the cut: {got:?}"
        );
    }
}
