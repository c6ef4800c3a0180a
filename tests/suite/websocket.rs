//! The relay's WebSocket upstream against the mock: a session's turns
//! continue on one connection and send only their new items; a lost
//! continuation, the connection limit and a refused upgrade cost the
//! client nothing; a usage limit moves the turn to the other account.

use std::time::Duration;

use piauth_client::proto::v1 as pb;
use piauth_client::{Client, Error};
use piauth_tests::accounts::{device_login, exhaust_a, two_accounts};
use piauth_tests::fixtures::{now_ms, write_codex_login};
use piauth_tests::mock::{MockConfig, MockOpenAi, ResponsesFault, SeenRequest, WebsocketMode};
use piauth_tests::{Daemon, Sandbox};
use serde_json::{Value, json};

const SESSION: &str = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/// A pi 1.6.0 session's body, turn by turn: pi's fields in pi's order, a
/// developer item with the system prompt, the tools, and a transcript that
/// grows by the assistant's last item (as pi encodes it) and a new user
/// message with a file's worth of text.
struct Conversation {
    input: Vec<Value>,
}

impl Conversation {
    fn new() -> Conversation {
        let system = "You are an expert coding assistant. ".repeat(300);
        Conversation {
            input: vec![json!({"role": "developer", "content": system})],
        }
    }

    fn ask(&mut self, turn: usize) {
        let file = format!("fn line_{turn}() {{}}\n").repeat(100);
        self.input.push(json!({"role": "user", "content": [
            {"type": "input_text", "text": format!("turn {turn}: what does this do?\n{file}")}
        ]}));
    }

    /// pi's encoding of the server's output items: its own field order and
    /// no `status`, the same type and id.
    fn answered(&mut self, output: &[Value]) {
        for item in output {
            let mut mine = item.clone();
            if let Some(m) = mine.as_object_mut() {
                m.remove("status");
            }
            self.input.push(mine);
        }
    }

    fn body(&self) -> Value {
        let tool = |name: &str| {
            json!({"type": "function", "name": name, "description": format!("The {name} tool. ").repeat(20),
                   "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}, "strict": null})
        };
        let tools = ["read", "bash", "edit", "write"].map(tool);
        json!({
            "model": "gpt-6.2-sol", "store": false, "stream": true, "input": self.input,
            "text": {"verbosity": "low"}, "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": SESSION, "tool_choice": "auto", "parallel_tool_calls": true,
            "max_output_tokens": 32000,
            "tools": tools,
            "reasoning": {"effort": "medium", "summary": "auto"},
        })
    }
}

async fn daemon_on(mock: &MockOpenAi, sb: &Sandbox, transport: &str) -> Daemon {
    let (issuer, base) = (mock.issuer(), mock.codex_base());
    Daemon::start_with(sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CODEX_BASE_URL", &base)
            .env("PIAUTHD_CODEX_TRANSPORT", transport)
            .env("RUST_LOG", "info");
    })
}

async fn rig(transport: &str) -> (MockOpenAi, Sandbox, Daemon, Client) {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-w", "w@example.com", "pro"),
    )
    .unwrap();
    let d = daemon_on(&mock, &sb, transport).await;
    let c = Client::connect(sb.socket()).await.unwrap();
    (mock, sb, d, c)
}

/// One turn: the server's output items, or the error.
async fn turn(c: &mut Client, body: &Value) -> Result<Vec<Value>, Error> {
    let mut stream = c
        .complete(pb::CompletionRequest {
            body_json: body.to_string(),
            session_id: SESSION.into(),
            ..Default::default()
        })
        .await?;
    let mut output = Vec::new();
    let mut completed = false;
    while let Some(e) = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the turn ends in time")?
    {
        let v: Value = serde_json::from_str(&e.data_json).unwrap();
        match e.r#type.as_str() {
            "response.output_item.done" => output.push(v["item"].clone()),
            "response.completed" => completed = true,
            _ => {}
        }
    }
    assert!(completed, "the turn completed");
    Ok(output)
}

/// Runs `turns` turns of one conversation and returns what the mock saw of
/// each, with each turn's full body size.
async fn session(c: &mut Client, mock: &MockOpenAi, turns: usize) -> Vec<(SeenRequest, usize)> {
    let mut talk = Conversation::new();
    let mut seen = Vec::new();
    for t in 1..=turns {
        talk.ask(t);
        let body = talk.body();
        let output = turn(c, &body)
            .await
            .unwrap_or_else(|e| panic!("turn {t}: {e}"));
        talk.answered(&output);
        let last = mock.state.responses_seen().pop().unwrap();
        seen.push((last, body.to_string().len()));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_turn_session_sends_only_its_new_items_after_the_first() {
    let (mock, _sb, _d, mut c) = rig("auto").await;
    let seen = session(&mut c, &mock, 20).await;
    let stats = mock.stats();
    assert_eq!(stats.websocket_connections, 1, "one connection: {stats:?}");
    assert_eq!(stats.websocket_requests, 20);
    assert_eq!(stats.websocket_continued, 19, "every later turn continued");
    for (t, (s, full)) in seen.iter().enumerate() {
        let t = t + 1;
        assert_eq!(s.transport, "websocket");
        assert_eq!(s.status, 200, "turn {t}");
        assert_eq!(s.previous_response_id.is_some(), t > 1, "turn {t}");
        assert_eq!(s.max_output_tokens, Some(32000), "passed through");
        assert_eq!(s.session_id_dash.as_deref(), Some(SESSION));
        let share = s.wire_bytes as f64 / *full as f64;
        eprintln!(
            "turn {t:2}: {} of {full} bytes ({:.1} %)",
            s.wire_bytes,
            share * 100.0
        );
        if t >= 10 {
            assert!(share <= 0.20, "turn {t}: {share:.3} of the full body");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_continuation_and_the_connection_limit_cost_the_client_nothing() {
    let (mock, _sb, _d, mut c) = rig("auto").await;
    let mut talk = Conversation::new();
    let step = |talk: &mut Conversation, t| {
        talk.ask(t);
        talk.body()
    };
    for t in 1..=2 {
        let body = step(&mut talk, t);
        talk.answered(&turn(&mut c, &body).await.unwrap());
    }
    // The backend forgot the last response: the turn is sent whole, once.
    mock.state
        .push_responses_faults([ResponsesFault::ForgetResponse]);
    let before = mock.stats();
    let body = step(&mut talk, 3);
    talk.answered(&turn(&mut c, &body).await.unwrap());
    let seen = mock.state.responses_seen();
    let (refused, whole) = (&seen[seen.len() - 2], &seen[seen.len() - 1]);
    assert_eq!(refused.status, 400);
    assert!(refused.previous_response_id.is_some());
    assert_eq!(whole.status, 200);
    assert_eq!(whole.previous_response_id, None, "the full body");
    assert_eq!(
        mock.stats().responses_requests - before.responses_requests,
        2
    );

    // The connection reached its limit: a new one, the full body.
    mock.state
        .push_responses_faults([ResponsesFault::ConnectionLimit]);
    let body = step(&mut talk, 4);
    talk.answered(&turn(&mut c, &body).await.unwrap());
    let stats = mock.stats();
    assert_eq!(stats.websocket_connections, 2, "{stats:?}");
    assert_eq!(
        mock.state
            .responses_seen()
            .pop()
            .unwrap()
            .previous_response_id,
        None
    );
    // And the next turn continues on the new connection.
    let body = step(&mut talk, 5);
    turn(&mut c, &body).await.unwrap();
    assert!(
        mock.state
            .responses_seen()
            .pop()
            .unwrap()
            .previous_response_id
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_refused_with_426_moves_the_session_to_sse_for_good() {
    let (mock, _sb, _d, mut c) = rig("auto").await;
    mock.state
        .configure(|c| c.websocket = WebsocketMode::Refuse { status: 426 });
    let seen = session(&mut c, &mock, 3).await;
    let stats = mock.stats();
    assert_eq!(
        stats.websocket_upgrades_refused, 1,
        "tried once per session"
    );
    assert_eq!(stats.websocket_requests, 0);
    for (s, _) in &seen {
        assert_eq!((s.transport.as_str(), s.status), ("sse", 200));
        assert!(
            s.zstd && s.wire_bytes < s.body_bytes,
            "zstd, as pi sends: {s:?}"
        );
        assert_eq!(s.session_id_dash.as_deref(), Some(SESSION));
        assert_eq!(s.session_id_underscore, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_before_the_first_event_goes_to_the_other_account_unseen() {
    let (mock, sb) = two_accounts(MockConfig::default()).await;
    let _d = daemon_on(&mock, &sb, "auto").await;
    assert_eq!(device_login(&sb.socket()).await.account_id, "acc-b");
    let mut c = Client::connect(sb.socket()).await.unwrap();
    c.use_account("acc-a").await.unwrap();
    let mut talk = Conversation::new();
    talk.ask(1);
    talk.answered(&turn(&mut c, &talk.body()).await.unwrap());
    assert_eq!(mock.state.charged("acc-a").served, 1);
    exhaust_a(&mock, now_ms() / 1000 + 3600);
    talk.ask(2);
    turn(&mut c, &talk.body())
        .await
        .expect("the limit never reaches the client");
    let (a, b) = (mock.state.charged("acc-a"), mock.state.charged("acc-b"));
    assert_eq!((a.served, a.refused, b.served), (1, 1, 1));
    let last = mock.state.responses_seen().pop().unwrap();
    assert_eq!(
        (last.account.as_str(), last.transport.as_str()),
        ("acc-b", "websocket")
    );
    assert_eq!(
        last.previous_response_id, None,
        "a new account starts whole"
    );
}
