//! Several ChatGPT accounts: a login as another account adds it, `accounts
//! use` and `accounts remove` move them between pi's `auth.json` and
//! piauthd's own store, a restart keeps them all, and every account is
//! refreshed by its own keeper with no token ever sent twice.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use piauth_client::Client;
use piauth_tests::accounts::{device_login, two_accounts};
use piauth_tests::daemon::stored_refresh;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};
use serde_json::Value;

fn accounts_json(sb: &Sandbox, args: &[&str]) -> Value {
    let mut all = vec!["accounts", "--json"];
    all.extend_from_slice(args);
    let out = sb.authctl(&all);
    assert!(
        out.status.success(),
        "pi-authctl {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("accounts --json prints JSON")
}

/// The account ids listed, the active one marked with `*`.
fn listed(v: &Value) -> Vec<String> {
    v["accounts"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            let mark = if a["active"] == true { "*" } else { "" };
            format!("{mark}{}", a["account_id"].as_str().unwrap_or_default())
        })
        .collect()
}

fn shelf(sb: &Sandbox) -> PathBuf {
    sb.home().join(".local/share/piauthd/accounts")
}

fn account_in(auth: &Path) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(auth).unwrap()).unwrap();
    v["openai-codex"]["accountId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn start(sb: &Sandbox, mock: &MockOpenAi) -> Daemon {
    let (issuer, base) = (mock.issuer(), mock.codex_base());
    Daemon::start_with(sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CODEX_BASE_URL", &base);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_adds_an_account_that_use_remove_and_a_restart_keep() {
    let (mock, sb) = two_accounts(MockConfig {
        // Short tokens: both keepers refresh on their own while we watch.
        expires_in: 6,
        ..MockConfig::default()
    })
    .await;
    let mut daemon = start(&sb, &mock);
    assert_eq!(listed(&accounts_json(&sb, &[])), ["*acc-a"]);

    // A login as B adds B, active, and keeps A in piauthd's own store.
    let s = device_login(&sb.socket()).await;
    assert_eq!(s.account_id, "acc-b");
    assert_eq!(s.kept, "a@example.com", "the login says A is kept");
    assert_eq!(listed(&accounts_json(&sb, &[])), ["*acc-b", "acc-a"]);
    assert_eq!(account_in(&sb.auth_file()), "acc-b", "pi sees one login: B");
    let a_file = shelf(&sb).join("acc-a.json");
    let mode = std::fs::metadata(&a_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", a_file.display());
    assert_eq!(
        std::fs::metadata(shelf(&sb)).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // The kept account is refreshed by its own keeper (its file changes),
    // as is the active one.
    let (a0, b0) = (stored_refresh(&a_file), stored_refresh(&sb.auth_file()));
    assert!(
        wait_until(Duration::from_secs(30), || async {
            stored_refresh(&a_file) != a0 && stored_refresh(&sb.auth_file()) != b0
        })
        .await,
        "both accounts are refreshed ahead of expiry"
    );

    // `use` moves A back into auth.json and keeps B.
    let v = accounts_json(&sb, &["use", "acc-a"]);
    assert_eq!(listed(&v), ["*acc-a", "acc-b"]);
    assert_eq!(account_in(&sb.auth_file()), "acc-a");
    assert!(!a_file.exists(), "A left the shelf");
    let b_file = shelf(&sb).join("acc-b.json");
    assert!(b_file.exists(), "B is on the shelf");
    let token = Client::connect(sb.socket())
        .await
        .unwrap()
        .get_token("", 0)
        .await
        .unwrap();
    assert_eq!(token.account_id, "acc-a", "tokens are A's now");

    // A restart keeps both accounts and the active choice.
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(30)).is_some());
    drop(daemon);
    let daemon = start(&sb, &mock);
    assert_eq!(listed(&accounts_json(&sb, &[])), ["*acc-a", "acc-b"]);

    // An unknown id is refused with what to do, and changes nothing.
    let out = sb.authctl(&["accounts", "use", "acc-zzz"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no account acc-zzz") && err.contains("pi-authctl accounts"),
        "{err}"
    );

    // Removing the active account makes the other one active.
    let v = accounts_json(&sb, &["remove", "acc-a"]);
    assert_eq!(listed(&v), ["*acc-b"]);
    assert_eq!(account_in(&sb.auth_file()), "acc-b");
    assert!(!b_file.exists() && !a_file.exists(), "the shelf is empty");

    let stats = mock.stats();
    assert_eq!(stats.reuse_attempts, 0, "no refresh token was sent twice");
    assert_eq!(stats.revocations, 0);
    drop(daemon);
}

/// A client that met a limit on its own request reports it: the session's
/// next token is the other account's, and with both limited the answer is
/// RESOURCE_EXHAUSTED naming the earliest reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_limit_moves_the_session_and_all_limited_says_when() {
    let (mock, sb) = two_accounts(MockConfig::default()).await;
    let _daemon = start(&sb, &mock);
    device_login(&sb.socket()).await;
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let first = c.session_token("s1", "", 60).await.unwrap();
    let other = if first.account_id == "acc-a" {
        "acc-b"
    } else {
        "acc-a"
    };
    assert_eq!(
        c.session_token("s1", "", 60).await.unwrap().account_id,
        first.account_id,
        "a session keeps its account"
    );
    let now = piauth_tests::fixtures::now_ms() / 1000;
    let next = c
        .report_limit("s1", &first.account_id, now + 600)
        .await
        .unwrap();
    assert_eq!(next.account_id, other, "the session moved");
    assert_eq!(
        c.session_token("s1", "", 60).await.unwrap().account_id,
        other
    );
    let e = c
        .report_limit("s1", other, now + 300)
        .await
        .expect_err("no account has room");
    assert!(
        matches!(&e, piauth_client::Error::ResourceExhausted { details, .. }
            if details["resets_at"] == (now + 300).to_string()),
        "{e:?}"
    );
    assert!(e.to_string().contains("every ChatGPT account"), "{e}");
    let unknown = c
        .report_limit("s1", "acc-zzz", 0)
        .await
        .expect_err("unknown");
    assert!(
        unknown.to_string().contains("no account acc-zzz"),
        "{unknown}"
    );
}

/// `usage --json` reports both accounts as the backend has them (one
/// without a 5-hour window), and two sessions pinned to different
/// accounts stay pinned while both have room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_lists_both_accounts_and_two_pinned_sessions_stay_apart() {
    use piauth_tests::mock::{AccountUsage, Window};
    let (mock, sb) = two_accounts(MockConfig::default()).await;
    let _daemon = start(&sb, &mock);
    device_login(&sb.socket()).await;
    let now = piauth_tests::fixtures::now_ms() / 1000;
    let window = |used: f64, minutes: u64, reset: i64| Window {
        used_percent: used,
        window_minutes: minutes,
        reset_at: now + reset,
    };
    mock.state.set_usage(
        "acc-a",
        AccountUsage {
            primary: Some(window(50.0, 300, 3_600)),
            secondary: Some(window(20.0, 10_080, 86_400)),
        },
    );
    mock.state.set_usage(
        "acc-b",
        AccountUsage {
            primary: None,
            secondary: Some(window(10.0, 10_080, 2 * 86_400)),
        },
    );
    let out = sb.authctl(&["usage", "--json", "--fresh"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_id = |id: &str| {
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {v}"))
    };
    let (a, b) = (by_id("acc-a"), by_id("acc-b"));
    assert_eq!(a["primary"]["used_percent"], 50.0, "{v}");
    assert_eq!(a["primary"]["resets_at"], now + 3_600, "{v}");
    assert_eq!(a["secondary"]["used_percent"], 20.0, "{v}");
    assert_eq!(a["plan"], "plus", "{v}");
    assert!(b["primary"].is_null(), "B's missing window is null: {v}");
    assert_eq!(b["secondary"]["used_percent"], 10.0, "{v}");
    assert_eq!(b["secondary"]["resets_at"], now + 2 * 86_400, "{v}");
    assert_eq!(b["email"], "b@example.com", "{v}");

    // A session that began on A keeps it although B has more room now; a
    // new session gets B, the most headroom; both stay where they are.
    let mut c = Client::connect(sb.socket()).await.unwrap();
    c.automatic_account().await.unwrap();
    let first = c.session_token("s-a", "", 60).await.unwrap().account_id;
    assert_eq!(first, "acc-b", "a new session gets the most headroom");
    mock.state.set_usage(
        "acc-b",
        AccountUsage {
            primary: Some(window(80.0, 300, 3_600)),
            secondary: None,
        },
    );
    let out = sb.authctl(&["usage", "--json", "--fresh"]);
    assert!(out.status.success());
    let second = c.session_token("s-b", "", 60).await.unwrap().account_id;
    assert_eq!(second, "acc-a", "A has more room now");
    for _ in 0..20 {
        assert_eq!(
            c.session_token("s-a", "", 60).await.unwrap().account_id,
            "acc-b"
        );
        assert_eq!(
            c.session_token("s-b", "", 60).await.unwrap().account_id,
            "acc-a"
        );
    }
}
