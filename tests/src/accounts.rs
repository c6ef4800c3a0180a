//! Two ChatGPT accounts for a test: account A (`acc-a`, a@example.com,
//! plus) in the sandbox's `auth.json`, and a mock whose logins sign in as
//! account B (`acc-b`, b@example.com, pro), which [`device_login`] adds.

use std::path::Path;
use std::time::Duration;

use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_client::proto::v1::login_event::Event;

use crate::Sandbox;
use crate::fixtures::write_codex_login;
use crate::mock::{AccountUsage, Identity, MockConfig, MockOpenAi, Window};

/// A mock with `config`, whose logins are account B, and a sandbox whose
/// `auth.json` holds account A.
pub async fn two_accounts(config: MockConfig) -> (MockOpenAi, Sandbox) {
    let mock = MockOpenAi::start(MockConfig {
        device_pending_polls: 0,
        login_identity: Identity {
            account_id: "acc-b".into(),
            email: "b@example.com".into(),
            plan: "pro".into(),
        },
        ..config
    })
    .await
    .expect("the mock starts");
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-a", "a@example.com", "plus"),
    )
    .expect("auth.json");
    (mock, sb)
}

/// Fills account A's 5-hour window at the mock until `reset_at` (epoch
/// seconds), with no weekly window; the daemon learns it from a refusal.
pub fn exhaust_a(mock: &MockOpenAi, reset_at: i64) {
    mock.state.set_usage(
        "acc-a",
        AccountUsage {
            primary: Some(Window {
                used_percent: 100.0,
                window_minutes: 300,
                reset_at,
            }),
            secondary: None,
        },
    );
}

/// A device login through the daemon on `socket`, to its success (it fails
/// the test on a failure, or after 30 s).
pub async fn device_login(socket: &Path) -> pb::LoginSuccess {
    let mut c = Client::connect(socket).await.expect("connect");
    let mut stream = c
        .login("", pb::LoginMethod::DeviceCode, 0)
        .await
        .expect("a login starts");
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the login ends in time")
            .expect("the login stream")
        {
            Some(Event::Success(s)) => return s,
            Some(Event::Failure(f)) => panic!("the login failed: {}", f.message),
            Some(_) => {}
            None => panic!("the login stream ended without an outcome"),
        }
    }
}
