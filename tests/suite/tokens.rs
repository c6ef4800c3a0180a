use std::time::Duration;

use piauth_client::proto::v1 as pb;
use piauth_client::{Client, Error, Reason};
use piauth_tests::daemon::codex_status;
use piauth_tests::fixtures::{access_token, auth_json, now_ms, write_codex_login};
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::wait::{eventually, wait_until};
use piauth_tests::{Daemon, Sandbox};

const DAY_MS: i64 = 86_400_000;

fn logged_in(sb: &Sandbox, nonce: &str) -> (String, String) {
    let exp = now_ms() + DAY_MS;
    let access = access_token("acc-42", "me@example.com", "pro", exp / 1000, nonce);
    let refresh = format!("rt_{nonce}_refresh");
    sb.write_auth(&auth_json(&access, &refresh, exp, "acc-42"));
    (access, refresh)
}

/// Whether GetToken serves `want` within 3 s (as a changed file is read).
async fn served_within_3s(c: &Client, want: &str) -> bool {
    wait_until(Duration::from_secs(3), || {
        let mut c = c.clone();
        async move { c.get_token("", 0).await.unwrap().access_token == want }
    })
    .await
}

#[tokio::test]
async fn get_token_and_status_over_grpc() {
    let sb = Sandbox::new();
    let (access, refresh) = logged_in(&sb, "n1");
    let _d = Daemon::start(&sb);
    let mut c = Client::connect(sb.socket()).await.unwrap();

    let t = c.get_token("", 60).await.unwrap();
    assert_eq!(t.access_token, access);
    assert_eq!(t.provider, "openai-codex");
    assert_eq!(t.account_id, "acc-42");
    assert!(t.expires_at_ms > now_ms() + DAY_MS - 60_000);
    assert!(
        !format!("{t:?}").contains(&access),
        "Token's Debug is redacted"
    );

    let s = c.status().await.unwrap();
    let store = s.store.clone().unwrap();
    assert_eq!(store.health, pb::StoreHealth::Ok as i32);
    assert_eq!(store.path, sb.auth_file().display().to_string());
    let p = &s.providers[0];
    assert_eq!(
        (
            p.provider.as_str(),
            p.state,
            p.account_id.as_str(),
            p.email.as_str(),
            p.plan.as_str()
        ),
        (
            "openai-codex",
            pb::ProviderState::Valid as i32,
            "acc-42",
            "me@example.com",
            "pro"
        )
    );
    let dump = format!("{s:?}");
    assert!(!dump.contains(&access) && !dump.contains(&refresh));
}

#[tokio::test]
async fn not_logged_in_and_expiring_tokens_give_typed_errors() {
    let sb = Sandbox::new();
    let _d = Daemon::start(&sb);
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let e = c.get_token("openai-codex", 0).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unauthenticated {
                reason: Reason::NotLoggedIn,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("pi-authctl login"));
    assert_eq!(sb.authctl(&["token"]).status.code(), Some(4));

    // piauthd does not refresh other providers: a too-short token is an error.
    let exp = now_ms() + 30_000;
    let access = access_token("acc", "e@x.y", "plus", exp / 1000, "soon");
    sb.write_auth(&format!(
        "{{\"anthropic\": {{\"type\": \"oauth\", \"access\": \"{access}\", \"refresh\": \"r\", \"expires\": {exp}}}}}"
    ));
    assert!(eventually(Duration::from_secs(5), || {
        let out = sb.authctl(&["token", "--provider", "anthropic", "--min-valid", "0"]);
        String::from_utf8_lossy(&out.stdout).trim() == access
    }));
    let e = c.get_token("anthropic", 120).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::FailedPrecondition {
                reason: Reason::TokenExpiring,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        sb.authctl(&["token", "--provider", "anthropic", "--min-valid", "120"])
            .status
            .code(),
        Some(4)
    );
    let e = c.get_token("../etc", 0).await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
}

#[test]
fn cli_token_and_status() {
    let sb = Sandbox::new();
    let (access, _) = logged_in(&sb, "cli");
    let _d = Daemon::start(&sb);
    let out = sb.authctl(&["token"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{access}\n")
    );

    let out = sb.authctl(&["token", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["access_token"], access.as_str());
    assert_eq!(v["account_id"], "acc-42");

    let out = sb.authctl(&["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("openai-codex  valid  acc-42"), "{text}");
    assert!(!text.contains(&access));
    let out = sb.authctl(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["providers"][0]["state"], "valid");
    assert_eq!(v["store"]["health"], "ok");
}

#[tokio::test]
async fn a_write_by_another_process_is_served_without_restart() {
    let sb = Sandbox::new();
    logged_in(&sb, "before");
    let _d = Daemon::start(&sb);
    let c = Client::connect(sb.socket()).await.unwrap();

    // pi writes in place (truncate, then write).
    let (after, _) = logged_in(&sb, "in-place");
    assert!(
        served_within_3s(&c, &after).await,
        "an in-place write is picked up"
    );

    // Another piauthd writes by rename.
    let exp = now_ms() + DAY_MS;
    let renamed = access_token("acc-42", "me@example.com", "pro", exp / 1000, "renamed");
    let tmp = sb.agent_dir().join("auth.json.tmp");
    std::fs::write(&tmp, auth_json(&renamed, "rt2", exp, "acc-42")).unwrap();
    std::fs::rename(&tmp, sb.auth_file()).unwrap();
    assert!(
        served_within_3s(&c, &renamed).await,
        "a rename is picked up"
    );
}

#[tokio::test]
async fn a_corrupt_file_is_reported_and_never_touched() {
    let sb = Sandbox::new();
    let corrupt = "{\n  \"openai-codex\": {\n    \"type\": \"oauth\",\n    \"acc";
    sb.write_auth(corrupt);
    let _d = Daemon::start(&sb);
    let mut c = Client::connect(sb.socket()).await.unwrap();

    let s = c.status().await.unwrap();
    let store = s.store.unwrap();
    assert_eq!(store.health, pb::StoreHealth::Corrupt as i32);
    assert!(
        store.detail.contains("will not overwrite"),
        "{}",
        store.detail
    );
    let e = c.get_token("", 0).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::FailedPrecondition {
                reason: Reason::StoreCorrupt,
                ..
            }
        ),
        "{e:?}"
    );
    let out = sb.authctl(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("CORRUPT"));
    assert_eq!(std::fs::read_to_string(sb.auth_file()).unwrap(), corrupt);

    // Fixing the file is noticed.
    let (access, _) = logged_in(&sb, "fixed");
    let answered = wait_until(Duration::from_secs(3), || {
        let mut c = c.clone();
        async move { c.get_token("", 0).await.is_ok() }
    })
    .await;
    assert!(answered, "GetToken answers once the file is repaired");
    assert_eq!(
        c.get_token("", 0).await.unwrap().access_token,
        access,
        "the repaired file is served"
    );
}

#[tokio::test]
async fn corruption_while_running_keeps_the_last_good_token() {
    let sb = Sandbox::new();
    let (access, _) = logged_in(&sb, "good");
    let _d = Daemon::start(&sb);
    let mut c = Client::connect(sb.socket()).await.unwrap();
    sb.write_auth("{ not json");
    let corrupt =
        wait_until(Duration::from_secs(3), || {
            let mut c = c.clone();
            async move {
                c.status().await.unwrap().store.unwrap().health == pb::StoreHealth::Corrupt as i32
            }
        })
        .await;
    assert!(corrupt, "the corrupt file is reported");
    assert_eq!(c.get_token("", 0).await.unwrap().access_token, access);
    assert_eq!(
        std::fs::read_to_string(sb.auth_file()).unwrap(),
        "{ not json"
    );
}

/// A corrupt `auth.json` while the token runs out: refreshes fail and back
/// off. Restoring the file ends the backoff: the very next GetToken
/// refreshes and serves, not seconds later when the backoff timer fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repaired_file_is_served_at_the_next_call_not_after_the_backoff() {
    let mock = MockOpenAi::start(MockConfig {
        expires_in: 4,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-fix", "fix@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let good = std::fs::read(sb.auth_file()).unwrap();
    let _d = Daemon::start_against(&sb, &mock.issuer());
    let mut c = Client::connect(sb.socket()).await.unwrap();
    assert_eq!(
        c.get_token("", 0).await.unwrap().access_token,
        set.access_token
    );

    sb.write_auth("{ not json");
    // The token expires with the file unreadable; the refreshes fail and
    // back off until the next attempt is at least 2 s away.
    let mut st = codex_status(&mut c).await;
    for _ in 0..250 {
        let waiting = st.next_refresh_ms - now_ms();
        if st.expires_at_ms < now_ms() && !st.last_error.is_empty() && waiting >= 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        st = codex_status(&mut c).await;
    }
    assert!(
        st.last_error.contains("not refreshing until it is fixed"),
        "{st:?}"
    );
    assert!(
        st.next_refresh_ms - now_ms() >= 1_500,
        "backing off: {st:?}"
    );
    let e = c.get_token("", 0).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");

    std::fs::write(sb.auth_file(), &good).unwrap();
    let asked = std::time::Instant::now();
    let t = c
        .get_token("", 0)
        .await
        .expect("the next call after the repair is served");
    let took = asked.elapsed();
    assert_ne!(t.access_token, set.access_token, "a refreshed token");
    assert!(mock.state.access_token_live(&t.access_token));
    assert!(t.expires_at_ms > now_ms());
    assert!(took < Duration::from_secs(1), "served in {took:?}");
    let st = codex_status(&mut c).await;
    assert!(st.last_error.is_empty(), "{st:?}");
}

/// Runs a full GetToken at trace level, by library and by CLI, and checks
/// that no part of any token reaches the daemon's or the CLI's output.
#[tokio::test]
async fn trace_logs_contain_no_token() {
    let sb = Sandbox::new();
    let (access, refresh) = logged_in(&sb, "tracecheck");
    let d = Daemon::start(&sb);
    let mut c = Client::connect(sb.socket()).await.unwrap();
    assert_eq!(c.get_token("", 0).await.unwrap().access_token, access);
    let _ = c.status().await.unwrap();
    let cli = sb.authctl(&["status"]);
    // A file change and reload at trace level, too.
    let (access2, refresh2) = logged_in(&sb, "tracecheck2");
    assert!(
        served_within_3s(&c, &access2).await,
        "the reloaded token was served, so the reload is in the log checked"
    );
    let logs = d.logs();
    assert!(logs.contains("TRACE"), "the daemon logged at trace level");
    assert!(
        logs.contains("served a token"),
        "the GetToken path was logged"
    );
    let mut texts = vec![logs, String::from_utf8_lossy(&cli.stderr).into_owned()];
    texts.push(String::from_utf8_lossy(&cli.stdout).into_owned());
    for text in &texts {
        for secret in [&access, &refresh, &access2, &refresh2] {
            assert!(
                !text.contains(secret.as_str()),
                "a token leaked into the output"
            );
            // Parts of the JWT (payload, signature) must not leak either.
            for part in secret.split('.').skip(1) {
                assert!(
                    !text.contains(part),
                    "part of a token leaked into the output"
                );
            }
        }
    }
}

/// Reading auth.json must not count as a change: otherwise every reload
/// triggers the next one, and an idle daemon spins.
#[test]
fn an_idle_daemon_does_not_reload_in_a_loop() {
    let sb = Sandbox::new();
    logged_in(&sb, "idle");
    let d = Daemon::start(&sb);
    // An absence has no event to wait for: this window is what is
    // observed. A loop would log a reload every settle period (30 ms), so
    // half a second would show a dozen.
    std::thread::sleep(Duration::from_millis(500));
    let reloads = d.logs().matches("auth.json changed on disk").count();
    assert_eq!(
        reloads, 0,
        "the daemon reloaded {reloads} times while nothing changed"
    );
}
