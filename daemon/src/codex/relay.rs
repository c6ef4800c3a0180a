//! Relaying a completion: send the request with the broker's token over the
//! session's WebSocket (or SSE), then pass every event on the moment it
//! arrives.
//!
//! * The events go to the client in batches over a bounded channel
//!   ([`super::handover`]), so a slow client slows the upstream read and
//!   memory stays bounded; a client that goes away drops the relay, and
//!   the upstream request is dropped (aborted) with it.
//! * Before the first event, a 5xx or network error is retried with capped
//!   backoff that honours `retry-after`, and a 401 causes one forced refresh
//!   and one retry. After the first event nothing is ever retried.

use std::sync::Arc;
use std::time::Duration;

pub use super::events::ResponseInfo;
use super::events::{RATE_LIMITS_EVENT, is_terminal, usage_of};
use super::failure::{self, CodexError};
use super::handover::{Handover, Ready, hand_over, hand_over_then};
pub use super::handover::{RelayError, Relayed};
use super::request::{self, Prepared};
use super::transport::{self, Answer, Events, Opening, Refusal, WsAsk};
use super::websocket::{self, Pool};
use crate::accounts::Accounts;
use crate::backoff::Backoff;
use crate::broker::{Broker, DEFAULT_PROVIDER};
use crate::usage::{self, Report, UsageBook};

/// Attempts before the first event (5xx and network errors).
const ATTEMPTS: u32 = 3;
/// The longest wait between attempts, `retry-after` included.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// The token sent must stay valid at least this long.
const TOKEN_MIN_VALID_SECS: u32 = 60;
/// How long a read of the usage endpoint may take.
const USAGE_TIMEOUT: Duration = Duration::from_secs(15);

use crate::config::CodexTransport as Transport;

/// The Codex backend client.
#[derive(Debug, Clone)]
pub struct Codex {
    http: reqwest::Client,
    url: url::Url,
    ws_url: url::Url,
    transport: Transport,
    /// The sessions' WebSockets and SSE fallbacks.
    pool: Arc<Pool>,
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
        let url = crate::upstream::endpoint(base, "codex/responses")?;
        Ok(Codex {
            http,
            ws_url: websocket::url_of(&url),
            url,
            transport: Transport::default(),
            pool: Arc::default(),
            usage_url: crate::upstream::endpoint(base, "wham/usage")?,
            originator: originator.to_owned(),
            idle,
            book,
        })
    }

    /// The same client over `transport`.
    pub fn with_transport(mut self, transport: Transport) -> Codex {
        self.transport = transport;
        self
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
    fn note_limits(&self, account: &str, info: &ResponseInfo, now_s: i64) {
        let get = |n: &str| {
            info.rate_limits
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        self.book
            .fold_headers(account, usage::from_headers(get), now_s);
    }

    /// Runs one completion, sending its events in batches (then at most
    /// one error) on `tx`.
    pub async fn relay(&self, accounts: Arc<Accounts>, prepared: Prepared, tx: Handover) {
        if let Err(e) = self.run(&accounts, &prepared, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    /// Opens the response on the session's transport: its WebSocket, or
    /// SSE once a WebSocket of the session failed before its first event.
    async fn open(
        &self,
        grant: &crate::broker::Grant,
        prepared: &Prepared,
    ) -> Result<(ResponseInfo, Events), Refusal> {
        let session = prepared.session_id.as_str();
        if self.transport == Transport::Auto && !self.pool.fell_back(session) {
            let ask = WsAsk {
                pool: &self.pool,
                url: &self.ws_url,
                token: grant.access.expose(),
                headers: request::websocket_headers(&grant.account_id, &self.originator, session),
                account: &grant.account_id,
                session,
                body: &prepared.body,
                json: &prepared.json,
                idle: self.idle,
            };
            match transport::open_ws(ask).await {
                Ok(opened) => return Ok(opened),
                Err(Opening::Refusal(r)) => return Err(r),
                Err(Opening::Fallback(why)) => {
                    tracing::info!(%why, "the WebSocket failed before the first event; this session goes on over SSE");
                    self.pool.fall_back(session);
                }
            }
        }
        self.open_sse(grant, prepared).await
    }

    async fn open_sse(
        &self,
        grant: &crate::broker::Grant,
        prepared: &Prepared,
    ) -> Result<(ResponseInfo, Events), Refusal> {
        let mut req = self
            .http
            .post(self.url.clone())
            .bearer_auth(grant.access.expose())
            .body(request::compress(&prepared.json));
        for (name, value) in
            request::headers(&grant.account_id, &self.originator, &prepared.session_id)
        {
            req = req.header(name, value);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Refusal::Network(describe(&e)))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok((ResponseInfo::of(status, resp.headers()), Events::sse(resp)));
        }
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default().to_vec();
        Err(Refusal::Answer(Answer {
            status,
            headers,
            body,
        }))
    }

    /// What an answer before the first event means, with its limits noted:
    /// the limit itself first, so that one the headers already show is
    /// still noted (and said) once.
    fn judge(
        &self,
        accounts: &Accounts,
        broker: &Arc<Broker>,
        account: &str,
        answer: &Answer,
        now_s: i64,
    ) -> CodexError {
        let Answer {
            status,
            headers,
            body,
        } = answer;
        let status = *status;
        let err = if status == 401 {
            let message = failure::from_http(status, body, None, 0).to_string();
            CodexError::Unauthorized { message }
        } else {
            let after = retry_after(headers).map(|d| d.as_secs());
            failure::from_http(status, body, after, now_s)
        };
        if let CodexError::UsageLimit {
            resets_at,
            retry_after_secs,
            ..
        } = &err
        {
            let after = retry_after_secs.and_then(|s| i64::try_from(s).ok());
            accounts.note_limit(account, resets_at.or(after.map(|s| now_s + s)));
            self.read_usage_after_limit(broker);
        }
        self.note_limits(account, &ResponseInfo::of(status, headers), now_s);
        err
    }

    async fn run(
        &self,
        accounts: &Accounts,
        prepared: &Prepared,
        tx: &Handover,
    ) -> Result<(), RelayError> {
        let mut refreshed = false;
        let mut moved = false;
        let mut attempt = 0;
        let mut broker = accounts.choose(&prepared.session_id)?;
        loop {
            attempt += 1;
            let grant = broker
                .get_token(DEFAULT_PROVIDER, TOKEN_MIN_VALID_SECS)
                .await?;
            let opened = tokio::select! {
                r = self.open(&grant, prepared) => r,
                () = tx.closed() => return Ok(()),
            };
            let wait = match opened {
                Ok((info, events)) => {
                    self.note_limits(&grant.account_id, &info, broker.now_ms() / 1000);
                    return self
                        .stream(info, events, &broker, &grant.account_id, tx)
                        .await;
                }
                Err(Refusal::Answer(Answer { status: 401, .. })) if !refreshed => {
                    // Revoked before its expiry: one forced refresh, one retry.
                    tracing::info!("the Codex backend answered 401; refreshing once");
                    refreshed = true;
                    broker.refresh_rejected(grant.generation).await?;
                    attempt -= 1;
                    continue;
                }
                Err(Refusal::Answer(answer)) => {
                    let now_s = broker.now_ms() / 1000;
                    let err = self.judge(accounts, &broker, &grant.account_id, &answer, now_s);
                    let status = answer.status;
                    if let CodexError::UsageLimit { .. } = &err {
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
                    retry_after(&answer.headers).unwrap_or_else(|| backoff(attempt))
                }
                Err(Refusal::Network(message)) => {
                    if attempt >= ATTEMPTS {
                        return Err(CodexError::Network { message, events: 0 }.into());
                    }
                    tracing::warn!(attempt, "cannot reach the Codex backend; retrying");
                    backoff(attempt)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait.min(MAX_RETRY_WAIT)) => {}
                () = tx.closed() => return Ok(()),
            }
        }
    }

    /// Relays the events of an open response of `account`'s, folding the
    /// limits a stream reports into the book. Never retries.
    ///
    /// Events that are already here when one arrives go to the client
    /// together, as one batch ([`Ready`]): a fast stream then wakes the
    /// client once per read, not once per event. Waiting happens only when
    /// none is ready, so batching never delays an event.
    async fn stream(
        &self,
        info: ResponseInfo,
        mut events: Events,
        broker: &Broker,
        account: &str,
        tx: &Handover,
    ) -> Result<(), RelayError> {
        let mut info = Some(info);
        let mut relayed: u64 = 0;
        let mut batch = Ready::default();
        loop {
            let next = if batch.is_empty() {
                tokio::select! {
                    n = tokio::time::timeout(self.idle, events.next(relayed)) => n
                        .unwrap_or(Err(CodexError::Idle { secs: self.idle.as_secs() })),
                    () = tx.closed() => return Ok(()),
                }
            } else {
                let ready = match batch.full() {
                    false => events.already_here(relayed).await,
                    true => None,
                };
                match ready {
                    Some(n) => n,
                    None => {
                        if !hand_over(tx, &mut batch).await {
                            return Ok(());
                        }
                        continue;
                    }
                }
            };
            let next = match next {
                Ok(n) => n,
                Err(e) => return hand_over_then(tx, &mut batch, Err(e.into())).await,
            };
            let Some(transport::Event { kind, payload }) = next else {
                let incomplete = CodexError::Incomplete { events: relayed };
                return hand_over_then(tx, &mut batch, Err(incomplete.into())).await;
            };
            let Some(event_type) = kind else {
                tracing::debug!("skipped an event that is not a JSON object");
                continue;
            };
            if event_type == RATE_LIMITS_EVENT {
                let windows = usage::from_rate_limits_event(&payload);
                self.book
                    .fold_headers(account, windows, broker.now_ms() / 1000);
            }
            let terminal = is_terminal(&event_type);
            let failed = failure::from_event(&event_type, &payload);
            if !batch.fits(payload.len()) && !hand_over(tx, &mut batch).await {
                return Ok(());
            }
            batch.push(Relayed {
                usage: if terminal { usage_of(&payload) } else { None },
                response: info.take(),
                event_type,
                data_json: payload,
            });
            relayed += 1;
            if let Some(err) = failed {
                return hand_over_then(tx, &mut batch, Err(err.into())).await;
            }
            if terminal {
                let done = hand_over_then(tx, &mut batch, Ok(())).await;
                events.finish();
                return done;
            }
        }
    }
}

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
