//! A daemon on the mock Codex backend, with a client, for the completion
//! tests: over SSE or the WebSocket, and the requests they send.

use std::time::Duration;

use piauth_client::Client;
use piauth_client::Error;
use piauth_client::proto::v1 as pb;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::{Daemon, Sandbox};

/// The mock, the daemon's sandbox, the daemon, and a client of it.
pub struct Rig {
    pub mock: MockOpenAi,
    pub sb: Sandbox,
    pub daemon: Daemon,
    pub client: Client,
}

/// How the daemon reaches the mock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Sse,
    WebSocket,
}

/// A daemon whose streams may go `idle_secs` without an event, reaching
/// the mock over `upstream`, and a client connected to it.
pub async fn rig_on(idle_secs: u64, upstream: Upstream) -> Rig {
    let transport = match upstream {
        Upstream::Sse => "sse",
        Upstream::WebSocket => "auto",
    };
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-c", "c@example.com", "pro"),
    )
    .unwrap();
    let (issuer, base) = (mock.issuer(), mock.codex_base());
    let daemon = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CODEX_BASE_URL", &base)
            .env("PIAUTHD_STREAM_IDLE_SECS", idle_secs.to_string())
            .env("PIAUTHD_CODEX_TRANSPORT", transport)
            .env("RUST_LOG", "info");
    });
    let client = Client::connect(sb.socket()).await.unwrap();
    Rig {
        mock,
        sb,
        daemon,
        client,
    }
}

/// [`rig_on`] over SSE, with a 300 s idle limit.
pub async fn rig() -> Rig {
    rig_on(300, Upstream::Sse).await
}

/// A typed request for `text`, as `pi-authctl complete` sends one.
pub fn ask(text: &str) -> pb::CompletionRequest {
    pb::CompletionRequest {
        model: "gpt-5.1-codex-mini".into(),
        instructions: "Be brief.".into(),
        input_json:
            serde_json::json!([{"role":"user","content":[{"type":"input_text","text":text}]}])
                .to_string(),
        session_id: "4b7e5e2c-9f0a-4d4f-8c11-0a1b2c3d4e5f".into(),
        ..Default::default()
    }
}

/// Runs a completion to its end: the events, then the final error if any.
pub async fn run(
    c: &mut Client,
    req: pb::CompletionRequest,
) -> (Vec<pb::CompletionEvent>, Option<Error>) {
    let mut stream = match c.complete(req).await {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("stream ends in time")
        {
            Ok(Some(e)) => events.push(e),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}
