//! The login callback listener on `127.0.0.1:1455` (or `:1457`).
//!
//! It exists only while a login is in progress: [`CallbackServer`] owns the
//! listening socket and every connection, and dropping it closes them all at
//! once, so the port is free the moment the login ends. It binds loopback
//! only, answers every response with `Connection: close`, and is one-shot:
//! after a code has been accepted, further hits get 409.
//!
//! The rules (docs/PROTOCOL.md §1) are a pure function, [`judge`], tested below.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::secret::Secret;

/// What the listener reports to the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackEvent {
    /// A code with the right state.
    Code(Secret<String>),
    /// The issuer (or the user) refused: `error=` with the right state.
    Denied(String),
}

/// How to answer one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    NotFound,
    MethodNotAllowed,
    /// Codex CLI's `GET /cancel` to a previous Codex login: answered
    /// harmlessly; it does not cancel ours.
    NotACodexLogin,
    AlreadyCompleted,
    BadRequest(&'static str),
    Denied(String),
    Success,
}

/// Applies the callback rules to one request.
pub fn judge(
    method: &Method,
    path: &str,
    query: Option<&str>,
    expected_state: &str,
    completed: bool,
) -> (Answer, Option<CallbackEvent>) {
    if path == "/cancel" {
        return (Answer::NotACodexLogin, None);
    }
    if path != "/auth/callback" {
        return (Answer::NotFound, None);
    }
    if method != Method::GET {
        return (Answer::MethodNotAllowed, None);
    }
    if completed {
        return (Answer::AlreadyCompleted, None);
    }
    let (mut code, mut state, mut error, mut description) = (None, None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "code" => code = Some(v.into_owned()),
            "state" => state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    // The state is checked first, so a stray request cannot end the login.
    if state.as_deref() != Some(expected_state) {
        return (Answer::BadRequest("State mismatch"), None);
    }
    if let Some(error) = error {
        let reason: String = description
            .unwrap_or(error)
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        return (
            Answer::Denied(reason.clone()),
            Some(CallbackEvent::Denied(reason)),
        );
    }
    match code.filter(|c| !c.is_empty()) {
        Some(code) => (
            Answer::Success,
            Some(CallbackEvent::Code(Secret::new(code))),
        ),
        None => (Answer::BadRequest("The callback has no code."), None),
    }
}

/// Why no listener could be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("the callback address {0} is busy")]
    Busy(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Binds the first free address of `candidates`.
pub async fn bind_first(candidates: &[SocketAddr]) -> Result<TcpListener, Vec<BindError>> {
    let mut errors = Vec::new();
    for addr in candidates {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => errors.push(BindError::Busy(*addr)),
            Err(source) => errors.push(BindError::Io {
                addr: *addr,
                source,
            }),
        }
    }
    Err(errors)
}

/// A running listener. Dropping it closes the port and every connection.
pub struct CallbackServer {
    pub addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for CallbackServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl CallbackServer {
    /// Serves the callback on `listener` for a login with `expected_state`,
    /// reporting codes and denials on `events`.
    pub fn start(
        listener: TcpListener,
        expected_state: String,
        events: mpsc::Sender<CallbackEvent>,
    ) -> io::Result<CallbackServer> {
        let addr = listener.local_addr()?;
        let completed = Arc::new(Mutex::new(false));
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            // The connection tasks belong to this task: aborting it (on
            // drop) drops the set, which aborts them all.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = expected_state.clone();
                let events = events.clone();
                let completed = completed.clone();
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let (answer, event) = {
                        let mut done = completed.lock().unwrap_or_else(|p| p.into_inner());
                        let (answer, event) = judge(
                            req.method(),
                            req.uri().path(),
                            req.uri().query(),
                            &state,
                            *done,
                        );
                        if answer == Answer::Success {
                            *done = true;
                        }
                        (answer, event)
                    };
                    let events = events.clone();
                    async move {
                        if let Some(event) = event {
                            let _ = events.send(event).await;
                        }
                        Ok::<_, Infallible>(respond(&answer))
                    }
                });
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                // Reap finished connections so the set stays small.
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(CallbackServer { addr, tasks })
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

fn respond(answer: &Answer) -> Response<Full<Bytes>> {
    let (status, title, body) = match answer {
        Answer::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here.".to_owned(),
        ),
        Answer::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "Only GET is accepted.".to_owned(),
        ),
        Answer::NotACodexLogin => (
            StatusCode::OK,
            "piauthd",
            "This is a piauthd login, not a Codex CLI login; it keeps running.".to_owned(),
        ),
        Answer::AlreadyCompleted => (
            StatusCode::CONFLICT,
            "Already signed in",
            "This login has already completed. You can close this window.".to_owned(),
        ),
        Answer::BadRequest(why) => (
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            format!("{why} Start the login again with <code>pi-authctl login</code>."),
        ),
        Answer::Denied(reason) => (
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            format!("The sign-in was refused: {}", escape(reason)),
        ),
        Answer::Success => (
            StatusCode::OK,
            "Signed in",
            "piauthd is signed in. You can close this window.".to_owned(),
        ),
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>body{{font:16px system-ui,sans-serif;\
         max-width:32em;margin:15vh auto;padding:0 1em;color:#222}}h1{{font-size:1.4em}}</style></head>\
         <body><h1>{title}</h1><p>{body}</p></body></html>"
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("referrer-policy", "no-referrer")
        .header("x-content-type-options", "nosniff")
        .header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        )
        .header(header::CONNECTION, "close")
        .body(Full::new(Bytes::from(page)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ST: &str = "s1";

    fn get(path: &str, query: Option<&str>, done: bool) -> (Answer, Option<CallbackEvent>) {
        judge(&Method::GET, path, query, ST, done)
    }

    #[test]
    fn the_rules() {
        assert_eq!(get("/x", None, false).0, Answer::NotFound);
        assert_eq!(
            judge(&Method::POST, "/auth/callback", None, ST, false).0,
            Answer::MethodNotAllowed
        );
        assert_eq!(get("/cancel", None, false), (Answer::NotACodexLogin, None));
        assert_eq!(
            get("/auth/callback", Some("code=c&state=s2"), false).0,
            Answer::BadRequest("State mismatch")
        );
        assert_eq!(
            get("/auth/callback", Some("code=c"), false).0,
            Answer::BadRequest("State mismatch")
        );
        assert_eq!(
            get("/auth/callback", Some("state=s1"), false).0,
            Answer::BadRequest("The callback has no code.")
        );
        let (a, e) = get("/auth/callback", Some("code=c&state=s1"), false);
        assert_eq!(
            (a, e),
            (
                Answer::Success,
                Some(CallbackEvent::Code(Secret::from("c")))
            )
        );
        assert_eq!(
            get("/auth/callback", Some("code=c&state=s1"), true).0,
            Answer::AlreadyCompleted
        );
    }

    #[test]
    fn a_denial_needs_the_right_state() {
        let (a, e) = get(
            "/auth/callback",
            Some("error=access_denied&error_description=No+thanks&state=s1"),
            false,
        );
        assert_eq!(a, Answer::Denied("No thanks".into()));
        assert_eq!(e, Some(CallbackEvent::Denied("No thanks".into())));
        let (a, e) = get("/auth/callback", Some("error=access_denied"), false);
        assert_eq!((a, e), (Answer::BadRequest("State mismatch"), None));
    }

    #[test]
    fn pages_escape_what_the_query_said() {
        let r = respond(&Answer::Denied("<script>x</script>".into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Any path and query: no panic, a code only with the right state,
        /// and a page that never echoes markup.
        #[test]
        fn any_request_is_judged_safely(path in "/\\PC{0,40}", query in proptest::option::of("\\PC{0,200}"), done in proptest::prelude::any::<bool>()) {
            let (answer, event) = judge(&Method::GET, &path, query.as_deref(), ST, done);
            if let Some(CallbackEvent::Code(_)) = &event {
                proptest::prop_assert_eq!(&answer, &Answer::Success);
                proptest::prop_assert!(!done);
                proptest::prop_assert!(query.as_deref().unwrap_or("").contains("state=s1"));
            }
            let page = respond(&answer);
            proptest::prop_assert!(page.status().as_u16() >= 200);
            if let Answer::Denied(reason) = &answer {
                proptest::prop_assert!(!escape(reason).contains('<'));
            }
        }
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
