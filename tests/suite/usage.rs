//! `pi-authctl usage`: the plan's windows as the backend reports them, a
//! missing window said as missing, a read at most once a minute, and the
//! numbers every relayed response carries folded in.

use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{AccountUsage, MockConfig, MockOpenAi, Window};
use piauth_tests::{Daemon, Sandbox};
use serde_json::Value;

fn usage_json(sb: &Sandbox, extra: &[&str]) -> Value {
    let mut args = vec!["usage", "--json"];
    args.extend_from_slice(extra);
    let out = sb.authctl(&args);
    assert!(
        out.status.success(),
        "pi-authctl usage: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("usage --json prints JSON")
}

fn now_s() -> i64 {
    piauth_tests::fixtures::now_ms() / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_matches_the_backend_with_a_missing_window_and_follows_each_response() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-u", "u@example.com", "plus"),
    )
    .unwrap();
    // The backend leaves out the 5-hour window for this account.
    let weekly_reset = now_s() + 3 * 86_400;
    mock.state.set_usage(
        "acc-u",
        AccountUsage {
            primary: None,
            secondary: Some(Window {
                used_percent: 42.5,
                window_minutes: 10_080,
                reset_at: weekly_reset,
            }),
        },
    );
    let (issuer, base) = (mock.issuer(), mock.codex_base());
    let _d = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CODEX_BASE_URL", &base);
    });

    let v = usage_json(&sb, &[]);
    let a = &v["accounts"][0];
    assert_eq!(v["accounts"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(a["account_id"], "acc-u", "{v}");
    assert_eq!(a["email"], "u@example.com", "{v}");
    assert_eq!(a["plan"], "plus", "{v}");
    assert!(
        a["primary"].is_null(),
        "a missing window is null, not 0 %: {v}"
    );
    assert_eq!(a["secondary"]["used_percent"], 42.5, "{v}");
    assert_eq!(a["secondary"]["window_minutes"], 10_080, "{v}");
    assert_eq!(a["secondary"]["resets_at"], weekly_reset, "{v}");
    assert_eq!(a["limit_reached"], false, "{v}");
    assert_eq!(a["source"], "usage_endpoint", "{v}");
    let fetched = a["fetched_at"].as_i64().expect("fetched_at");
    assert!(
        (now_s() - fetched).abs() < 60,
        "fetched_at in epoch seconds: {v}"
    );
    assert_eq!(mock.stats().usage_requests, 1);

    // Within the minute the daemon answers from what it read; --fresh asks.
    usage_json(&sb, &[]);
    assert_eq!(mock.stats().usage_requests, 1, "served from the last read");
    usage_json(&sb, &["--fresh"]);
    assert_eq!(mock.stats().usage_requests, 2, "--fresh reads again");

    // The human form says the same.
    let out = sb.authctl(&["usage"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("5-hour   not reported by the backend"),
        "{text}"
    );
    assert!(
        text.contains("42.5% used, resets in 2d 23h") || text.contains("42.5% used, resets in 3d"),
        "{text}"
    );

    // A relayed response carries newer numbers; they are folded in. This
    // one fills the 5-hour window (99.5 % plus the mock's 1 % a response).
    let primary_reset = now_s() + 3_600;
    mock.state.set_usage(
        "acc-u",
        AccountUsage {
            primary: Some(Window {
                used_percent: 99.5,
                window_minutes: 300,
                reset_at: primary_reset,
            }),
            secondary: None,
        },
    );
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let mut stream = c
        .complete(pb::CompletionRequest {
            model: "gpt-5.1-codex-mini".into(),
            input_json: "[]".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    while stream.next_text().await.unwrap().is_some() {}
    let v = usage_json(&sb, &[]);
    let a = &v["accounts"][0];
    assert_eq!(a["source"], "response_headers", "{v}");
    assert_eq!(a["primary"]["used_percent"], 100.0, "{v}");
    assert_eq!(a["primary"]["resets_at"], primary_reset, "{v}");
    assert_eq!(
        a["secondary"]["used_percent"], 42.5,
        "the weekly window is kept: {v}"
    );
    assert_eq!(a["limit_reached"], true, "{v}");
    assert_eq!(mock.stats().usage_requests, 2, "no read needed for that");

    // The window is full: the backend itself refuses the next response
    // until its reset, and the client is told when.
    let refused = async {
        let started = c
            .complete(pb::CompletionRequest {
                model: "gpt-5.1-codex-mini".into(),
                input_json: "[]".into(),
                ..Default::default()
            })
            .await;
        let mut stream = match started {
            Ok(stream) => stream,
            Err(e) => return Some(e),
        };
        loop {
            match stream.next_text().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    };
    match refused.await {
        Some(piauth_client::Error::ResourceExhausted { details, .. }) => {
            assert_eq!(details["resets_at"], primary_reset.to_string());
        }
        other => panic!("a full window is refused with its reset time: {other:?}"),
    }
    // After a limit answer the daemon reads the usage endpoint again.
    assert!(
        piauth_tests::wait::wait_until(std::time::Duration::from_secs(10), || async {
            mock.stats().usage_requests == 3
        })
        .await,
        "read again after the limit: {:?}",
        mock.stats().usage_requests
    );
    eprintln!("usage: {v}");
}
