//! The Responses WebSocket transport (docs/PROTOCOL.md §3): the upgrade,
//! one cached connection per client session and account with its last turn
//! (for continuation), the age and idle limits, and the sessions that fell
//! back to SSE.
//!
//! A connection is out of the pool while a turn uses it, so two turns of one
//! session at once use two connections; only a connection that ended its
//! turn cleanly goes back.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::continuation::Turn;

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A connection older than this is not used for a new turn: the server ends
/// every connection at 60 minutes, even mid-response (pi uses 45).
pub const MAX_AGE: Duration = Duration::from_secs(45 * 60);
/// A cached connection idle this long is closed (pi uses 5 minutes).
pub const MAX_IDLE: Duration = Duration::from_secs(5 * 60);
/// How long the upgrade may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The most connections kept idle; the longest idle goes first.
const MAX_CACHED: usize = 256;
/// The most sessions remembered as fallen back to SSE.
const MAX_FALLBACKS: usize = 4096;

/// One upstream connection and what its last turn left.
#[derive(Debug)]
pub struct Conn {
    pub socket: Socket,
    opened: Instant,
    /// The last completed turn on this connection.
    pub last: Option<Turn>,
    /// Whether it served a turn before this one.
    pub reused: bool,
    /// The upgrade answer's headers (limits, `x-codex-turn-state`).
    pub headers: http::HeaderMap,
}

/// Why an upgrade or a first frame did not give a response.
#[derive(Debug)]
pub enum Refused {
    /// An HTTP answer instead of the upgrade.
    Http {
        status: u16,
        headers: http::HeaderMap,
        body: Vec<u8>,
    },
    /// No answer: a network, TLS or protocol failure, or the deadline.
    Network(String),
}

/// Opens a connection to `url` (`ws://` or `wss://`) with `token` and
/// `headers`.
pub async fn connect(
    url: &url::Url,
    token: &str,
    headers: Vec<(&'static str, String)>,
) -> Result<Conn, Refused> {
    let bad =
        |e: &dyn std::fmt::Display| Refused::Network(format!("cannot build the upgrade: {e}"));
    let mut req = url.as_str().into_client_request().map_err(|e| bad(&e))?;
    let h = req.headers_mut();
    let bearer = http::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| bad(&"the token is not a header value"))?;
    h.insert(http::header::AUTHORIZATION, bearer);
    for (name, value) in headers {
        h.insert(name, value.parse().map_err(|_| bad(&name))?);
    }
    // Nagle's algorithm off: a turn is one frame, and it should leave now.
    let connecting = tokio_tungstenite::connect_async_with_config(req, None, true);
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await;
    match opened {
        Err(_) => Err(Refused::Network(format!(
            "the WebSocket upgrade took over {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
        Ok(Err(tungstenite::Error::Http(resp))) => Err(Refused::Http {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.body().clone().unwrap_or_default(),
        }),
        Ok(Err(e)) => Err(Refused::Network(format!(
            "the WebSocket upgrade failed: {e}"
        ))),
        Ok(Ok((socket, resp))) => Ok(Conn {
            socket,
            opened: Instant::now(),
            last: None,
            reused: false,
            headers: resp.headers().clone(),
        }),
    }
}

/// The `response.create` frame of a body's JSON object (as serde_json
/// writes it): the body's fields after the frame's `type`, spliced without
/// parsing the body again. `None` when `body` is not a JSON object's text.
pub fn create_frame(body: &[u8]) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?.trim();
    let fields = body.strip_prefix('{')?.strip_suffix('}')?.trim();
    const OPEN: &str = r#"{"type":"response.create""#;
    Some(if fields.is_empty() {
        format!("{OPEN}}}")
    } else {
        format!("{OPEN},{fields}}}")
    })
}

/// What one read of a connection gives.
#[derive(Debug)]
pub enum Frame {
    /// A text frame: one event's JSON.
    Event(String),
    /// The server closed the connection.
    Closed(String),
    /// The connection broke.
    Broken(String),
}

impl Conn {
    /// Sends one frame, as [`create_frame`] makes it.
    pub async fn send(&mut self, text: String) -> Result<(), String> {
        self.socket
            .send(Message::text(text))
            .await
            .map_err(|e| format!("cannot send on the WebSocket: {e}"))
    }

    /// The next text frame (pings are answered by the library; binary
    /// frames are not part of the protocol and are skipped).
    pub async fn next(&mut self) -> Frame {
        loop {
            return match self.socket.next().await {
                None => Frame::Closed("the WebSocket closed".into()),
                Some(Err(e)) => Frame::Broken(format!("the WebSocket broke: {e}")),
                Some(Ok(Message::Text(t))) => Frame::Event(t.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => Frame::Closed(match frame {
                    Some(f) if !f.reason.is_empty() => {
                        format!("the WebSocket closed ({}): {}", u16::from(f.code), f.reason)
                    }
                    Some(f) => format!("the WebSocket closed ({})", u16::from(f.code)),
                    None => "the WebSocket closed".into(),
                }),
                Some(Ok(_)) => continue,
            };
        }
    }

    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.opened) >= MAX_AGE
    }
}

/// Ends a connection politely, in the background.
fn close(mut conn: Conn) {
    tokio::spawn(async move {
        let _ = conn.socket.close(None).await;
    });
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// The cached connections and the sessions that fell back to SSE.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<HashMap<(String, String), Idle>>,
    fallbacks: Mutex<HashSet<String>>,
}

impl Pool {
    /// The cached connection of `session` on `account`, if one is fit for a
    /// new turn. Connections past their age or idle limit are closed.
    pub fn take(&self, session: &str, account: &str) -> Option<Conn> {
        if session.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stale: Vec<_> = idle
            .iter()
            .filter(|(_, i)| i.conn.expired(now) || now.duration_since(i.since) >= MAX_IDLE)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(i) = idle.remove(&key) {
                close(i.conn);
            }
        }
        let mut conn = idle.remove(&(session.to_owned(), account.to_owned()))?.conn;
        conn.reused = true;
        Some(conn)
    }

    /// Keeps `conn` for `session`'s next turn on `account` (a session-less
    /// turn's connection is closed).
    pub fn put(&self, session: &str, account: &str, conn: Conn) {
        let now = Instant::now();
        if session.is_empty() || conn.expired(now) {
            return close(conn);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_CACHED
            && let Some(oldest) = idle
                .iter()
                .min_by_key(|(_, i)| i.since)
                .map(|(k, _)| k.clone())
            && let Some(i) = idle.remove(&oldest)
        {
            close(i.conn);
        }
        if let Some(old) = idle.insert(
            (session.to_owned(), account.to_owned()),
            Idle { conn, since: now },
        ) {
            close(old.conn);
        }
    }

    /// Whether `session` uses SSE from now on.
    pub fn fell_back(&self, session: &str) -> bool {
        let set = self.fallbacks.lock().unwrap_or_else(|e| e.into_inner());
        set.contains(session)
    }

    /// Remembers that `session` uses SSE from now on (a session-less turn
    /// is not remembered).
    pub fn fall_back(&self, session: &str) {
        if session.is_empty() {
            return;
        }
        let mut set = self.fallbacks.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= MAX_FALLBACKS {
            set.clear();
        }
        set.insert(session.to_owned());
    }
}

/// The WebSocket URL of an `http(s)` Responses URL.
pub fn url_of(https: &url::Url) -> url::Url {
    let mut u = https.clone();
    let scheme = if https.scheme() == "http" {
        "ws"
    } else {
        "wss"
    };
    // Both schemes are "special" in the URL standard, so the swap holds.
    let _ = u.set_scheme(scheme);
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_websocket_url_swaps_the_scheme_only() {
        let u = url::Url::parse("https://chatgpt.com/backend-api/codex/responses").unwrap();
        assert_eq!(
            url_of(&u).as_str(),
            "wss://chatgpt.com/backend-api/codex/responses"
        );
        let u = url::Url::parse("http://127.0.0.1:9/b/codex/responses").unwrap();
        assert_eq!(url_of(&u).as_str(), "ws://127.0.0.1:9/b/codex/responses");
    }

    #[test]
    fn a_frame_is_the_body_after_its_type() {
        let body = serde_json::json!({"model": "m", "input": [{"a": "}"}], "store": false});
        let frame = create_frame(body.to_string().as_bytes()).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&frame).unwrap();
        let mut want = serde_json::json!({"type": "response.create"});
        want.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        assert_eq!(parsed, want);
        assert!(
            frame.starts_with(r#"{"type":"response.create","model""#),
            "{frame}"
        );
        assert_eq!(
            create_frame(b"{}").unwrap(),
            r#"{"type":"response.create"}"#
        );
        for bad in [&b"[1]"[..], b"", b"\"{}\"", b"{", b"\xff{}"] {
            assert_eq!(create_frame(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fallbacks_are_per_session_and_bounded() {
        let pool = Pool::default();
        pool.fall_back("");
        assert!(!pool.fell_back(""));
        pool.fall_back("a");
        assert!(pool.fell_back("a") && !pool.fell_back("b"));
        for i in 0..MAX_FALLBACKS + 1 {
            pool.fall_back(&i.to_string());
        }
        assert!(pool.fallbacks.lock().unwrap().len() <= MAX_FALLBACKS);
    }
}
