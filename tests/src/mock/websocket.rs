//! The mock's Responses WebSocket (`GET {codex_base}/codex/responses` with
//! `Upgrade: websocket`), as pi 1.6.0 and Codex CLI use it
//! (docs/PROTOCOL.md §3):
//!
//! * the upgrade checks the token and account like a `POST`, and the
//!   `OpenAI-Beta: responses_websockets=…` header;
//! * each text frame `{"type":"response.create", …body}` is one turn,
//!   answered with the same events (and the same faults) as SSE, as JSON text
//!   frames; a refusal is an `error` frame `{"type":"error","status":…,
//!   "error":{…}}` and the connection stays open;
//! * continuation: a turn with `previous_response_id` names the last
//!   completed response on this connection, and its `input` is taken as the
//!   new items after that response's input and output; any other id is
//!   answered `previous_response_not_found`;
//! * every turn opens with a `codex.rate_limits` event (the headers came
//!   with the upgrade, long before);
//! * a connection older than `websocket_max_age` answers its next turn with
//!   `websocket_connection_limit_reached` and closes (the real backend
//!   closes at 60 minutes);
//! * `websocket: Refuse { status }` refuses every upgrade with that status
//!   (426 is what makes clients fall back to SSE by name).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::MockState;
use super::codex::{self, SeenRequest};
use super::reply::{self, Out, ResponsesFault};
use super::usage;

/// Whether the mock takes WebSocket upgrades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebsocketMode {
    /// Take them (the real backend does).
    #[default]
    Serve,
    /// Refuse every upgrade with this HTTP status.
    Refuse { status: u16 },
}

/// The beta header value the upgrade must carry.
const BETA: &str = "responses_websockets=2026-02-06";

pub async fn upgrade(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response();
    };
    if let WebsocketMode::Refuse { status } = state.config().websocket {
        state
            .websocket_upgrades_refused
            .fetch_add(1, Ordering::SeqCst);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UPGRADE_REQUIRED);
        return codex::error(
            status,
            "websocket_not_supported",
            "this backend takes no WebSocket now; POST the request (Server-Sent Events)",
        );
    }
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let account = match codex::authorize(&state, &headers) {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    if header("openai-beta") != BETA || header("originator").is_empty() {
        return codex::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!("the upgrade needs OpenAI-Beta: {BETA} and an originator"),
        );
    }
    let template = SeenRequest {
        account: account.clone(),
        transport: "websocket".into(),
        session_id_dash: headers
            .get("session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        originator: header("originator").to_owned(),
        user_agent: header("user-agent").to_owned(),
        ..SeenRequest::default()
    };
    state.websocket_connections.fetch_add(1, Ordering::SeqCst);
    let usage = state.usage_of(&account, usage::now_s());
    let mut response = upgrade.on_upgrade(move |socket| serve(state, account, template, socket));
    codex::limit_headers(response.headers_mut(), &usage);
    response
}

/// The last completed turn on a connection: its response id and the whole
/// conversation it stands for (input and output).
struct Last {
    id: String,
    items: Vec<Value>,
}

fn error_frame(status: u16, code: &str, message: &str) -> Value {
    json!({"type": "error", "status": status,
           "error": {"type": "invalid_request_error", "code": code, "message": message}})
}

async fn send(socket: &mut WebSocket, event: &Value) -> bool {
    socket
        .send(Message::Text(event.to_string().into()))
        .await
        .is_ok()
}

/// Counts a connection as open while it lives.
struct OpenGuard(Arc<MockState>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.websocket_open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    state: Arc<MockState>,
    account: String,
    template: SeenRequest,
    mut socket: WebSocket,
) {
    state.websocket_open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(state.clone());
    let opened = std::time::Instant::now();
    let mut last: Option<Last> = None;
    while let Some(Ok(msg)) = socket.recv().await {
        let text = match msg {
            Message::Text(t) => t.as_str().to_owned(),
            Message::Close(_) => return,
            _ => continue,
        };
        state.responses_requests.fetch_add(1, Ordering::SeqCst);
        state.websocket_requests.fetch_add(1, Ordering::SeqCst);
        let mut seen = SeenRequest {
            wire_bytes: text.len(),
            body_bytes: text.len(),
            ..template.clone()
        };
        let limit = take_fault(&state, &ResponsesFault::ConnectionLimit);
        if limit || opened.elapsed() >= state.config().websocket_max_age {
            seen.status = 400;
            state.record_responses_request(seen);
            let frame = error_frame(
                400,
                "websocket_connection_limit_reached",
                "this connection reached its age limit; open a new one",
            );
            let _ = send(&mut socket, &frame).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        let (events, request_items) = match turn(&state, &account, &text, last.as_ref(), &mut seen)
        {
            Answer::Stream(rx, items) => {
                seen.status = 200;
                state.record_responses_request(seen);
                (rx, items)
            }
            Answer::Frame(frame) => {
                seen.status = frame["status"].as_u64().map_or(400, |s| s as u16);
                state.record_responses_request(seen);
                if !send(&mut socket, &frame).await {
                    return;
                }
                continue;
            }
            Answer::Refused(refused) => {
                seen.status = refused.status().as_u16();
                state.record_responses_request(seen);
                if !send(&mut socket, &frame_of_refusal(refused).await).await {
                    return;
                }
                continue;
            }
        };
        match relay(&mut socket, events).await {
            Relayed::Completed { id, output } => {
                let mut items = request_items;
                items.extend(output);
                last = Some(Last { id, items });
            }
            Relayed::Ended => last = None,
            Relayed::Gone => return,
        }
    }
}

/// What a turn's frame gets.
enum Answer {
    /// The reply's events, with the turn's whole input.
    Stream(tokio::sync::mpsc::Receiver<Out>, Vec<Value>),
    /// An `error` frame.
    Frame(Value),
    /// What SSE would answer with an HTTP error, said as an `error` frame.
    Refused(Response),
}

/// Checks one turn's frame and starts its reply.
fn turn(
    state: &Arc<MockState>,
    account: &str,
    text: &str,
    last: Option<&Last>,
    seen: &mut SeenRequest,
) -> Answer {
    let bad = |why: &str| Answer::Frame(error_frame(400, "invalid_request_error", why));
    let Ok(Value::Object(mut req)) = serde_json::from_str::<Value>(text) else {
        return bad("the frame is not a JSON object");
    };
    if req.remove("type") != Some(json!("response.create")) {
        return bad("a frame must be {\"type\":\"response.create\", ...}");
    }
    let req = Value::Object(req);
    codex::note_body(seen, &req);
    if let Err(why) = codex::check_body(&req) {
        return bad(&why);
    }
    let new_items = req["input"].as_array().cloned().unwrap_or_default();
    let mut items = Vec::new();
    if let Some(prev) = req.get("previous_response_id").and_then(Value::as_str) {
        seen.previous_response_id = Some(prev.to_owned());
        let forgot = take_fault(state, &ResponsesFault::ForgetResponse);
        match last {
            Some(l) if l.id == prev && !forgot => items.extend(l.items.iter().cloned()),
            _ => {
                return Answer::Frame(error_frame(
                    400,
                    "previous_response_not_found",
                    &format!("Previous response with id '{prev}' not found."),
                ));
            }
        }
        state.websocket_continued.fetch_add(1, Ordering::SeqCst);
    }
    items.extend(new_items);
    let fault = state.ledger().responses_faults.pop_front();
    if let Some(refused) = fault.as_ref().and_then(codex::refusal) {
        return Answer::Refused(refused);
    }
    let now_s = usage::now_s();
    let usage = match state.charge_usage(account, now_s) {
        Ok(u) => u,
        Err(resets_at) => {
            return Answer::Refused(usage::limit_answer(
                &state.plan_of(account),
                resets_at,
                now_s,
            ));
        }
    };
    let (tx, rx) = reply::reply_channel(fault.as_ref());
    // The upgrade's headers are old news by the next turn: each turn opens
    // with the account's windows as they are after it was charged.
    let shape = reply::ReplyShape {
        rate_limits_event: true,
        ..state.reply_shape_for(seen.asks())
    };
    tokio::spawn(reply::stream_reply(
        state.clone(),
        shape,
        usage,
        fault,
        None,
        tx,
    ));
    Answer::Stream(rx, items)
}

/// Takes the next fault if it is `fault`.
fn take_fault(state: &MockState, fault: &ResponsesFault) -> bool {
    let mut ledger = state.ledger();
    let next = ledger.responses_faults.front() == Some(fault);
    if next {
        ledger.responses_faults.pop_front();
    }
    next
}

/// The `error` frame that says what an HTTP refusal says. Its body is
/// `{"error": {…}}` from the mock itself, so it is read whole.
async fn frame_of_refusal(refused: Response) -> Value {
    let status = refused.status().as_u16();
    let body = axum::body::to_bytes(refused.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let error = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .unwrap_or_else(|| json!({"code": "server_error", "message": "refused"}));
    json!({"type": "error", "status": status, "error": error})
}

enum Relayed {
    /// The turn completed: its response id and output items.
    Completed { id: String, output: Vec<Value> },
    /// The turn ended otherwise (a fault); the connection stays.
    Ended,
    /// The client went away, or a fault cut the connection.
    Gone,
}

/// Sends a reply's events as text frames.
async fn relay(socket: &mut WebSocket, mut events: tokio::sync::mpsc::Receiver<Out>) -> Relayed {
    let mut output = Vec::new();
    let mut failed = false;
    while let Some(out) = events.recv().await {
        let event = match out {
            Out::Event(e) => e,
            Out::Cut => {
                // What was sent before the cut still arrives.
                let _ = futures_util::SinkExt::flush(socket).await;
                return Relayed::Gone;
            }
        };
        // Frames that are ready together leave in one write, as a busy
        // server's do: the frames are the same, the system calls fewer.
        let frame = Message::Text(event.json.as_str().into());
        let sent = match futures_util::SinkExt::feed(socket, frame).await {
            Ok(()) if events.is_empty() => futures_util::SinkExt::flush(socket).await,
            other => other,
        };
        if sent.is_err() {
            return Relayed::Gone;
        }
        match event.kind.as_str() {
            "response.output_item.done" => output.push(event.value()["item"].take()),
            "response.completed" => {
                if futures_util::SinkExt::flush(socket).await.is_err() {
                    return Relayed::Gone;
                }
                let id = event.value()["response"]["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                return Relayed::Completed { id, output };
            }
            "error" | "response.failed" => failed = true,
            _ => {}
        }
    }
    if futures_util::SinkExt::flush(socket).await.is_err() {
        return Relayed::Gone;
    }
    if failed {
        // A failed response leaves the connection usable.
        return Relayed::Ended;
    }
    // A reply cut short (`Truncate`): the server closes the connection
    // mid-response, as it does at its age limit.
    let _ = socket.send(Message::Close(None)).await;
    Relayed::Gone
}
