//! The real pi 1.6.0 with the package in relay mode (`PIAUTHD_RELAY=1`):
//! pi's Codex stream goes through the daemon, which goes upstream over its
//! WebSocket. pi sees the same events as on its direct path, many sessions
//! across token lifetimes are all answered, and a usage limit mid-run costs
//! no turn.

use std::process::{Output, Stdio};
use std::time::Duration;

use piauth_client::Client;
use piauth_tests::Sandbox;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi, ReplyShape, ToolCall};
use serde_json::Value;

use crate::pi_home::{PiHome, file_daemon, limit_mid_run, two_account_daemon};

const SESSIONS: usize = 8;
const LIFETIME_SECS: u64 = 6;

fn relay(home: &mut PiHome<'_>) {
    home.env.push(("PIAUTHD_RELAY".into(), "1".into()));
}

/// The events pi reports in `--mode json`, as their types (a message
/// update by the assistant event it carries).
fn event_types(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| {
            let kind = e["type"].as_str()?.to_owned();
            Some(match e["assistantMessageEvent"]["type"].as_str() {
                Some(inner) => format!("{kind}:{inner}"),
                None => kind,
            })
        })
        .collect()
}

fn json_turn(home: &PiHome<'_>) -> Output {
    home.pi(&[
        "--mode",
        "json",
        "-p",
        "run the check",
        "--provider",
        "openai-codex",
        "--model",
        "gpt-6.2-sol",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .expect("pi runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_mode_gives_pi_a_tool_call_exactly_as_its_direct_path_does() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    mock.state.set_reply(ReplyShape {
        text: "The check printed relay-ok.".into(),
        tool_call: Some(ToolCall {
            name: "bash".into(),
            arguments: r#"{"command":"echo relay-ok"}"#.into(),
        }),
        ..ReplyShape::default()
    });
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-pi", "pi@example.com", "plus"),
    )
    .unwrap();
    let _d = file_daemon(&sb, &mock);
    let mut home = PiHome::new(&sb);

    let direct = json_turn(&home);
    assert!(
        direct.status.success(),
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    let direct_seen = mock.state.responses_seen();
    relay(&mut home);
    let relayed = json_turn(&home);
    assert!(
        relayed.status.success(),
        "{}",
        String::from_utf8_lossy(&relayed.stderr)
    );
    let relay_seen = &mock.state.responses_seen()[direct_seen.len()..];

    let (a, b) = (event_types(&direct), event_types(&relayed));
    assert!(
        a.iter().any(|t| t.contains("toolcall_end")),
        "a tool call: {a:?}"
    );
    assert!(
        a.iter().any(|t| t == "tool_execution_end"),
        "the tool ran: {a:?}"
    );
    assert_eq!(a, b, "the same events, in the same order");
    let text = String::from_utf8_lossy(&relayed.stdout);
    assert!(text.contains("relay-ok") && text.contains("The check printed relay-ok."));
    // Two turns each: the call, then the answer to the tool's output. pi
    // sent them itself, then the daemon did.
    assert_eq!((direct_seen.len(), relay_seen.len()), (2, 2));
    assert!(
        direct_seen
            .iter()
            .all(|s| !s.user_agent.starts_with("piauthd/"))
    );
    assert!(
        relay_seen
            .iter()
            .all(|s| s.user_agent.starts_with("piauthd/") && s.transport == "websocket"),
        "{relay_seen:?}"
    );
    // The tool's output continues the call's response, as pi itself does.
    assert!(
        direct_seen[1].previous_response_id.is_some(),
        "{direct_seen:?}"
    );
    assert!(
        relay_seen[1].previous_response_id.is_some(),
        "{relay_seen:?}"
    );
    assert!(
        relay_seen[1].wire_bytes <= direct_seen[1].wire_bytes + 64,
        "{relay_seen:?} {direct_seen:?}"
    );
    home.assert_pi_never_called_its_issuer();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_relay_sessions_across_five_token_lifetimes_all_answered() {
    let mock = MockOpenAi::start(MockConfig {
        expires_in: LIFETIME_SECS,
        usage_step: 0.1,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-pi", "pi@example.com", "plus"),
    )
    .unwrap();
    let _d = file_daemon(&sb, &mock);
    let mut home = PiHome::new(&sb);
    relay(&mut home);
    let (prompts, rounds) = home.rounds_for(SESSIONS, Duration::from_secs(5 * LIFETIME_SECS));
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let refreshes = c.status().await.unwrap().providers[0].refresh_count;
    let stats = mock.stats();
    eprintln!("relay mode: {prompts} prompts in {rounds} rounds, {refreshes} refreshes; {stats:?}");
    assert!(refreshes >= 5, "five token lifetimes: {refreshes}");
    assert_eq!((stats.reuse_attempts, stats.revocations), (0, 0));
    assert_eq!(
        stats.responses_requests, prompts as u64,
        "no turn sent twice"
    );
    assert_eq!(stats.websocket_requests, stats.responses_requests);
    assert!(
        mock.state
            .responses_seen()
            .iter()
            .all(|s| s.user_agent.starts_with("piauthd/")),
        "every request came from the daemon"
    );
    home.assert_pi_never_called_its_issuer();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_mid_run_costs_relay_mode_no_turn() {
    let (mock, sb, _d) = two_account_daemon().await;
    let mut home = PiHome::new(&sb);
    relay(&mut home);
    let moved = limit_mid_run(&home, &mock);
    eprintln!(
        "relay mode, A limited mid-run: 12 prompts answered, 0 failed; the daemon moved {moved} turn(s) refused by A to B; B answered 8"
    );
    assert!(moved >= 1, "the limit was met, and moved by the daemon");
}
