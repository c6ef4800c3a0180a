//! Opening a response over SSE or the WebSocket, and reading its events the
//! same way from either.
//!
//! Opening ends at the first event: anything before it (an HTTP error, a
//! WebSocket error frame, a broken connection) is a [`Refusal`] or a
//! [`Opening::Fallback`] the relay may still act on, because the client has
//! seen nothing yet. A `codex.rate_limits` frame before the first event is
//! held back with it, so a refused request leaves no trace.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::continuation::{self, Recorder};
use super::events::{self, RATE_LIMITS_EVENT, ResponseInfo};
use super::failure::CodexError;
use super::sse::SseParser;
use super::websocket::{self, Conn, Frame, Pool, Refused};

/// Events after which a stream counts as flowing (see
/// [`Events::already_here`]).
const FLOWING: u64 = 8;

/// One event of a response: its JSON, and its type, read once.
#[derive(Debug)]
pub struct Event {
    /// The `type`; `None` when the JSON is not an object.
    pub kind: Option<String>,
    pub payload: String,
}

impl Event {
    fn of(payload: String) -> Event {
        Event {
            kind: events::event_type(&payload),
            payload,
        }
    }
}

/// An answer before the first event that is the backend's word, not the
/// transport's: the relay refreshes, moves or retries on it.
#[derive(Debug)]
pub enum Refusal {
    Answer(Answer),
    Network(String),
}

/// The backend's answer in place of a response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Why a WebSocket gave no first event.
#[derive(Debug)]
pub enum Opening {
    Refusal(Refusal),
    /// The transport failed: the session goes on over SSE.
    Fallback(String),
}

/// The events of an open response.
#[derive(Debug)]
pub enum Events {
    Sse(Box<SseEvents>),
    Ws(Box<WsEvents>),
}

#[derive(Debug)]
pub struct SseEvents {
    response: reqwest::Response,
    parser: SseParser,
    queue: VecDeque<String>,
    ended: bool,
}

#[derive(Debug)]
pub struct WsEvents {
    conn: Conn,
    queue: VecDeque<String>,
    recorder: Recorder,
    /// The full body the turn stands for.
    body: Arc<Map<String, Value>>,
    session: String,
    account: String,
    pool: Arc<Pool>,
}

impl Events {
    pub fn sse(response: reqwest::Response) -> Events {
        Events::Sse(Box::new(SseEvents {
            response,
            parser: SseParser::new(),
            queue: VecDeque::new(),
            ended: false,
        }))
    }

    /// [`Events::next`] if it is already here, without waiting for it.
    /// Once the stream flows, one turn of the runtime first lets in what is
    /// already on the wire: over SSE, the HTTP connection's task hands the
    /// body over a chunk at a time. The first events never wait for it.
    pub async fn already_here(&mut self, events: u64) -> Option<Result<Option<Event>, CodexError>> {
        use futures_util::FutureExt;
        if let Some(next) = self.next(events).now_or_never() {
            return Some(next);
        }
        if events < FLOWING {
            return None;
        }
        tokio::task::yield_now().await;
        self.next(events).now_or_never()
    }

    /// The next event; `None` when the stream ended without one. `events`
    /// is how many were relayed, for the error.
    pub async fn next(&mut self, events: u64) -> Result<Option<Event>, CodexError> {
        let network = |message: String| CodexError::Network { message, events };
        match self {
            Events::Sse(sse) => loop {
                if let Some(p) = sse.queue.pop_front() {
                    return Ok(Some(Event::of(p)));
                }
                if sse.ended {
                    return Ok(None);
                }
                let chunk = sse
                    .response
                    .chunk()
                    .await
                    .map_err(|e| network(crate::causes::line(&e)))?;
                let payloads = match &chunk {
                    Some(bytes) => sse.parser.push(bytes),
                    None => {
                        sse.ended = true;
                        sse.parser.finish()
                    }
                }
                .map_err(|e| network(e.to_string()))?;
                sse.queue.extend(payloads);
            },
            Events::Ws(ws) => {
                let payload = match ws.queue.pop_front() {
                    Some(p) => p,
                    None => match ws.conn.next().await {
                        Frame::Event(p) => p,
                        // A close before the terminal event ends the
                        // stream early, as the end of an SSE body does.
                        Frame::Closed(why) => {
                            tracing::debug!(%why, "the WebSocket closed mid-response");
                            return Ok(None);
                        }
                        Frame::Broken(why) => return Err(network(why)),
                    },
                };
                let event = Event::of(payload);
                if let Some(kind) = &event.kind {
                    ws.recorder.note(kind, &event.payload);
                }
                Ok(Some(event))
            }
        }
    }

    /// After the terminal event: a WebSocket goes back to its session's
    /// pool with the turn it completed, for the next turn's continuation.
    pub fn finish(self) {
        if let Events::Ws(ws) = self {
            let WsEvents {
                mut conn,
                recorder,
                body,
                session,
                account,
                pool,
                ..
            } = *ws;
            conn.last = recorder.finish(&body);
            pool.put(&session, &account, conn);
        }
    }
}

/// What a WebSocket turn needs.
pub struct WsAsk<'a> {
    pub pool: &'a Arc<Pool>,
    pub url: &'a url::Url,
    pub token: &'a str,
    pub headers: Vec<(&'static str, String)>,
    pub account: &'a str,
    pub session: &'a str,
    pub body: &'a Arc<Map<String, Value>>,
    /// `body`'s JSON.
    pub json: &'a [u8],
    /// The longest wait for a frame.
    pub idle: Duration,
}

/// The pieces of an `error` frame the relay acts on.
fn error_frame(payload: &str) -> (u16, String) {
    let v: Value = serde_json::from_str(payload).unwrap_or_default();
    let status = v
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (400..600).contains(s))
        .unwrap_or(500);
    let code = v
        .get("error")
        .and_then(|e| e.get("code"))
        .or_else(|| v.get("code"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

async fn connect(ask: &WsAsk<'_>) -> Result<Conn, Opening> {
    match websocket::connect(ask.url, ask.token, ask.headers.clone()).await {
        Ok(conn) => Ok(conn),
        // The backend's word on the request: the relay refreshes or moves.
        Err(Refused::Http {
            status: status @ (401 | 429),
            headers,
            body,
        }) => Err(Opening::Refusal(Refusal::Answer(Answer {
            status,
            headers,
            body,
        }))),
        // 426 and every other refusal of the upgrade: SSE, as pi does.
        Err(Refused::Http { status, .. }) => Err(Opening::Fallback(format!(
            "the WebSocket upgrade was answered {status}"
        ))),
        Err(Refused::Network(why)) => Err(Opening::Fallback(why)),
    }
}

/// Sends the turn over the session's WebSocket (cached, else new) and reads
/// up to its first event.
///
/// * A cached connection that fails before the first event is replaced by
///   a new one, once; `websocket_connection_limit_reached` likewise.
/// * `previous_response_not_found` sends the full body, once.
pub async fn open_ws(ask: WsAsk<'_>) -> Result<(ResponseInfo, Events), Opening> {
    let mut conn = match ask.pool.take(ask.session, ask.account) {
        Some(c) => c,
        None => connect(&ask).await?,
    };
    let (mut renewed, mut full) = (false, false);
    'turn: loop {
        let continued = match full {
            true => None,
            false => continuation::continuation(conn.last.as_ref(), ask.body),
        };
        conn.last = None;
        let frame = match &continued {
            Some(delta) => serde_json::to_vec(delta).ok(),
            None => None,
        };
        let text = websocket::create_frame(frame.as_deref().unwrap_or(ask.json));
        let Some(text) = text else {
            // Not reached: the body is serde_json's text of an object.
            return Err(Opening::Fallback("the body is not a JSON object".into()));
        };
        let mut failed = conn.send(text).await.err();
        let mut held = VecDeque::new();
        while failed.is_none() {
            let frame = tokio::time::timeout(ask.idle, conn.next()).await;
            let payload = match frame {
                Err(_) => {
                    return Err(Opening::Refusal(Refusal::Network(format!(
                        "no event for {} s",
                        ask.idle.as_secs()
                    ))));
                }
                Ok(Frame::Closed(why) | Frame::Broken(why)) => {
                    failed = Some(why);
                    break;
                }
                Ok(Frame::Event(p)) => p,
            };
            let kind = events::event_type(&payload).unwrap_or_default();
            if kind == RATE_LIMITS_EVENT {
                held.push_back(payload);
                continue;
            }
            if kind == "error" {
                let (status, code) = error_frame(&payload);
                match code.as_str() {
                    "previous_response_not_found" if !full => {
                        full = true;
                        continue 'turn;
                    }
                    "websocket_connection_limit_reached" if !renewed => {
                        renewed = true;
                        conn = connect(&ask).await?;
                        continue 'turn;
                    }
                    _ => {}
                }
                return Err(Opening::Refusal(Refusal::Answer(Answer {
                    status,
                    headers: conn.headers.clone(),
                    body: payload.into_bytes(),
                })));
            }
            held.push_back(payload);
            let info = ResponseInfo::of(200, &conn.headers);
            return Ok((
                info,
                Events::Ws(Box::new(WsEvents {
                    conn,
                    queue: held,
                    recorder: Recorder::default(),
                    body: ask.body.clone(),
                    session: ask.session.to_owned(),
                    account: ask.account.to_owned(),
                    pool: ask.pool.clone(),
                })),
            ));
        }
        let why = failed.unwrap_or_default();
        if conn.reused && !renewed {
            tracing::debug!(%why, "a cached WebSocket failed before the first event; opening a new one");
            renewed = true;
            conn = connect(&ask).await?;
            continue;
        }
        return Err(Opening::Fallback(why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frames_give_their_status_and_code() {
        assert_eq!(
            error_frame(
                r#"{"type":"error","status":429,"error":{"code":"usage_limit_reached","message":"m"}}"#
            ),
            (429, "usage_limit_reached".into())
        );
        assert_eq!(
            error_frame(r#"{"type":"error","code":"previous_response_not_found"}"#),
            (500, "previous_response_not_found".into()),
            "no status: the backend's failure, retried like a 5xx"
        );
        assert_eq!(error_frame(r#"{"type":"error","status":99}"#).0, 500);
        assert_eq!(error_frame("garbage"), (500, String::new()));
    }
}
