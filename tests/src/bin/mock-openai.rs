//! `mock-openai`: run the OpenAI issuer and Codex mock on loopback, to try
//! piauthd's whole flow without an account.
//!
//! ```text
//! mock-openai --port 8787 --expires-in 60
//! piauthd --issuer http://127.0.0.1:8787 --codex-base-url http://127.0.0.1:8787/backend-api
//! ```
//!
//! The Codex backend is at `{codex_base}/codex/responses` with
//! `PIAUTHD_CODEX_BASE_URL` (or pi's `models.json` `baseUrl`) set to the
//! printed base: SSE over POST, plain or zstd-compressed bodies (pi 1.6.0),
//! and the Responses WebSocket on the same URL (`ws://`), with continuation
//! (`previous_response_id`), as pi 1.6.0 and piauthd use it first.
//! `--refuse-websocket 426` refuses every upgrade instead, so clients fall
//! back to SSE.
//!
//! Control endpoints: `GET /_mock/stats` (counters), `GET /_mock/responses`
//! (what the last responses requests carried), `POST /_mock/reply` (what
//! later replies look like: `{"text":"…","delay_ms":50}`, `{"deltas":1000,
//! "delta_bytes":64}`, or `{"tool_call":{"name":"bash","arguments":
//! "{\"command\":\"ls\"}"}}` to call a tool first), `POST /_mock/faults`
//! (JSON list of faults for the next token requests, e.g.
//! `[{"kind":"status","code":503},{"kind":"reset_after"}]`; it answers
//! `{"queued":N}`), and
//! `POST /_mock/seed` (creates a login and returns its tokens; with
//! `--seed-auth FILE` the mock writes one into a pi `auth.json` at start).
//!
//! Logins: `GET /oauth/authorize` approves at once (signing in as
//! `acc-login` / `login@example.com`) by redirecting to the callback, or
//! denies with `--deny`; the device-code endpoints answer pending twice,
//! then approve.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use piauth_tests::mock::{MockConfig, MockOpenAi, WebsocketMode};

/// A faithful mock of OpenAI's OAuth issuer and Codex backend for piauthd
/// and pi. Loopback only.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    expires_in: u64,
    /// Delay added to every token request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    token_delay_ms: u64,
    /// Encode JWT payloads in standard base64, which pi 0.73.1's `atob` needs
    /// (pi 1.6.0 reads the default tokens as they are).
    #[arg(long)]
    atob_safe_jwt: bool,
    /// Answer every authorize request with `error=access_denied`.
    #[arg(long)]
    deny: bool,
    /// Create a login and write it into this pi auth.json (other providers kept).
    #[arg(long, value_name = "FILE")]
    seed_auth: Option<std::path::PathBuf>,
    /// Refuse WebSocket upgrades with this HTTP status (426 makes clients
    /// fall back to SSE); by default they are served.
    #[arg(long, value_name = "STATUS")]
    refuse_websocket: Option<u16>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let mock = MockOpenAi::start_on(
        addr,
        MockConfig {
            expires_in: args.expires_in,
            token_delay: Duration::from_millis(args.token_delay_ms),
            atob_safe_jwt: args.atob_safe_jwt,
            approve: !args.deny,
            websocket: match args.refuse_websocket {
                Some(status) => WebsocketMode::Refuse { status },
                None => WebsocketMode::Serve,
            },
            ..MockConfig::default()
        },
    )
    .await?;
    println!("mock-openai listening on {}", mock.issuer());
    println!("  PIAUTHD_ISSUER={}", mock.issuer());
    println!("  PIAUTHD_CODEX_BASE_URL={}", mock.codex_base());
    if let Some(path) = &args.seed_auth {
        let set = mock
            .state
            .seed_login("acc-mock", "user@example.com", "plus");
        piauth_tests::fixtures::write_codex_login(path, &set)?;
        println!("  wrote a login for acc-mock into {}", path.display());
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
