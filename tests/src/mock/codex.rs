//! The mock Codex backend: `POST /backend-api/codex/responses`, streamed
//! as Server-Sent Events (PROTOCOL.md §3).
//!
//! It checks what the real backend checks: a bearer token the issuer issued
//! (live, unexpired, not revoked), a `chatgpt-account-id` matching the
//! token's account, the forced headers, and `stream: true`. It answers with
//! a realistic sequence (created, output_item.added, text deltas,
//! output_item.done, completed with usage), and can misbehave on request.

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
}

impl Default for ReplyShape {
    fn default() -> Self {
        ReplyShape {
            text: "Hello from the mock Codex backend.".into(),
            deltas: None,
            delta_bytes: 16,
            delay: Duration::ZERO,
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "type": code, "message": message}})),
    )
        .into_response()
}

fn sse(event: &Value) -> Bytes {
    let kind = event["type"].as_str().unwrap_or("message");
    Bytes::from(format!("event: {kind}\ndata: {event}\n\n"))
}

pub async fn responses(
    State(state): State<Arc<MockState>>,
    reset: Option<axum::Extension<ResetHandle>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.responses_requests.fetch_add(1, Ordering::SeqCst);
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(token) = header("authorization").strip_prefix("Bearer ") else {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "missing bearer token",
        );
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let Some(account) = state.account_of_valid_token(token, now_ms) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            "the access token is invalid or expired",
        );
    };
    if header("chatgpt-account-id") != account {
        return error(
            StatusCode::FORBIDDEN,
            "account_mismatch",
            "chatgpt-account-id does not match the token",
        );
    }
    for (name, want) in [
        ("openai-beta", "responses=experimental"),
        ("accept", "text/event-stream"),
        ("content-type", "application/json"),
    ] {
        if !header(name).starts_with(want) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("header {name} must be {want}"),
            );
        }
    }
    if header("originator").is_empty() || header("user-agent").is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "originator and User-Agent are required",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not JSON",
        );
    };
    if req["stream"] != json!(true) || req["store"] != json!(false) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "stream must be true and store false",
        );
    }
    if req.get("max_output_tokens").is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "max_output_tokens is not supported",
        );
    }
    if req["model"].as_str().unwrap_or("").is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "model is required",
        );
    }

    let fault = state.ledger().responses_faults.pop_front();
    match &fault {
        Some(ResponsesFault::Status { code }) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "server_error", "injected fault");
        }
        Some(ResponsesFault::UsageLimit { plan, resets_at }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("x-codex-primary-used-percent", "100"), ("x-codex-active-limit", "primary")],
                Json(json!({"error": {"type": "usage_limit_reached", "code": "usage_limit_reached",
                    "message": "The usage limit has been reached", "plan_type": plan, "resets_at": resets_at}})),
            )
                .into_response();
        }
        Some(ResponsesFault::Revoked) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "token_revoked",
                "the access token was revoked",
            );
        }
        _ => {}
    }

    let shape = state.reply_shape();
    let deltas: Vec<String> = match shape.deltas {
        Some(n) => (0..n)
            .map(|i| format!("{i:08} {}", "x".repeat(shape.delta_bytes.saturating_sub(9))))
            .collect(),
        None => shape.text.split_inclusive(' ').map(str::to_owned).collect(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let state_for_task = state.clone();
    let reset = reset.map(|axum::Extension(r)| r);
    tokio::spawn(async move {
        let _live = state_for_task.stream_guard();
        let pause = || async {
            if !shape.delay.is_zero() {
                tokio::time::sleep(shape.delay).await;
            }
        };
        let id = format!("resp_{}", super::jwt::nonce());
        let mut events = vec![
            json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}}),
            json!({"type": "response.output_item.added", "output_index": 0,
                   "item": {"type": "message", "role": "assistant", "content": []}}),
        ];
        let cut = match &fault {
            Some(ResponsesFault::Stall { .. }) => Some(1),
            Some(_) => Some(2),
            None => None,
        };
        for (i, d) in deltas.iter().enumerate() {
            if cut == Some(i) {
                break;
            }
            events.push(
                json!({"type": "response.output_text.delta", "output_index": 0,
                               "content_index": 0, "delta": d}),
            );
        }
        for event in &events {
            pause().await;
            if tx.send(sse(event)).await.is_err() {
                return; // the client went away
            }
            state_for_task.events_sent.fetch_add(1, Ordering::SeqCst);
        }
        match fault {
            Some(ResponsesFault::FailedEvent { code, message }) => {
                let _ = tx
                    .send(sse(
                        &json!({"type": "response.failed", "response": {"id": id,
                    "status": "failed", "error": {"code": code, "message": message}}}),
                    ))
                    .await;
                return;
            }
            Some(ResponsesFault::ErrorEvent { code, message }) => {
                let _ = tx
                    .send(sse(
                        &json!({"type": "error", "code": code, "message": message}),
                    ))
                    .await;
                return;
            }
            Some(ResponsesFault::Truncate) => return,
            Some(ResponsesFault::Disconnect) => {
                if let Some(r) = reset {
                    r.trigger();
                }
                // Hold the body open until the connection is gone, so the
                // client sees a reset, not a clean end.
                tx.closed().await;
                return;
            }
            Some(ResponsesFault::Stall { ms }) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return;
            }
            _ => {}
        }
        // Filler replies can be huge; their final item only summarises them.
        let text: String = match shape.deltas {
            Some(n) => format!("({n} filler deltas)"),
            None => deltas.concat(),
        };
        let tail = [
            json!({"type": "response.output_item.done", "output_index": 0,
                   "item": {"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": text}]}}),
            json!({"type": "response.completed", "response": {"id": id, "status": "completed",
                   "usage": {"input_tokens": 12, "output_tokens": deltas.len(),
                             "input_tokens_details": {"cached_tokens": 4}}}}),
        ];
        for event in &tail {
            pause().await;
            if tx.send(sse(event)).await.is_err() {
                return;
            }
            state_for_task.events_sent.fetch_add(1, Ordering::SeqCst);
        }
    });
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        [
            ("x-codex-primary-used-percent", "42"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-at", "1767225600"),
            ("x-codex-secondary-used-percent", "7"),
            ("x-request-id", "req_mock"),
        ],
        body,
    )
        .into_response()
}
