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
//! same [`reply::stream_reply`] as SSE, faults included: [`super::reply`]
//! holds what a reply streams, and this module how it goes out over SSE.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
use super::reply::{self, Event, Out, READY_EVENTS, ResponsesFault};
use super::server::ResetHandle;
use super::usage;

/// The largest request body accepted after decompression.
const MAX_DECODED_BODY: usize = 32 * 1024 * 1024;
/// The Responses API rejects a smaller `max_output_tokens` (pi 1.6.0 sends
/// `max(maxTokens, 16)` for this reason).
const MIN_OUTPUT_TOKENS: u64 = 16;

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
    let (tx, rx) = reply::reply_channel(fault.as_ref());
    tokio::spawn(reply::stream_reply(
        state.clone(),
        shape,
        usage,
        fault,
        reset.map(|axum::Extension(r)| r),
        tx,
    ));
    sse_response(rx, &usage)
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
