//! The mock Codex backend: `POST /backend-api/codex/responses`, streamed
//! as Server-Sent Events (docs/PROTOCOL.md §3).
//!
//! It checks what the real backend checks: a bearer token the issuer issued
//! (live, unexpired, not revoked), a `chatgpt-account-id` matching the
//! token's account, the forced headers, and `stream: true`. It answers with
//! a realistic sequence (created, output_item.added, text deltas,
//! output_item.done, completed with usage), and can misbehave on request.
//!
//! It takes every client's request shape:
//! * the daemon's and pi 0.73.1's: plain JSON, top-level `instructions`, a
//!   first `input` item with role `user`, header `session_id`, no
//!   `max_output_tokens`;
//! * pi 1.6.0's: the body **zstd-compressed** (`Content-Encoding: zstd`,
//!   which pi sends on Node 22.15 and later with no way to turn it off), no
//!   top-level `instructions` but a leading `input` item with role
//!   `developer`, `max_output_tokens` (at least 16, as the real API
//!   demands), `prompt_cache_key`, and header `session-id`.
//!
//! A body that says zstd but does not decode gets a 400 whose message says
//! so. What each request carried is recorded as a [`SeenRequest`]
//! (`MockState::responses_seen`, `GET /_mock/responses`), so a test can
//! check what a real client sent.
//!
//! pi 1.6.0 and the daemon first try a WebSocket at the same URL (`ws://`
//! for `http://`): see [`super::websocket`]. Its turns are answered by the
//! same [`stream_reply`] as SSE, faults included.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::MockState;
use super::server::ResetHandle;
use super::usage;

/// The largest request body accepted after decompression.
const MAX_DECODED_BODY: usize = 32 * 1024 * 1024;
/// The Responses API rejects a smaller `max_output_tokens` (pi 1.6.0 sends
/// `max(maxTokens, 16)` for this reason).
const MIN_OUTPUT_TOKENS: u64 = 16;

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

/// What one `POST /codex/responses` carried, as the mock saw it. Fields the
/// mock never got to (an early refusal) keep their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRequest {
    /// The status the mock answered with.
    pub status: u16,
    /// The ChatGPT account the request was for (empty when refused before
    /// the token was read).
    pub account: String,
    /// `Content-Encoding` as sent, lower-cased; empty when absent.
    pub content_encoding: String,
    /// Whether the body arrived zstd-compressed and decoded.
    pub zstd: bool,
    /// Body bytes on the wire.
    pub wire_bytes: usize,
    /// Body bytes after decoding (equal to `wire_bytes` for plain JSON).
    pub body_bytes: usize,
    pub model: String,
    /// Whether the body had a top-level `instructions`.
    pub has_instructions: bool,
    /// Role of the first `input` item: `developer` from pi 1.6.0, `user`
    /// from the daemon and pi 0.73.1.
    pub first_input_role: Option<String>,
    /// How many `input` items there were.
    pub input_items: usize,
    pub max_output_tokens: Option<u64>,
    pub prompt_cache_key: Option<String>,
    /// The `session-id` header (pi 1.6.0).
    pub session_id_dash: Option<String>,
    /// The `session_id` header (the daemon, pi 0.73.1).
    pub session_id_underscore: Option<String>,
    pub originator: String,
    pub user_agent: String,
    /// `sse` or `websocket`.
    pub transport: String,
    /// The `previous_response_id` of a WebSocket turn that continued one.
    pub previous_response_id: Option<String>,
    /// The role of the last message in `input`, or the type of a tool's
    /// output after it.
    pub last_input: Option<String>,
}

impl SeenRequest {
    /// Whether the turn ends with a user message (not a tool's output).
    pub fn asks(&self) -> bool {
        self.last_input.as_deref() == Some("user")
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

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "type": code, "message": message}})),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// A refusal before any answer, boxed (a `Response` is large).
fn refuse(status: StatusCode, code: &str, message: &str) -> Box<Response> {
    Box::new(error(status, code, message))
}

fn refuse_bad(message: &str) -> Box<Response> {
    Box::new(bad_request(message))
}

/// The most events in one chunk of an SSE body or one WebSocket flush, and
/// how many a reply may have ready before its transport takes them: a
/// flood then goes out in large writes, as a busy server writes it.
const READY_EVENTS: usize = 64;

/// Appends `event` to `out` as the backend writes it over SSE.
fn write_sse(out: &mut Vec<u8>, event: &Event) {
    for part in ["event: ", &event.kind, "\ndata: ", &event.json, "\n\n"] {
        out.extend_from_slice(part.as_bytes());
    }
}

/// Decodes a zstd request body: every frame in it, in order, at most
/// [`MAX_DECODED_BODY`] bytes in all.
pub fn decode_zstd(mut wire: &[u8]) -> Result<Vec<u8>, String> {
    if wire.is_empty() {
        return Err("the body is empty".into());
    }
    let mut out = Vec::new();
    while !wire.is_empty() {
        let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut wire)
            .map_err(|e| format!("no zstd frame: {e}"))?;
        let room = (MAX_DECODED_BODY - out.len()) as u64 + 1;
        (&mut frame)
            .take(room)
            .read_to_end(&mut out)
            .map_err(|e| format!("a corrupt zstd frame: {e}"))?;
        if out.len() > MAX_DECODED_BODY {
            return Err(format!("it decodes to more than {MAX_DECODED_BODY} bytes"));
        }
    }
    Ok(out)
}

/// The body as JSON bytes: decoded per `Content-Encoding`.
fn decoded_body(seen: &mut SeenRequest, body: &Bytes) -> Result<Vec<u8>, Box<Response>> {
    match seen.content_encoding.as_str() {
        "" | "identity" => Ok(body.to_vec()),
        "zstd" => {
            let out = decode_zstd(body).map_err(|why| {
                refuse_bad(&format!(
                    "Content-Encoding is zstd, but the body does not decode as zstd: {why}"
                ))
            })?;
            seen.zstd = true;
            Ok(out)
        }
        other => Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            &format!("Content-Encoding {other} is not supported (zstd is)"),
        )),
    }
}

/// Records what the request's headers and body say, for tests.
pub(super) fn note_body(seen: &mut SeenRequest, req: &Value) {
    seen.model = req["model"].as_str().unwrap_or("").to_owned();
    seen.has_instructions = req.get("instructions").is_some();
    if let Some(items) = req["input"].as_array() {
        seen.input_items = items.len();
        seen.first_input_role = items
            .first()
            .and_then(|i| i["role"].as_str())
            .map(str::to_owned);
        // The last message or tool output: pi 1.6.0 may add settings
        // after it (a `configuration_update` item).
        seen.last_input = items
            .iter()
            .rev()
            .find_map(|i| {
                i["role"]
                    .as_str()
                    .or(i["type"].as_str().filter(|t| t.ends_with("_output")))
            })
            .map(str::to_owned);
    }
    seen.max_output_tokens = req["max_output_tokens"].as_u64();
    seen.prompt_cache_key = req["prompt_cache_key"].as_str().map(str::to_owned);
}

pub async fn responses(
    State(state): State<Arc<MockState>>,
    reset: Option<axum::Extension<ResetHandle>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.responses_requests.fetch_add(1, Ordering::SeqCst);
    let mut seen = SeenRequest::default();
    let answer = match check(&state, &headers, &body, &mut seen) {
        Ok(account) => {
            seen.account = account.clone();
            answer(&state, &account, reset, seen.asks()).await
        }
        Err(refusal) => *refusal,
    };
    seen.status = answer.status().as_u16();
    state.record_responses_request(seen);
    answer
}

/// Everything the backend checks before it answers: the token, the
/// account, the headers, the body. Fills `seen` as it goes.
fn check(
    state: &MockState,
    headers: &HeaderMap,
    body: &Bytes,
    seen: &mut SeenRequest,
) -> Result<String, Box<Response>> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let optional = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    seen.content_encoding = header("content-encoding").trim().to_ascii_lowercase();
    seen.wire_bytes = body.len();
    seen.session_id_dash = optional("session-id");
    seen.session_id_underscore = optional("session_id");
    seen.originator = header("originator").to_owned();
    seen.user_agent = header("user-agent").to_owned();
    seen.transport = "sse".into();
    let account = authorize(state, headers)?;
    for (name, want) in [
        ("openai-beta", "responses=experimental"),
        ("accept", "text/event-stream"),
        ("content-type", "application/json"),
    ] {
        if !header(name).starts_with(want) {
            return Err(refuse_bad(&format!("header {name} must be {want}")));
        }
    }
    if seen.originator.is_empty() || seen.user_agent.is_empty() {
        return Err(refuse_bad("originator and User-Agent are required"));
    }
    let json = decoded_body(seen, body)?;
    seen.body_bytes = json.len();
    let Ok(req) = serde_json::from_slice::<Value>(&json) else {
        return Err(refuse_bad("the body is not JSON"));
    };
    note_body(seen, &req);
    check_body(&req).map_err(|why| refuse_bad(&why))?;
    Ok(account)
}

/// The account of a request's bearer token, which must be live and match
/// its `chatgpt-account-id`.
pub(super) fn authorize(state: &MockState, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(token) = header("authorization").strip_prefix("Bearer ") else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "missing bearer token",
        ));
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let Some(account) = state.account_of_valid_token(token, now_ms) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            "the access token is invalid or expired",
        ));
    };
    if header("chatgpt-account-id") != account {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "account_mismatch",
            "chatgpt-account-id does not match the token",
        ));
    }
    Ok(account)
}

/// What the backend demands of a request body, on either transport.
pub(super) fn check_body(req: &Value) -> Result<(), String> {
    if req["stream"] != json!(true) || req["store"] != json!(false) {
        return Err("stream must be true and store false".into());
    }
    if req["model"].as_str().unwrap_or("").is_empty() {
        return Err("model is required".into());
    }
    if req.get("input").is_some_and(|i| !i.is_array()) {
        return Err("input must be an array of items".into());
    }
    if let Some(max) = req.get("max_output_tokens")
        && max.as_u64().is_none_or(|n| n < MIN_OUTPUT_TOKENS)
    {
        return Err(format!(
            "max_output_tokens must be an integer of at least {MIN_OUTPUT_TOKENS}"
        ));
    }
    Ok(())
}

/// The answer to an accepted request: a fault, or a stream.
async fn answer(
    state: &Arc<MockState>,
    account: &str,
    reset: Option<axum::Extension<ResetHandle>>,
    asks: bool,
) -> Response {
    let fault = state.ledger().responses_faults.pop_front();
    if let Some(refused) = fault.as_ref().and_then(refusal) {
        return refused;
    }
    let now_s = usage::now_s();
    let usage = match state.charge_usage(account, now_s) {
        Ok(usage) => usage,
        Err(resets_at) => return usage::limit_answer(&state.plan_of(account), resets_at, now_s),
    };
    let shape = state.reply_shape_for(asks);
    let (tx, rx) = reply_channel(fault.as_ref());
    tokio::spawn(stream_reply(
        state.clone(),
        shape,
        usage,
        fault,
        reset.map(|axum::Extension(r)| r),
        tx,
    ));
    sse_response(rx, &usage)
}

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

/// The answer to a fault that refuses the request before any event.
pub(super) fn refusal(fault: &ResponsesFault) -> Option<Response> {
    match fault {
        ResponsesFault::Status { code } => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(error(status, "server_error", "injected fault"))
        }
        ResponsesFault::UsageLimit { plan, resets_at } => {
            Some(usage::limit_answer(plan, *resets_at, usage::now_s()))
        }
        ResponsesFault::Revoked => Some(error(
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "the access token was revoked",
        )),
        _ => None,
    }
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
            tokio::time::sleep(delay).await;
        }
        if tx.send(Out::Event(event.into())).await.is_err() {
            return false;
        }
        state.events_sent.fetch_add(1, Ordering::SeqCst);
    }
    true
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

/// The streaming response, with the rate-limit headers the backend sends:
/// the account's windows (a window it does not report has no headers).
fn sse_response(rx: tokio::sync::mpsc::Receiver<Out>, usage: &super::AccountUsage) -> Response {
    // `Cut` never reaches an SSE stream: its reset handle breaks the
    // connection instead.
    // Events that are ready together go as one chunk, as a busy server
    // writes them: the bytes are the same, the writes fewer.
    let ready = futures_util::StreamExt::ready_chunks(ReceiverStream::new(rx), READY_EVENTS);
    let frames = ready.filter_map(|outs| {
        let mut chunk = Vec::new();
        for out in outs {
            if let Out::Event(event) = out {
                write_sse(&mut chunk, &event);
            }
        }
        (!chunk.is_empty()).then(|| Ok::<_, std::convert::Infallible>(Bytes::from(chunk)))
    });
    let body = Body::from_stream(frames);
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        [("x-request-id", "req_mock")],
        body,
    )
        .into_response();
    limit_headers(response.headers_mut(), usage);
    response
}

/// The account's windows as the `x-codex-*` headers (a window it does not
/// report has none).
pub(super) fn limit_headers(headers: &mut HeaderMap, usage: &super::AccountUsage) {
    for (name, w) in [("primary", usage.primary), ("secondary", usage.secondary)] {
        let Some(w) = w else { continue };
        for (field, value) in [
            ("used-percent", w.used_percent.to_string()),
            ("window-minutes", w.window_minutes.to_string()),
            ("reset-at", w.reset_at.to_string()),
        ] {
            if let (Ok(n), Ok(v)) = (
                header::HeaderName::from_bytes(format!("x-codex-{name}-{field}").as_bytes()),
                header::HeaderValue::from_str(&value),
            ) {
                headers.insert(n, v);
            }
        }
    }
}
