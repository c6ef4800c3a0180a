//! What the callback listener answers: a pure function of one request and
//! the login's [`Flow`], tested below.
//!
//! Besides docs/PROTOCOL.md §1 (`state`, `code`, `error`), it binds the login to
//! one browser: the user opens a one-time start URL (`/start/<nonce>`) that
//! sets a random cookie and redirects to the issuer, and `/auth/callback`
//! accepts a code only from a browser that carries that cookie. So a code
//! delivered by anyone who merely learnt `state` (another user who read it,
//! a page that guessed the port) is refused. `Host` must name the listener
//! itself, which stops DNS-rebinding pages.

use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Bytes;

use crate::secret::Secret;

/// The name of the cookie that ties the callback to the start URL's browser.
pub const COOKIE: &str = "piauthd_login";

/// What the listener knows of the login it serves. Its `Debug` shows none of
/// the values: each one would let someone else finish or hijack the login.
pub struct Flow {
    /// The port the listener is bound on, for the `Host` check.
    pub port: u16,
    pub state: Secret<String>,
    /// The random path segment of the start URL.
    pub start_nonce: Secret<String>,
    /// The cookie's value, set by the start URL.
    pub cookie: Secret<String>,
    /// Where the start URL sends the browser (it holds `state`).
    pub authorize_url: Secret<String>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow").field("port", &self.port).finish()
    }
}

/// How far the login has come, as the listener saw it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The start URL was used (it works once).
    pub started: bool,
    /// A code was accepted.
    pub completed: bool,
}

/// The parts of a request the rules look at.
#[derive(Debug, Clone, Default)]
pub struct Asked<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub host: Option<&'a str>,
    /// Every `Cookie` header's value.
    pub cookies: Vec<&'a str>,
}

impl<'a> Asked<'a> {
    /// Reads the parts of a real request.
    pub fn of<B>(req: &'a http::Request<B>) -> Asked<'a> {
        let text = |name| {
            req.headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
        };
        Asked {
            method: req.method().clone(),
            path: req.uri().path(),
            query: req.uri().query(),
            host: text(header::HOST).next(),
            cookies: text(header::COOKIE).collect(),
        }
    }
}

/// What the listener reports to the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackEvent {
    /// A code with the right state, from the browser that started the login.
    Code(Secret<String>),
    /// The issuer (or the user) refused: `error=` with the right state.
    Denied(String),
    /// The start URL was opened a second time. Someone else may hold the
    /// first browser's cookie, so the login ends.
    StartReused,
}

/// How to answer one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    NotFound,
    MethodNotAllowed,
    /// `Host` is not this listener (a DNS-rebinding page, a proxy).
    WrongHost,
    /// Codex CLI's `GET /cancel` to a previous Codex login: answered
    /// harmlessly; it does not cancel ours.
    NotACodexLogin,
    /// The start URL: set the cookie and redirect to the issuer.
    Start,
    StartReused,
    AlreadyCompleted,
    /// A callback without this login's cookie: not the browser that started
    /// the login.
    NotThisBrowser,
    BadRequest(&'static str),
    Denied(String),
    Success,
}

/// Compares two secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `host` names the listener: `localhost`, `127.0.0.1` or `[::1]`
/// with its port, as a browser sends it.
pub fn host_allowed(host: Option<&str>, port: u16) -> bool {
    let Some(host) = host else { return false };
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    p.parse::<u16>().is_ok_and(|p| p == port)
        && (name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "[::1]")
}

/// Whether one of the `Cookie` headers carries `expected` as [`COOKIE`].
fn has_cookie(headers: &[&str], expected: &str) -> bool {
    headers
        .iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && same(value, expected))
}

/// Applies the rules to one request. The caller records [`Answer::Start`]
/// and [`Answer::Success`] in [`Progress`].
pub fn judge(req: &Asked<'_>, flow: &Flow, progress: Progress) -> (Answer, Option<CallbackEvent>) {
    if !host_allowed(req.host, flow.port) {
        return (Answer::WrongHost, None);
    }
    if req.path == "/cancel" {
        return (Answer::NotACodexLogin, None);
    }
    if let Some(nonce) = req.path.strip_prefix("/start/") {
        if !same(nonce, flow.start_nonce.expose()) {
            return (Answer::NotFound, None);
        }
        if req.method != Method::GET {
            return (Answer::MethodNotAllowed, None);
        }
        if progress.completed {
            return (Answer::AlreadyCompleted, None);
        }
        if progress.started {
            return (Answer::StartReused, Some(CallbackEvent::StartReused));
        }
        return (Answer::Start, None);
    }
    if req.path != "/auth/callback" {
        return (Answer::NotFound, None);
    }
    if req.method != Method::GET {
        return (Answer::MethodNotAllowed, None);
    }
    if progress.completed {
        return (Answer::AlreadyCompleted, None);
    }
    // The cookie first: a request without it learns nothing, not even
    // whether its state was right.
    if !has_cookie(&req.cookies, flow.cookie.expose()) {
        return (Answer::NotThisBrowser, None);
    }
    callback_query(req.query, flow.state.expose())
}

/// The docs/PROTOCOL.md §1 part: `state`, then `error` or `code`.
fn callback_query(query: Option<&str>, expected_state: &str) -> (Answer, Option<CallbackEvent>) {
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
    // The state is checked before anything else, so a stray request cannot
    // end the login.
    if !state.as_deref().is_some_and(|s| same(s, expected_state)) {
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

/// The response to `answer`: a small page, or the start URL's redirect.
pub fn respond(answer: &Answer, flow: &Flow) -> Response<Full<Bytes>> {
    let (status, title, body) = match answer {
        Answer::Start => return start_redirect(flow),
        Answer::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is nothing here.".to_owned()),
        Answer::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "Only GET is accepted.".to_owned()),
        Answer::WrongHost => (StatusCode::MISDIRECTED_REQUEST, "Wrong address", "Open the link exactly as pi-authctl printed it.".to_owned()),
        Answer::NotACodexLogin => (StatusCode::OK, "piauthd", "This is a piauthd login, not a Codex CLI login; it keeps running.".to_owned()),
        Answer::StartReused => (StatusCode::CONFLICT, "Link already used", "This sign-in link works once, and it was opened before, so the login was stopped for safety. Run <code>pi-authctl login</code> again and open its link in one browser.".to_owned()),
        Answer::AlreadyCompleted => (StatusCode::CONFLICT, "Already signed in", "This login has already completed. You can close this window.".to_owned()),
        Answer::NotThisBrowser => (StatusCode::FORBIDDEN, "Not this browser", "This sign-in was not started from this browser, so piauthd does not accept it here. Open the link pi-authctl printed (it starts with <code>http://localhost</code>), or paste this page's address into pi-authctl.".to_owned()),
        Answer::BadRequest(why) => (StatusCode::BAD_REQUEST, "Sign-in failed", format!("{why} Start the login again with <code>pi-authctl login</code>.")),
        Answer::Denied(reason) => (StatusCode::BAD_REQUEST, "Sign-in failed", format!("The sign-in was refused: {}", escape(reason))),
        Answer::Success => (StatusCode::OK, "Signed in", "piauthd is signed in. You can close this window.".to_owned()),
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>body{{font:16px system-ui,sans-serif;\
         max-width:32em;margin:15vh auto;padding:0 1em;color:#222}}h1{{font-size:1.4em}}</style></head>\
         <body><h1>{title}</h1><p>{body}</p></body></html>"
    );
    common(Response::builder().status(status))
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        )
        .body(Full::new(Bytes::from(page)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The start URL's answer: a 302 to the issuer that sets the cookie. The
/// cookie is `HttpOnly` (no script reads it), `SameSite=Lax` (a browser
/// sends it on the issuer's top-level redirect back, and on nothing a
/// foreign page posts) and has no `Max-Age`: it dies with the browser
/// session, and the next login overwrites it anyway.
fn start_redirect(flow: &Flow) -> Response<Full<Bytes>> {
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Lax; Path=/",
        flow.cookie.expose()
    );
    common(Response::builder().status(StatusCode::FOUND))
        .header(header::LOCATION, flow.authorize_url.expose().as_str())
        .header(header::SET_COOKIE, cookie)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Headers on every answer: nothing cached, no referrer to the issuer, one
/// request per connection.
fn common(builder: http::response::Builder) -> http::response::Builder {
    builder
        .header(header::CACHE_CONTROL, "no-store")
        .header("referrer-policy", "no-referrer")
        .header("x-content-type-options", "nosniff")
        .header(header::CONNECTION, "close")
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
#[path = "rules_tests.rs"]
mod tests;
