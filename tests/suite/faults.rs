//! The fault matrix: each upstream failure leads to the state it must, and
//! nothing is lost.

use std::time::Duration;

use piauth_client::proto::v1 as pb;
use piauth_client::{Client, Error, Reason};
use piauth_tests::daemon::{codex_status as codex, read_auth, stored_refresh};
use piauth_tests::fixtures::{now_ms, write_codex_login};
use piauth_tests::mock::{Fault, MockConfig, MockOpenAi, TokenSet};
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};

/// A daemon whose 20 s token is due for refresh at once (half-life 10 s,
/// 9 s left), with `faults` queued for the issuer.
async fn setup(faults: Vec<Fault>) -> (MockOpenAi, Sandbox, TokenSet, Daemon, Client) {
    let mock = MockOpenAi::start(MockConfig {
        expires_in: 20,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-f", "f@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let mut doc = read_auth(&sb.auth_file()).unwrap();
    doc["openai-codex"]["expires"] = (now_ms() + 9_000).into();
    std::fs::write(sb.auth_file(), serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    mock.state.push_faults(faults);
    let d = Daemon::start_against(&sb, &mock.issuer());
    let c = Client::connect(sb.socket()).await.unwrap();
    (mock, sb, set, d, c)
}

/// Waits until the default provider's status satisfies `pred`.
async fn wait_codex(
    c: &Client,
    limit: Duration,
    pred: impl Fn(&pb::ProviderStatus) -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let mut c = c.clone();
    while std::time::Instant::now() < deadline {
        if pred(&codex(&mut c).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// After an unknown outcome or a terminal refusal, a call that asks for
/// more than the token has left (which would join a refresh, and return
/// only once it is done) is answered without one: with the token it still
/// has, or an error, and the issuer hears nothing. That the schedule never
/// re-sends either is
/// `broker::paused_tests::a_parked_token_is_never_sent_again_by_the_schedule`,
/// over hours of virtual time: no wall-clock window is waited out here.
async fn nothing_resent(c: &Client, mock: &MockOpenAi, what: &str) {
    let before = mock.stats();
    let asked = c.clone().get_token("", 3600).await;
    let after = mock.stats();
    assert_eq!(
        (after.token_requests, after.reuse_attempts),
        (before.token_requests, before.reuse_attempts),
        "{what}: nothing re-sent (the call answered {asked:?}): {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_back_off_while_the_token_is_served() {
    let (mock, sb, set, _d, mut c) = setup(vec![
        Fault::Status { code: 503 },
        Fault::Status { code: 500 },
        Fault::Status { code: 429 },
    ])
    .await;
    // While failing, callers still get the valid token.
    assert!(
        wait_until(Duration::from_secs(3), || async {
            mock.stats().token_requests >= 1
        })
        .await
    );
    let t = c.get_token("", 0).await.unwrap();
    assert_eq!(t.access_token, set.access_token);
    // The mock counts a request when it arrives; the daemon reports the
    // failure once it has read the answer, so wait for the report.
    assert!(
        wait_codex(&c, Duration::from_secs(3), |st| !st.last_error.is_empty()).await,
        "the failure is reported"
    );
    // Backoff (about 1 s, 2 s, 4 s with jitter), then success.
    assert!(
        wait_until(Duration::from_secs(12), || async {
            mock.stats().refreshes == 1
        })
        .await
    );
    let stats = mock.stats();
    assert_eq!(
        stats.token_requests, 4,
        "3 failures and 1 success, no storm: {stats:?}"
    );
    assert_eq!(stats.reuse_attempts, 0);
    assert!(wait_codex(&c, Duration::from_secs(2), |st| st.last_error.is_empty()).await);
    assert!(
        mock.state
            .is_live_refresh(&stored_refresh(&sb.auth_file()).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_issuer_is_waited_for_and_the_lock_kept_fresh() {
    let (mock, sb, set, _d, mut c) = setup(vec![Fault::Delay { ms: 4_000 }]).await;
    let lock = piauthd::lock_path(&sb.auth_file()).unwrap();
    assert!(wait_until(Duration::from_secs(3), || async { lock.exists() }).await);
    // Past pi's 10 s reader limit would need longer; what matters is that
    // the heartbeat keeps touching the lock, far from any stale limit. Each
    // turn waits for the next touch (the mtime moves), not for a time.
    let mtime = || std::fs::metadata(&lock).and_then(|m| m.modified()).ok();
    let mut last = mtime();
    for _ in 0..3 {
        let touched = wait_until(Duration::from_secs(3), || async { mtime() != last }).await;
        assert!(touched, "the heartbeat touches the lock within its period");
        last = mtime();
        assert_eq!(
            codex(&mut c).await.state,
            pb::ProviderState::Refreshing as i32
        );
        // The current token is served meanwhile.
        assert_eq!(
            c.get_token("", 0).await.unwrap().access_token,
            set.access_token
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || async {
            mock.stats().refreshes == 1
        })
        .await
    );
    assert!(wait_until(Duration::from_secs(2), || async { !lock.exists() }).await);
    assert_eq!(
        mock.stats().token_requests,
        1,
        "a slow refresh is never re-sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_sending_is_never_resent() {
    let (mock, sb, set, _d, mut c) = setup(vec![Fault::ResetAfter]).await;
    assert!(
        wait_codex(&c, Duration::from_secs(5), |st| st.state
            == pb::ProviderState::NeedsLogin as i32)
        .await
    );
    let st = codex(&mut c).await;
    assert!(st.hint.contains("pi-authctl refresh"), "{}", st.hint);
    // The issuer did rotate; the daemon cannot know, so it stops.
    assert!(mock.state.is_spent(&set.refresh_token));
    nothing_resent(&c, &mock, "a reset after sending").await;
    let stats = mock.stats();
    assert_eq!(
        (stats.token_requests, stats.reuse_attempts),
        (1, 0),
        "{stats:?}"
    );
    // The still-valid access token is served, and the credential is kept.
    assert_eq!(
        c.get_token("", 0).await.unwrap().access_token,
        set.access_token
    );
    assert_eq!(stored_refresh(&sb.auth_file()).unwrap(), set.refresh_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_sending_can_be_retried_by_the_user() {
    let (mock, _sb, _set, _d, mut c) = setup(vec![Fault::ResetBefore]).await;
    assert!(
        wait_codex(&c, Duration::from_secs(5), |st| st.state
            == pb::ProviderState::NeedsLogin as i32)
        .await
    );
    assert_eq!(mock.stats().token_requests, 1);
    let t = c
        .auth()
        .refresh(pb::RefreshRequest::default())
        .await
        .expect("an explicit refresh retries")
        .into_inner();
    assert!(mock.state.access_token_live(&t.access_token));
    let stats = mock.stats();
    assert_eq!((stats.refreshes, stats.reuse_attempts), (1, 0));
    assert_eq!(codex(&mut c).await.state, pb::ProviderState::Valid as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_errors_need_login_and_keep_the_credential() {
    for fault in [
        Fault::InvalidGrant,
        Fault::Terminal {
            code: "refresh_token_expired".into(),
        },
        Fault::Terminal {
            code: "refresh_token_invalidated".into(),
        },
        Fault::Terminal {
            code: "refresh_token_reused".into(),
        },
    ] {
        let (mock, sb, set, _d, mut c) = setup(vec![fault.clone()]).await;
        let before = std::fs::read(sb.auth_file()).unwrap();
        assert!(
            wait_codex(&c, Duration::from_secs(5), |st| st.state
                == pb::ProviderState::NeedsLogin as i32)
            .await,
            "{fault:?}"
        );
        let e = c.get_token("", 0).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Unauthenticated {
                    reason: Reason::NeedsLogin,
                    ..
                }
            ),
            "{fault:?}: {e:?}"
        );
        assert!(e.to_string().contains("pi-authctl login"));
        assert_eq!(sb.authctl(&["token"]).status.code(), Some(4));
        nothing_resent(&c, &mock, &format!("{fault:?}")).await;
        assert_eq!(
            mock.stats().token_requests,
            1,
            "{fault:?}: the issuer is not called again"
        );
        assert_eq!(
            std::fs::read(sb.auth_file()).unwrap(),
            before,
            "{fault:?}: credential kept"
        );
        drop(set);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presenting_a_spent_token_is_reuse_and_needs_login() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-r", "r@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let mut doc = read_auth(&sb.auth_file()).unwrap();
    doc["openai-codex"]["expires"] = (now_ms() - 1).into();
    std::fs::write(sb.auth_file(), serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    // Some other client spends the token and never writes the new one back.
    assert!(mock.state.spend(&set.refresh_token).is_some());

    let _d = Daemon::start_against(&sb, &mock.issuer());
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let e = c.get_token("", 0).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unauthenticated {
                reason: Reason::NeedsLogin,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("refresh_token_reused"), "{e}");
    let stats = mock.stats();
    assert_eq!(
        (stats.reuse_attempts, stats.revocations),
        (1, 1),
        "{stats:?}"
    );
    nothing_resent(&c, &mock, "a spent token").await;
    assert_eq!(mock.stats().token_requests, 1, "never called again");
    assert_eq!(stored_refresh(&sb.auth_file()).unwrap(), set.refresh_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_refresh_saves_the_new_token_before_exiting() {
    let (mock, sb, set, mut d, _c) = setup(vec![Fault::Delay { ms: 1_500 }]).await;
    assert!(
        wait_until(Duration::from_secs(3), || async {
            mock.stats().token_requests == 1
        })
        .await
    );
    d.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || {
        let s = d.wait_exit(Duration::from_secs(20));
        (s, d)
    })
    .await
    .unwrap();
    let (exit, d) = status;
    assert!(exit.expect("exits").success(), "{}", d.logs());
    assert_eq!(
        mock.stats().refreshes,
        1,
        "the refresh in flight was completed"
    );
    let stored = stored_refresh(&sb.auth_file()).unwrap();
    assert_ne!(stored, set.refresh_token);
    assert!(mock.state.is_live_refresh(&stored), "and saved before exit");
    assert!(!sb.socket().exists());
}

/// A gateway's answer (502, 504, a CDN's 52x) or a 5xx that is not the
/// issuer's own JSON error may come after the issuer rotated the token
/// behind it: the outcome is unknown, and the token is never re-sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_error_after_the_rotation_is_never_resent() {
    for fault in [
        Fault::GatewayAfterRotate { code: 504 },
        Fault::GatewayAfterRotate { code: 524 },
        Fault::Gateway { code: 502 },
        Fault::Gateway { code: 500 },
    ] {
        let (mock, sb, set, _d, mut c) = setup(vec![fault.clone()]).await;
        assert!(
            wait_codex(&c, Duration::from_secs(5), |st| st.state
                == pb::ProviderState::NeedsLogin as i32)
            .await,
            "{fault:?}"
        );
        let st = codex(&mut c).await;
        assert!(
            st.hint.contains("pi-authctl refresh"),
            "{fault:?}: {}",
            st.hint
        );
        if matches!(fault, Fault::GatewayAfterRotate { .. }) {
            assert!(mock.state.is_spent(&set.refresh_token), "{fault:?}");
        }
        nothing_resent(&c, &mock, &format!("{fault:?}")).await;
        let stats = mock.stats();
        assert_eq!(
            (stats.token_requests, stats.reuse_attempts),
            (1, 0),
            "{fault:?}: nothing re-sent: {stats:?}"
        );
        // The still-valid access token is served, the credential kept.
        assert_eq!(
            c.get_token("", 0).await.unwrap().access_token,
            set.access_token
        );
        assert_eq!(stored_refresh(&sb.auth_file()).unwrap(), set.refresh_token);
    }
}
