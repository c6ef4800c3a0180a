//! What a reply streams, whichever transport carries it: its shape, the
//! events in order (a function call, or text in deltas), the faults that
//! cut it short, and the pacing between events.
//!
//! A reply is a task that hands [`Out`]s to its transport over a bounded
//! channel ([`reply_channel`]); SSE (`super::codex`) and the WebSocket
//! (`super::websocket`) write them out.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::MockState;
use super::server::ResetHandle;
use super::usage;

/// One misbehaviour, consumed by the next responses request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ResponsesFault {
    /// Answer this HTTP status with a JSON error body.
    Status { code: u16 },
    /// 429 `usage_limit_reached` with the plan and reset time.
    UsageLimit { plan: String, resets_at: i64 },
    /// 401 although the token is valid (revoked before its expiry).
    Revoked,
    /// Stream two deltas, then a `response.failed` event with this code.
    FailedEvent { code: String, message: String },
    /// Stream two deltas, then an `error` event with this code.
    ErrorEvent { code: String, message: String },
    /// Stream two deltas, then end cleanly without `response.completed`.
    Truncate,
    /// Stream two deltas, then reset the connection.
    Disconnect,
    /// Stream one delta, then send nothing for this long.
    Stall { ms: u64 },
    /// WebSocket only: the next turn's `previous_response_id` is unknown
    /// (`previous_response_not_found`), as after a backend restart.
    ForgetResponse,
    /// WebSocket only: the next turn is answered
    /// `websocket_connection_limit_reached` and the connection closes, as
    /// at its age limit.
    ConnectionLimit,
}

/// What a normal answer looks like.
#[derive(Debug, Clone)]
pub struct ReplyShape {
    /// The reply text, sent as one delta per word unless `deltas` is set.
    pub text: String,
    /// Send this many deltas of `delta_bytes` filler instead of `text`.
    pub deltas: Option<usize>,
    pub delta_bytes: usize,
    /// Pause between events.
    pub delay: Duration,
    /// Send the account's windows first, as a `codex.rate_limits` event
    /// (the real backend sends one at times).
    pub rate_limits_event: bool,
    /// Answer a turn that ends with a user message with this function call
    /// instead of text (a turn that ends with the tool's output gets text).
    pub tool_call: Option<ToolCall>,
}

/// A function call the mock makes, as the model would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    /// The arguments' JSON text, sent in three deltas.
    pub arguments: String,
}

/// `POST /_mock/reply`: what later replies look like.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplyRequest {
    pub text: Option<String>,
    pub deltas: Option<usize>,
    pub delta_bytes: Option<usize>,
    pub delay_ms: Option<u64>,
    pub tool_call: Option<ToolCall>,
}

impl ReplyRequest {
    pub fn shape(self) -> ReplyShape {
        let d = ReplyShape::default();
        ReplyShape {
            text: self.text.unwrap_or(d.text),
            deltas: self.deltas,
            delta_bytes: self.delta_bytes.unwrap_or(d.delta_bytes),
            delay: Duration::from_millis(self.delay_ms.unwrap_or(0)),
            rate_limits_event: false,
            tool_call: self.tool_call,
        }
    }
}

impl Default for ReplyShape {
    fn default() -> Self {
        ReplyShape {
            text: "Hello from the mock Codex backend.".into(),
            deltas: None,
            delta_bytes: 16,
            delay: Duration::ZERO,
            rate_limits_event: false,
            tool_call: None,
        }
    }
}

/// One event as a transport sends it: its type, and its JSON text.
#[derive(Debug)]
pub struct Event {
    pub kind: String,
    pub json: String,
}

impl From<Value> for Event {
    fn from(event: Value) -> Event {
        Event {
            kind: event["type"].as_str().unwrap_or("message").to_owned(),
            json: event.to_string(),
        }
    }
}

impl Event {
    /// A `response.output_text.delta`, written straight to text: a flood
    /// has thousands, and the mock stands in for a backend on another
    /// machine, so it should cost the machine it runs on little.
    fn text_delta(delta: &str) -> Event {
        let kind = "response.output_text.delta";
        let delta = Value::from(delta);
        Event {
            json: format!(
                r#"{{"type":"{kind}","output_index":0,"content_index":0,"delta":{delta}}}"#
            ),
            kind: kind.to_owned(),
        }
    }

    /// The event as JSON, for the few a transport reads into.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or_default()
    }
}

/// What a reply stream hands its transport.
#[derive(Debug)]
pub enum Out {
    Event(Event),
    /// Break the connection (the `Disconnect` fault).
    Cut,
}

/// The most events in one chunk of an SSE body or one WebSocket flush, and
/// how many a reply may have ready before its transport takes them: a
/// flood then goes out in large writes, as a busy server writes it.
pub(super) const READY_EVENTS: usize = 64;

/// The channel from a reply to its transport. A reply that ends in a fault
/// hands its events over one at a time, so that the events before the fault
/// are on the wire when it strikes; any other may have [`READY_EVENTS`]
/// waiting.
pub(super) fn reply_channel(
    fault: Option<&ResponsesFault>,
) -> (
    tokio::sync::mpsc::Sender<Out>,
    tokio::sync::mpsc::Receiver<Out>,
) {
    tokio::sync::mpsc::channel(if fault.is_some() { 1 } else { READY_EVENTS })
}

/// The text deltas of a reply of this shape.
fn deltas_of(shape: &ReplyShape) -> Vec<String> {
    match shape.deltas {
        Some(n) => (0..n)
            .map(|i| format!("{i:08} {}", "x".repeat(shape.delta_bytes.saturating_sub(9))))
            .collect(),
        None => shape.text.split_inclusive(' ').map(str::to_owned).collect(),
    }
}

/// Sends `events` one by one, pausing `delay` between them (the first goes
/// at once, as the backend's `response.created` does); false when the
/// client went away.
async fn send_all(
    state: &MockState,
    tx: &tokio::sync::mpsc::Sender<Out>,
    events: Vec<impl Into<Event>>,
    delay: Duration,
) -> bool {
    for (i, event) in events.into_iter().enumerate() {
        if i > 0 && !delay.is_zero() {
            pause(delay).await;
        }
        if tx.send(Out::Event(event.into())).await.is_err() {
            return false;
        }
        state.events_sent.fetch_add(1, Ordering::SeqCst);
    }
    true
}

/// Waits `delay`, to a tenth of a millisecond or so. tokio's timer rounds
/// a sleep up to its next millisecond tick, so a reply paced by it would
/// start each pause at a random phase of that tick, and a figure timed
/// against it would gain up to a whole millisecond, at random. The last
/// stretch is a thread's sleep, which the system times in microseconds.
async fn pause(delay: Duration) {
    let until = Instant::now() + delay;
    // The timer's rounding stays inside this margin.
    let coarse = delay.saturating_sub(Duration::from_millis(2));
    if !coarse.is_zero() {
        tokio::time::sleep(coarse).await;
    }
    let fine = tokio::task::spawn_blocking(move || {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    });
    let _ = fine.await;
}

/// Streams a reply: the opening events, the deltas (cut short by a fault),
/// then the fault's ending or the completion.
pub(super) async fn stream_reply(
    state: Arc<MockState>,
    shape: ReplyShape,
    usage: usage::AccountUsage,
    fault: Option<ResponsesFault>,
    reset: Option<ResetHandle>,
    tx: tokio::sync::mpsc::Sender<Out>,
) {
    let _live = state.stream_guard();
    let deltas = deltas_of(&shape);
    let id = format!("resp_{}", super::jwt::nonce());
    let item_id = format!("msg_{}", super::jwt::nonce());
    let mut events: Vec<Event> = Vec::new();
    if shape.rate_limits_event {
        events.push(usage::rate_limits_event(&usage).into());
    }
    events.push(
        json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}}).into(),
    );
    if let (Some(call), None) = (&shape.tool_call, &fault) {
        events.extend(function_call_events(call, &id).into_iter().map(Event::from));
        send_all(&state, &tx, events, shape.delay).await;
        return;
    }
    events.extend([
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"id": item_id, "type": "message", "status": "in_progress",
                        "role": "assistant", "content": []}})
        .into(),
    ]);
    let cut = match &fault {
        Some(ResponsesFault::Stall { .. }) => 1,
        Some(_) => 2,
        None => deltas.len(),
    };
    events.extend(deltas.iter().take(cut).map(|d| Event::text_delta(d)));
    if !send_all(&state, &tx, events, shape.delay).await {
        return; // the client went away
    }
    if let Some(fault) = fault {
        end_with(fault, &id, reset, &tx).await;
        return;
    }
    // Filler replies can be huge; their final item only summarises them.
    let text: String = match shape.deltas {
        Some(n) => format!("({n} filler deltas)"),
        None => deltas.concat(),
    };
    let tail = vec![
        json!({"type": "response.output_item.done", "output_index": 0,
               "item": {"id": item_id, "type": "message", "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "annotations": [], "text": text}]}}),
        json!({"type": "response.completed", "response": {"id": id, "status": "completed",
               "usage": {"input_tokens": 12, "output_tokens": deltas.len(),
                         "input_tokens_details": {"cached_tokens": 4}}}}),
    ];
    send_all(&state, &tx, tail, shape.delay).await;
}

/// A function call's events after `response.created`, as the Responses
/// API streams one: the item, its arguments in three deltas, the item done,
/// the completion.
fn function_call_events(call: &ToolCall, response_id: &str) -> Vec<Value> {
    let (fc, call_id) = (
        format!("fc_{}", super::jwt::nonce()),
        format!("call_{}", super::jwt::nonce()),
    );
    let item = |status: &str, arguments: &str| {
        json!({"id": fc, "type": "function_call", "status": status, "call_id": call_id,
               "name": call.name, "arguments": arguments})
    };
    let chars: Vec<char> = call.arguments.chars().collect();
    let third = chars.len().div_ceil(3).max(1);
    let mut events = vec![
        json!({"type": "response.output_item.added", "output_index": 0,
                                 "item": item("in_progress", "")}),
    ];
    events.extend(chars.chunks(third).map(|c| {
        json!({"type": "response.function_call_arguments.delta", "item_id": fc,
               "output_index": 0, "delta": c.iter().collect::<String>()})
    }));
    events.extend([
        json!({"type": "response.function_call_arguments.done", "item_id": fc,
               "output_index": 0, "arguments": call.arguments}),
        json!({"type": "response.output_item.done", "output_index": 0,
               "item": item("completed", &call.arguments)}),
        json!({"type": "response.completed", "response": {"id": response_id, "status": "completed",
               "usage": {"input_tokens": 12, "output_tokens": 8,
                         "input_tokens_details": {"cached_tokens": 4}}}}),
    ]);
    events
}

/// Ends a stream the way a mid-stream fault does.
async fn end_with(
    fault: ResponsesFault,
    id: &str,
    reset: Option<ResetHandle>,
    tx: &tokio::sync::mpsc::Sender<Out>,
) {
    match fault {
        ResponsesFault::FailedEvent { code, message } => {
            let failed = json!({"type": "response.failed", "response": {"id": id,
                "status": "failed", "error": {"code": code, "message": message}}});
            let _ = tx.send(Out::Event(failed.into())).await;
        }
        ResponsesFault::ErrorEvent { code, message } => {
            let event = json!({"type": "error", "code": code, "message": message});
            let _ = tx.send(Out::Event(event.into())).await;
        }
        ResponsesFault::Disconnect => {
            match reset {
                Some(r) => r.trigger(),
                None => {
                    let _ = tx.send(Out::Cut).await;
                }
            }
            // Hold the body open until the connection is gone, so the
            // client sees a reset, not a clean end.
            tx.closed().await;
        }
        ResponsesFault::Stall { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
        // Truncate ends here; the refusals never reach a stream.
        _ => {}
    }
}
