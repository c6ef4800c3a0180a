//! Relaying a completion: send the request with the broker's token, then
//! pass every SSE event on the moment it arrives.
//!
//! * The channel to the client is bounded, so a slow client slows the
//!   upstream read and memory stays bounded; a client that goes away drops
//!   the channel, and the upstream request is dropped (aborted) with it.
//! * Before the first event, a 5xx or network error is retried with capped
//!   backoff that honours `retry-after`, and a 401 causes one forced refresh
//!   and one retry. After the first event nothing is ever retried.

use std::sync::Arc;
use std::time::Duration;

use std::borrow::Cow;

use serde::Deserialize;

use crate::wire::Loose;
use tokio::sync::mpsc;

use super::failure::{self, CodexError};
use super::request::{self, Prepared};
use super::sse::SseParser;
use crate::accounts::Accounts;
use crate::backoff::Backoff;
use crate::broker::{Broker, DEFAULT_PROVIDER, TokenError};
use crate::usage::{self, Report, UsageBook};

/// Attempts before the first event (5xx and network errors).
const ATTEMPTS: u32 = 3;
/// The longest wait between attempts, `retry-after` included.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// The token sent must stay valid at least this long.
const TOKEN_MIN_VALID_SECS: u32 = 60;
/// How long a read of the usage endpoint may take.
const USAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the daemon tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub event_type: String,
    pub data_json: String,
    /// On the first event only.
    pub response: Option<ResponseInfo>,
    /// On the terminal event only.
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseInfo {
    pub http_status: u16,
    /// Rate-limit headers, lower-cased names.
    pub rate_limits: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Codex(#[from] CodexError),
}

/// Whether a header is one clients should see (docs/PROTOCOL.md §3).
pub fn is_rate_limit_header(name: &str) -> bool {
    name.starts_with("x-codex-")
        || name == "retry-after"
        || name == "retry-after-ms"
        || (name.starts_with("x-") && (name.contains("-primary-") || name.contains("-secondary-")))
}

/// The one field read from every event; the rest is decoded only for the
/// few events that need it (terminal and failed ones).
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Loose<Cow<'a, str>>>,
}

/// The type of an event (its JSON `payload`): `Some("")` when it has none,
/// `None` when the payload is not a JSON object.
pub fn event_type(payload: &str) -> Option<String> {
    let head: Head<'_> = crate::wire::object(payload.as_bytes())?;
    Some(
        head.kind
            .and_then(Loose::fit)
            .map(Cow::into_owned)
            .unwrap_or_default(),
    )
}

/// A terminal event, as far as its usage goes.
#[derive(Deserialize)]
struct TerminalEvent {
    response: Option<Loose<TerminalResponse>>,
}

#[derive(Deserialize)]
struct TerminalResponse {
    usage: Option<Loose<UsageBody>>,
}

#[derive(Deserialize)]
struct UsageBody {
    input_tokens: Option<Loose<u64>>,
    output_tokens: Option<Loose<u64>>,
    input_tokens_details: Option<Loose<UsageDetails>>,
}

#[derive(Deserialize)]
struct UsageDetails {
    cached_tokens: Option<Loose<u64>>,
}

/// Usage of a terminal event (its JSON `payload`): `response.usage`.
pub fn usage_of(payload: &str) -> Option<Usage> {
    let event: TerminalEvent = crate::wire::object(payload.as_bytes())?;
    let u = event.response?.fit()?.usage?.fit()?;
    let n = |v: Option<Loose<u64>>| v.and_then(Loose::fit).unwrap_or(0);
    Some(Usage {
        input_tokens: n(u.input_tokens),
        output_tokens: n(u.output_tokens),
        cached_input_tokens: n(u
            .input_tokens_details
            .and_then(Loose::fit)
            .and_then(|d| d.cached_tokens)),
    })
}

/// Whether an event type ends a response successfully.
pub fn is_terminal(event_type: &str) -> bool {
    matches!(
        event_type,
        "response.completed" | "response.done" | "response.incomplete"
    )
}

/// The Codex backend client.
#[derive(Debug, Clone)]
pub struct Codex {
    http: reqwest::Client,
    url: url::Url,
    usage_url: url::Url,
    originator: String,
    idle: Duration,
    /// The limits learnt per account, from the usage endpoint and the
    /// headers of every relayed response.
    book: Arc<UsageBook>,
}

impl Codex {
    /// `base` is e.g. `https://chatgpt.com/backend-api/`, as
    /// [`crate::base_url::as_base`] returns it (its path ends in `/`, so
    /// `codex/responses` goes below it); `idle` is how long a stream may go
    /// without an event.
    pub fn new(
        base: &url::Url,
        originator: &str,
        idle: Duration,
        book: Arc<UsageBook>,
    ) -> Result<Codex, crate::upstream::ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(crate::upstream::ClientError::Http)?;
        Ok(Codex {
            http,
            url: crate::upstream::endpoint(base, "codex/responses")?,
            usage_url: crate::upstream::endpoint(base, "wham/usage")?,
            originator: originator.to_owned(),
            idle,
            book,
        })
    }

    /// The limits of the account the broker serves: the last read of the
    /// usage endpoint while it is under a minute old (unless `fresh`), else
    /// a new read. Returns the account id with its report.
    pub async fn usage(
        &self,
        broker: &Arc<Broker>,
        fresh: bool,
    ) -> Result<(String, Report), RelayError> {
        let grant = broker
            .get_token(DEFAULT_PROVIDER, TOKEN_MIN_VALID_SECS)
            .await?;
        let now_s = broker.now_ms() / 1000;
        if !fresh && let Some(report) = self.book.fresh(&grant.account_id, now_s) {
            return Ok((grant.account_id, report));
        }
        let mut req = self
            .http
            .get(self.usage_url.clone())
            .bearer_auth(grant.access.expose())
            .timeout(USAGE_TIMEOUT);
        for (name, value) in request::identity_headers(&grant.account_id, &self.originator) {
            req = req.header(name, value);
        }
        let network = |e: reqwest::Error| CodexError::Network {
            message: describe(&e),
            events: 0,
        };
        let resp = req.send().await.map_err(network)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(network)?;
        if !(200..300).contains(&status) {
            return Err(failure::from_http(status, &bytes, None, now_s).into());
        }
        let Some(report) = usage::from_endpoint(&bytes, now_s) else {
            return Err(CodexError::Upstream {
                status,
                message: "the usage endpoint's answer is not the JSON object it should be".into(),
            }
            .into());
        };
        self.book.store(&grant.account_id, report.clone());
        Ok((grant.account_id, report))
    }

    /// Reads the usage endpoint again for the account `broker` serves, in
    /// the background, after a limit answer: its windows as they are now.
    /// A failure only leaves the limit answer's own reset in the book.
    fn read_usage_after_limit(&self, broker: &Arc<Broker>) {
        let (codex, broker) = (self.clone(), broker.clone());
        tokio::spawn(async move {
            if let Err(e) = codex.usage(&broker, true).await {
                tracing::debug!(error = %e, "cannot read the usage after a limit answer");
            }
        });
    }

    /// Folds the limits a response's headers carry into the book.
    fn note_limits(&self, account: &str, headers: &reqwest::header::HeaderMap, now_s: i64) {
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        self.book
            .fold_headers(account, usage::from_headers(get), now_s);
    }

    /// Runs one completion, sending events (then at most one error) on `tx`.
    pub async fn relay(
        &self,
        accounts: Arc<Accounts>,
        prepared: Prepared,
        tx: mpsc::Sender<Result<Relayed, RelayError>>,
    ) {
        if let Err(e) = self.run(&accounts, &prepared, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn run(
        &self,
        accounts: &Accounts,
        prepared: &Prepared,
        tx: &mpsc::Sender<Result<Relayed, RelayError>>,
    ) -> Result<(), RelayError> {
        let mut refreshed = false;
        let mut moved = false;
        let mut attempt = 0;
        let mut broker = accounts.choose(&prepared.session_id)?;
        let (response, account) = loop {
            attempt += 1;
            let grant = broker
                .get_token(DEFAULT_PROVIDER, TOKEN_MIN_VALID_SECS)
                .await?;
            let mut req = self
                .http
                .post(self.url.clone())
                .bearer_auth(grant.access.expose())
                .body(prepared.body.clone());
            for (name, value) in
                request::headers(&grant.account_id, &self.originator, &prepared.session_id)
            {
                req = req.header(name, value);
            }
            let sent = tokio::select! {
                r = req.send() => r,
                () = tx.closed() => return Ok(()),
            };
            if let Ok(resp) = &sent {
                self.note_limits(&grant.account_id, resp.headers(), broker.now_ms() / 1000);
            }
            let wait = match sent {
                Ok(resp) if resp.status().is_success() => break (resp, grant.account_id),
                Ok(resp) if resp.status().as_u16() == 401 && !refreshed => {
                    // Revoked before its expiry: one forced refresh, one retry.
                    tracing::info!("the Codex backend answered 401; refreshing once");
                    refreshed = true;
                    broker.refresh_rejected(grant.generation).await?;
                    attempt -= 1;
                    continue;
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = retry_after(resp.headers());
                    let bytes = resp.bytes().await.unwrap_or_default();
                    if status == 401 {
                        let message = failure::from_http(status, &bytes, None, 0).to_string();
                        return Err(CodexError::Unauthorized { message }.into());
                    }
                    let now_s = broker.now_ms() / 1000;
                    let err =
                        failure::from_http(status, &bytes, retry_after.map(|d| d.as_secs()), now_s);
                    if let CodexError::UsageLimit {
                        resets_at,
                        retry_after_secs,
                        ..
                    } = &err
                    {
                        let after = retry_after_secs.and_then(|s| i64::try_from(s).ok());
                        let reset = resets_at.or(after.map(|s| now_s + s));
                        accounts.note_limit(&grant.account_id, reset);
                        self.read_usage_after_limit(&broker);
                        // Nothing was relayed yet: the same request goes to
                        // the next account with room, once; the client
                        // never sees this limit.
                        match accounts.choose(&prepared.session_id) {
                            Ok(next) if !moved && !Arc::ptr_eq(&next, &broker) => {
                                tracing::info!(from = %grant.account_id, "usage limit before the first event; sending to the next account");
                                moved = true;
                                broker = next;
                                attempt -= 1;
                                continue;
                            }
                            _ => return Err(err.into()),
                        }
                    }
                    if status < 500 || attempt >= ATTEMPTS {
                        return Err(err.into());
                    }
                    tracing::warn!(
                        status,
                        attempt,
                        "Codex backend error before the first event; retrying"
                    );
                    retry_after.unwrap_or_else(|| backoff(attempt))
                }
                Err(e) => {
                    if attempt >= ATTEMPTS {
                        return Err(CodexError::Network {
                            message: describe(&e),
                            events: 0,
                        }
                        .into());
                    }
                    tracing::warn!(attempt, "cannot reach the Codex backend; retrying");
                    backoff(attempt)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait.min(MAX_RETRY_WAIT)) => {}
                () = tx.closed() => return Ok(()),
            }
        };
        self.stream(response, &broker, &account, tx).await
    }

    /// Relays the events of a 2xx response of `account`'s, folding the
    /// limits a stream reports into the book. Never retries.
    async fn stream(
        &self,
        mut response: reqwest::Response,
        broker: &Broker,
        account: &str,
        tx: &mpsc::Sender<Result<Relayed, RelayError>>,
    ) -> Result<(), RelayError> {
        let mut info = Some(ResponseInfo {
            http_status: response.status().as_u16(),
            rate_limits: response
                .headers()
                .iter()
                .filter(|(n, _)| is_rate_limit_header(n.as_str()))
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
        });
        let mut parser = SseParser::new();
        let mut events: u64 = 0;
        let mut last_event = tokio::time::Instant::now();
        loop {
            let deadline = last_event + self.idle;
            let chunk = tokio::select! {
                c = tokio::time::timeout_at(deadline, response.chunk()) => match c {
                    Err(_) => return Err(CodexError::Idle { secs: self.idle.as_secs() }.into()),
                    Ok(Err(e)) => return Err(CodexError::Network { message: describe(&e), events }.into()),
                    Ok(Ok(c)) => c,
                },
                () = tx.closed() => return Ok(()),
            };
            let payloads = match &chunk {
                Some(bytes) => parser.push(bytes),
                None => parser.finish(),
            }
            .map_err(|e| CodexError::Network {
                message: e.to_string(),
                events,
            })?;
            for payload in payloads {
                last_event = tokio::time::Instant::now();
                let Some(event_type) = event_type(&payload) else {
                    tracing::debug!("skipped an SSE event that is not a JSON object");
                    continue;
                };
                if event_type == RATE_LIMITS_EVENT {
                    let windows = usage::from_rate_limits_event(&payload);
                    self.book
                        .fold_headers(account, windows, broker.now_ms() / 1000);
                }
                let terminal = is_terminal(&event_type);
                let failed = failure::from_event(&event_type, &payload);
                let relayed = Relayed {
                    usage: if terminal { usage_of(&payload) } else { None },
                    response: info.take(),
                    event_type,
                    data_json: payload,
                };
                events += 1;
                // Bounded: waits while the client is slow.
                if tx.send(Ok(relayed)).await.is_err() {
                    return Ok(());
                }
                if let Some(err) = failed {
                    return Err(err.into());
                }
                if terminal {
                    return Ok(());
                }
            }
            if chunk.is_none() {
                return Err(CodexError::Incomplete { events }.into());
            }
        }
    }
}

/// The stream event that carries the account's rate-limit windows.
const RATE_LIMITS_EVENT: &str = "codex.rate_limits";

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    crate::oauth::retry_after_ms(get("retry-after"), get("retry-after-ms"))
        .map(Duration::from_millis)
}

/// The pause before retry `attempt` (1 for the first): 500 ms doubling to
/// 4 s.
fn backoff(attempt: u32) -> Duration {
    Backoff::nth(Duration::from_millis(250), Duration::from_secs(4), attempt)
}

fn describe(e: &reqwest::Error) -> String {
    crate::causes::line(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rate_limit_headers_are_recognised() {
        for h in [
            "x-codex-primary-used-percent",
            "x-codex-credits-balance",
            "retry-after",
            "retry-after-ms",
            "x-foo-primary-used-percent",
            "x-foo-secondary-reset-at",
        ] {
            assert!(is_rate_limit_header(h), "{h}");
        }
        for h in ["content-type", "x-request-id", "authorization"] {
            assert!(!is_rate_limit_header(h), "{h}");
        }
    }

    #[test]
    fn usage_comes_from_the_terminal_event() {
        let data = json!({"type":"response.completed","response":{"usage":{"input_tokens":10,"output_tokens":3,"input_tokens_details":{"cached_tokens":4}}}});
        assert_eq!(
            usage_of(&data.to_string()),
            Some(Usage {
                input_tokens: 10,
                output_tokens: 3,
                cached_input_tokens: 4
            })
        );
        // A usage of an odd shape counts as zeros, not as a broken event.
        let odd = r#"{"type":"response.completed","response":{"usage":{"input_tokens":"10","output_tokens":2}}}"#;
        assert_eq!(
            usage_of(odd).map(|u| (u.input_tokens, u.output_tokens)),
            Some((0, 2))
        );
        assert_eq!(usage_of(r#"{"type":"response.completed"}"#), None);
    }

    #[test]
    fn the_event_type_is_read_without_decoding_the_rest() {
        assert_eq!(
            event_type(r#"{"type":"response.output_text.delta","delta":"h\u00e9"}"#).as_deref(),
            Some("response.output_text.delta")
        );
        assert_eq!(
            event_type(r#"{"type":"resp\u006fnse.done"}"#).as_deref(),
            Some("response.done"),
            "an escaped type is decoded"
        );
        assert_eq!(event_type(r#"{"delta":"x"}"#).as_deref(), Some(""));
        assert_eq!(event_type(r#"{"type":7}"#).as_deref(), Some(""));
        assert_eq!(event_type("[DONE]"), None);
        assert_eq!(event_type(r#"{"type":"x""#), None, "truncated JSON");
        assert!(
            is_terminal("response.completed")
                && is_terminal("response.done")
                && is_terminal("response.incomplete")
        );
        assert!(!is_terminal("response.output_text.delta"));
    }
}
