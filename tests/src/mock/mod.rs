//! A faithful stand-in for OpenAI's issuer (`auth.openai.com`) and Codex
//! backend, on loopback, for tests and for trying piauthd without an account.
//!
//! What it models (docs/PROTOCOL.md §1):
//! * `POST /oauth/token` with `grant_type=refresh_token`, form-encoded (as pi
//!   sends it) or JSON (as Codex CLI sends it). Refresh tokens are
//!   **single-use and rotate**: each refresh spends the old one and issues a
//!   new one. Presenting a spent token answers 401 `refresh_token_reused`
//!   and revokes the whole token family, as the real issuer does.
//! * Access tokens are real HS256 JWTs signed with a test key, carrying the
//!   ChatGPT account, plan and e-mail claims; `expires_in` is configurable so
//!   tests run many expiry cycles in seconds.
//! * Login (docs/PROTOCOL.md §1): `GET /oauth/authorize` approves at once (or
//!   denies with `access_denied`) by redirecting to the `redirect_uri`; the
//!   authorization-code grant checks the PKCE verifier against the
//!   challenge and the `redirect_uri` against the one authorized; the
//!   device-code endpoints answer pending, `slow_down`, then approve.
//! * The Codex backend (`codex`): `POST /backend-api/codex/responses` over
//!   SSE, taking the bodies of piauthd, pi 0.73.1 and pi 1.6.0 (plain or
//!   `Content-Encoding: zstd`), and refusing pi 1.6.0's WebSocket upgrade of
//!   the same URL so that pi falls back to SSE.
//! * Faults, queued per request: an HTTP status, a delay, a connection reset
//!   (before or after the issuer acted), a terminal error code, or a
//!   gateway's HTML error page (before or after the issuer rotated).
//! * Counters (refreshes, reuse attempts, revocations, requests, zstd
//!   bodies, refused upgrades, ...) for tests, also served as JSON at
//!   `GET /_mock/stats`.

mod codex;
mod issuer;
mod jwt;
mod login;
mod reply;
mod server;
mod usage;
mod websocket;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use usage::{AccountUsage, Charged, Window};

pub use codex::{SeenRequest, decode_zstd};
pub use jwt::TEST_SIGNING_KEY;
pub use reply::{ReplyRequest, ReplyShape, ResponsesFault, ToolCall};
pub use websocket::WebsocketMode;

/// How many responses requests [`MockState::responses_seen`] remembers.
pub const SEEN_KEPT: usize = 256;

/// The client id piauthd and pi use (docs/PROTOCOL.md §1).
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// One injected fault, consumed by the next token request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    /// Answer with this HTTP status and a JSON error body; the token is not
    /// spent.
    Status { code: u16 },
    /// Wait this long, then answer normally.
    Delay { ms: u64 },
    /// Drop the connection (TCP reset) before acting: the token is not spent.
    ResetBefore,
    /// Rotate the token, then drop the connection: the client never learns
    /// the new refresh token, which is what makes resending dangerous.
    ResetAfter,
    /// Answer 400 `invalid_grant`.
    InvalidGrant,
    /// Answer 401 with this error code (e.g. `refresh_token_expired`).
    Terminal { code: String },
    /// Answer this status (502, 504, 52x...) with an HTML page, as a
    /// gateway in front of the issuer does, without reaching the issuer:
    /// the token is not spent, but the client cannot know that.
    Gateway { code: u16 },
    /// Rotate the token, then answer this status with a gateway's HTML
    /// page: the issuer spent the token and the client never learns the
    /// new one (an origin that timed out behind its gateway).
    GatewayAfterRotate { code: u16 },
}

/// What the mock is configured to do.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// `expires_in` of every issued access token, in seconds.
    pub expires_in: u64,
    /// Added to every token request (after faults).
    pub token_delay: Duration,
    /// Encode JWT payloads in standard base64 so pi 0.73.1's `atob` can read
    /// them (see `jwt::sign`).
    pub atob_safe_jwt: bool,
    /// Who logs in through `/oauth/authorize` and the device flow.
    pub login_identity: Identity,
    /// Whether `/oauth/authorize` approves (else `access_denied`).
    pub approve: bool,
    /// Device polls answered "pending" before approval.
    pub device_pending_polls: u32,
    /// The device poll (0-based) answered `slow_down`, if any.
    pub device_slow_down_at: Option<u32>,
    /// Whether the device-code endpoints exist (else 404).
    pub device_enabled: bool,
    /// Leave the ChatGPT account id out of issued tokens (a broken login).
    pub omit_account_id: bool,
    /// How many percent of the 5-hour window each response uses (the
    /// weekly window grows by the same work over its length).
    pub usage_step: f64,
    /// Whether the responses URL takes WebSocket upgrades.
    pub websocket: WebsocketMode,
    /// A WebSocket this old answers its next turn with
    /// `websocket_connection_limit_reached` and closes (the real backend: 60
    /// minutes).
    pub websocket_max_age: Duration,
}

/// The account a login signs in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub email: String,
    pub plan: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            account_id: "acc-login".into(),
            email: "login@example.com".into(),
            plan: "plus".into(),
        }
    }
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            expires_in: 3600,
            token_delay: Duration::ZERO,
            atob_safe_jwt: false,
            login_identity: Identity::default(),
            approve: true,
            device_pending_polls: 2,
            device_slow_down_at: None,
            device_enabled: true,
            usage_step: 1.0,
            omit_account_id: false,
            websocket: WebsocketMode::default(),
            websocket_max_age: Duration::from_secs(60 * 60),
        }
    }
}

/// Counters tests read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Successful refreshes (a token rotated).
    pub refreshes: u64,
    /// Presentations of an already-spent refresh token.
    pub reuse_attempts: u64,
    /// Token families revoked (by reuse).
    pub revocations: u64,
    /// Every request to `/oauth/token`.
    pub token_requests: u64,
    /// Requests to `/oauth/token` the issuer has finished with (answered,
    /// or done with after its client went away): once this equals
    /// `token_requests`, no rotation is still under way.
    pub token_answers: u64,
    /// Refreshes refused for a revoked family or unknown token.
    pub rejected: u64,
    /// Connections currently open.
    pub open_connections: u64,
    /// Authorization codes exchanged successfully.
    pub exchanges: u64,
    /// Code exchanges refused (wrong verifier, redirect, reused code).
    pub exchanges_refused: u64,
    /// Device-login polls.
    pub device_polls: u64,
    /// Requests to `/backend-api/codex/responses`.
    pub responses_requests: u64,
    /// Response streams still being sent.
    pub open_streams: u64,
    /// SSE events sent in all.
    pub events_sent: u64,
    /// Responses requests whose body came `Content-Encoding: zstd` and
    /// decoded (pi 1.6.0 on Node >= 22.15 compresses every SSE request).
    pub zstd_bodies: u64,
    /// Responses requests whose first `input` item has role `developer` (pi
    /// 1.6.0 puts the system prompt there instead of `instructions`).
    pub developer_first: u64,
    /// Responses requests carrying `max_output_tokens` (pi 1.6.0 sends it).
    pub max_output_tokens_seen: u64,
    /// WebSocket upgrades of the responses URL refused (pi 1.6.0 tries one
    /// first, then falls back to SSE for the session).
    pub websocket_upgrades_refused: u64,
    /// WebSocket connections opened.
    pub websocket_connections: u64,
    /// WebSocket connections open now.
    pub websocket_open: u64,
    /// Turns sent over WebSockets (also counted in `responses_requests`).
    pub websocket_requests: u64,
    /// WebSocket turns that continued the last response.
    pub websocket_continued: u64,
    /// Requests to `/backend-api/wham/usage`.
    pub usage_requests: u64,
}

/// A login the mock has issued: what a test writes into `auth.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: String,
    pub expires_in: u64,
    pub account_id: String,
    /// When the mock issued these tokens, ms since the epoch.
    pub issued_at_ms: i64,
}

impl TokenSet {
    /// The issuer's 200 answer carrying these tokens, as the real one
    /// answers a refresh or a code exchange.
    pub fn reply(&self) -> axum::response::Response {
        use axum::response::IntoResponse;
        axum::Json(serde_json::json!({
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
            "scope": "openid profile email offline_access",
        }))
        .into_response()
    }
}

#[derive(Debug)]
struct Family {
    account_id: String,
    email: String,
    plan: String,
    revoked: bool,
}

#[derive(Debug, Default)]
struct Ledger {
    families: Vec<Family>,
    /// Refresh token -> (family index, spent).
    refresh_tokens: HashMap<String, (usize, bool)>,
    /// Every access token ever issued: (family, issued at ms, expires_in s).
    access_tokens: HashMap<String, (usize, i64, u64)>,
    faults: VecDeque<Fault>,
    /// Authorization code -> what it was issued for.
    codes: HashMap<String, login::PendingCode>,
    /// Device auth id -> its state.
    devices: HashMap<String, login::DeviceAuth>,
    responses_faults: VecDeque<reply::ResponsesFault>,
    reply: reply::ReplyShape,
    /// What the last [`SEEN_KEPT`] responses requests carried, oldest first.
    seen: VecDeque<codex::SeenRequest>,
}

/// Shared state of a running mock.
#[derive(Debug)]
pub struct MockState {
    config: Mutex<MockConfig>,
    ledger: Mutex<Ledger>,
    refreshes: AtomicU64,
    reuse_attempts: AtomicU64,
    revocations: AtomicU64,
    token_requests: AtomicU64,
    pub(crate) token_answers: AtomicU64,
    rejected: AtomicU64,
    open_connections: AtomicU64,
    exchanges: AtomicU64,
    exchanges_refused: AtomicU64,
    device_polls: AtomicU64,
    responses_requests: AtomicU64,
    open_streams: AtomicU64,
    events_sent: AtomicU64,
    zstd_bodies: AtomicU64,
    developer_first: AtomicU64,
    max_output_tokens_seen: AtomicU64,
    websocket_upgrades_refused: AtomicU64,
    websocket_connections: AtomicU64,
    websocket_open: AtomicU64,
    websocket_requests: AtomicU64,
    websocket_continued: AtomicU64,
    serial: AtomicU64,
    usage: Mutex<usage::UsageBook>,
    usage_requests: AtomicU64,
}

impl MockState {
    fn new(config: MockConfig) -> MockState {
        MockState {
            config: Mutex::new(config),
            ledger: Mutex::default(),
            refreshes: AtomicU64::new(0),
            reuse_attempts: AtomicU64::new(0),
            revocations: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            token_answers: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            exchanges: AtomicU64::new(0),
            exchanges_refused: AtomicU64::new(0),
            device_polls: AtomicU64::new(0),
            responses_requests: AtomicU64::new(0),
            open_streams: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            zstd_bodies: AtomicU64::new(0),
            developer_first: AtomicU64::new(0),
            max_output_tokens_seen: AtomicU64::new(0),
            websocket_upgrades_refused: AtomicU64::new(0),
            websocket_connections: AtomicU64::new(0),
            websocket_open: AtomicU64::new(0),
            websocket_requests: AtomicU64::new(0),
            websocket_continued: AtomicU64::new(0),
            serial: AtomicU64::new(0),
            usage: Mutex::default(),
            usage_requests: AtomicU64::new(0),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn config(&self) -> MockConfig {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            refreshes: self.refreshes.load(Ordering::SeqCst),
            reuse_attempts: self.reuse_attempts.load(Ordering::SeqCst),
            revocations: self.revocations.load(Ordering::SeqCst),
            token_requests: self.token_requests.load(Ordering::SeqCst),
            token_answers: self.token_answers.load(Ordering::SeqCst),
            rejected: self.rejected.load(Ordering::SeqCst),
            open_connections: self.open_connections.load(Ordering::SeqCst),
            exchanges: self.exchanges.load(Ordering::SeqCst),
            exchanges_refused: self.exchanges_refused.load(Ordering::SeqCst),
            device_polls: self.device_polls.load(Ordering::SeqCst),
            responses_requests: self.responses_requests.load(Ordering::SeqCst),
            open_streams: self.open_streams.load(Ordering::SeqCst),
            events_sent: self.events_sent.load(Ordering::SeqCst),
            zstd_bodies: self.zstd_bodies.load(Ordering::SeqCst),
            developer_first: self.developer_first.load(Ordering::SeqCst),
            max_output_tokens_seen: self.max_output_tokens_seen.load(Ordering::SeqCst),
            websocket_upgrades_refused: self.websocket_upgrades_refused.load(Ordering::SeqCst),
            websocket_connections: self.websocket_connections.load(Ordering::SeqCst),
            websocket_open: self.websocket_open.load(Ordering::SeqCst),
            websocket_requests: self.websocket_requests.load(Ordering::SeqCst),
            websocket_continued: self.websocket_continued.load(Ordering::SeqCst),
            usage_requests: self.usage_requests.load(Ordering::SeqCst),
        }
    }

    /// Queues faults for the next token requests, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.ledger().faults.extend(faults);
    }

    pub fn set_expires_in(&self, secs: u64) {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expires_in = secs;
    }

    /// Changes the configuration (login identity, approval, device timing).
    pub fn configure(&self, change: impl FnOnce(&mut MockConfig)) {
        change(&mut self.config.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn set_token_delay(&self, delay: Duration) {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .token_delay = delay;
    }

    /// Creates a logged-in family, as a completed login would.
    pub fn seed_login(&self, account_id: &str, email: &str, plan: &str) -> TokenSet {
        let mut ledger = self.ledger();
        self.new_family(&mut ledger, account_id, email, plan)
    }

    fn new_family(
        &self,
        ledger: &mut Ledger,
        account_id: &str,
        email: &str,
        plan: &str,
    ) -> TokenSet {
        ledger.families.push(Family {
            account_id: account_id.into(),
            email: email.into(),
            plan: plan.into(),
            revoked: false,
        });
        let family = ledger.families.len() - 1;
        self.issue(ledger, family)
    }

    /// Every access token issued so far (for log-leak checks).
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.ledger().access_tokens.keys().cloned().collect()
    }

    /// Every refresh token issued so far (for log-leak checks).
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.ledger().refresh_tokens.keys().cloned().collect()
    }

    /// Spends `refresh` as another client's refresh would, returning the
    /// new tokens; `None` if it is unknown or already spent.
    pub fn spend(&self, refresh: &str) -> Option<TokenSet> {
        let mut ledger = self.ledger();
        let (family, spent) = *ledger.refresh_tokens.get(refresh)?;
        if spent {
            return None;
        }
        ledger
            .refresh_tokens
            .insert(refresh.to_owned(), (family, true));
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Some(self.issue(&mut ledger, family))
    }

    /// Queues misbehaviours for the next responses requests, in order.
    pub fn push_responses_faults(&self, faults: impl IntoIterator<Item = reply::ResponsesFault>) {
        self.ledger().responses_faults.extend(faults);
    }

    /// Remembers what a responses request carried, and counts what tests
    /// assert on (see [`Stats`]).
    fn record_responses_request(&self, seen: codex::SeenRequest) {
        if seen.zstd {
            self.zstd_bodies.fetch_add(1, Ordering::SeqCst);
        }
        if seen.first_input_role.as_deref() == Some("developer") {
            self.developer_first.fetch_add(1, Ordering::SeqCst);
        }
        if seen.max_output_tokens.is_some() {
            self.max_output_tokens_seen.fetch_add(1, Ordering::SeqCst);
        }
        let mut ledger = self.ledger();
        if ledger.seen.len() == SEEN_KEPT {
            ledger.seen.pop_front();
        }
        ledger.seen.push_back(seen);
    }

    /// What the last [`SEEN_KEPT`] responses requests carried, oldest first.
    pub fn responses_seen(&self) -> Vec<codex::SeenRequest> {
        self.ledger().seen.iter().cloned().collect()
    }

    /// Sets what normal answers look like.
    pub fn set_reply(&self, shape: reply::ReplyShape) {
        self.ledger().reply = shape;
    }

    fn reply_shape(&self) -> reply::ReplyShape {
        self.ledger().reply.clone()
    }

    /// The reply to a turn: a function call only for one that `asks` (ends
    /// with a user message).
    fn reply_shape_for(&self, asks: bool) -> reply::ReplyShape {
        let mut shape = self.reply_shape();
        if !asks {
            shape.tool_call = None;
        }
        shape
    }

    /// The account of `access` if it is a live, unexpired token at `now_ms`.
    /// The account id and plan of a live, unexpired access token.
    fn account_and_plan_of_valid_token(
        &self,
        access: &str,
        now_ms: i64,
    ) -> Option<(String, String)> {
        let ledger = self.ledger();
        let (family, at, life) = ledger.access_tokens.get(access)?;
        let f = &ledger.families[*family];
        (!f.revoked && now_ms < at + *life as i64 * 1000)
            .then(|| (f.account_id.clone(), f.plan.clone()))
    }

    /// Charges one response to `account` (see [`usage::UsageBook::charge`]):
    /// its windows after it, or the reset time of a full one.
    pub fn charge_usage(&self, account: &str, now_s: i64) -> Result<AccountUsage, i64> {
        let step = self.config().usage_step;
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .charge(account, step, now_s)
    }

    /// The responses `account` was served and refused by its limit.
    pub fn charged(&self, account: &str) -> usage::Charged {
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .charged(account)
    }

    /// The plan of an account the issuer knows; `plus` for others.
    pub fn plan_of(&self, account: &str) -> String {
        self.ledger()
            .families
            .iter()
            .find(|f| f.account_id == account)
            .map_or_else(|| "plus".to_owned(), |f| f.plan.clone())
    }

    /// An account's rate-limit windows (fresh ones until set).
    pub fn usage_of(&self, account: &str, now_s: i64) -> AccountUsage {
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account, now_s)
    }

    /// Sets an account's rate-limit windows (`None`: a missing window).
    pub fn set_usage(&self, account: &str, usage: AccountUsage) {
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set(account, usage);
    }

    fn note_usage_request(&self) {
        self.usage_requests.fetch_add(1, Ordering::SeqCst);
    }

    fn account_of_valid_token(&self, access: &str, now_ms: i64) -> Option<String> {
        let ledger = self.ledger();
        let (family, at, life) = ledger.access_tokens.get(access)?;
        let f = &ledger.families[*family];
        (!f.revoked && now_ms < at + *life as i64 * 1000).then(|| f.account_id.clone())
    }

    /// Counts a response stream as open until the guard drops.
    fn stream_guard(self: &Arc<Self>) -> StreamGuard {
        self.open_streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard(self.clone())
    }

    /// Whether the issuer has already spent `refresh` (rotated it away).
    pub fn is_spent(&self, refresh: &str) -> bool {
        self.ledger()
            .refresh_tokens
            .get(refresh)
            .is_some_and(|(_, spent)| *spent)
    }

    /// Whether `refresh` is the live, unspent token of a live family.
    pub fn is_live_refresh(&self, refresh: &str) -> bool {
        let ledger = self.ledger();
        ledger
            .refresh_tokens
            .get(refresh)
            .is_some_and(|(f, spent)| !spent && !ledger.families[*f].revoked)
    }

    /// Whether `access` was issued by this mock and its family is not revoked.
    pub fn access_token_live(&self, access: &str) -> bool {
        let ledger = self.ledger();
        ledger
            .access_tokens
            .get(access)
            .is_some_and(|(f, _, _)| !ledger.families[*f].revoked)
    }

    /// When `access` was issued, ms since the epoch.
    pub fn issued_at(&self, access: &str) -> Option<i64> {
        self.ledger()
            .access_tokens
            .get(access)
            .map(|(_, at, _)| *at)
    }

    /// Whether `access` was issued by this mock, its family is live, and it
    /// had not expired at `t_ms`.
    pub fn access_token_valid_at(&self, access: &str, t_ms: i64) -> bool {
        let ledger = self.ledger();
        ledger
            .access_tokens
            .get(access)
            .is_some_and(|(f, at, life)| {
                !ledger.families[*f].revoked && t_ms < at + *life as i64 * 1000
            })
    }

    fn issue(&self, ledger: &mut Ledger, family: usize) -> TokenSet {
        let cfg = self.config();
        let n = self.serial.fetch_add(1, Ordering::SeqCst);
        let f = &ledger.families[family];
        let safe = cfg.atob_safe_jwt;
        let account = if cfg.omit_account_id {
            ""
        } else {
            f.account_id.as_str()
        };
        let access = jwt::access_token(account, &f.email, &f.plan, cfg.expires_in, n, safe);
        let id_token = jwt::id_token(&f.account_id, &f.email, &f.plan, n, safe);
        let refresh = format!("rt_mock_{n}_{}", jwt::nonce());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let set = TokenSet {
            issued_at_ms: now_ms,
            access_token: access.clone(),
            refresh_token: refresh.clone(),
            id_token,
            expires_in: cfg.expires_in,
            account_id: f.account_id.clone(),
        };
        ledger.refresh_tokens.insert(refresh, (family, false));
        ledger
            .access_tokens
            .insert(access, (family, now_ms, cfg.expires_in));
        set
    }
}

struct StreamGuard(Arc<MockState>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running mock. Dropping it stops the server.
pub struct MockOpenAi {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl MockOpenAi {
    /// Starts the mock on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start(config: MockConfig) -> std::io::Result<MockOpenAi> {
        MockOpenAi::start_on("127.0.0.1:0".parse().expect("addr"), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockOpenAi> {
        let state = Arc::new(MockState::new(config));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(server::serve(listener, state.clone(), rx));
        Ok(MockOpenAi {
            addr,
            state,
            _shutdown: tx,
        })
    }

    /// The issuer base URL, for `PIAUTHD_ISSUER`.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Codex base URL, for `PIAUTHD_CODEX_BASE_URL`.
    pub fn codex_base(&self) -> String {
        format!("http://{}/backend-api", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.state.stats()
    }
}
