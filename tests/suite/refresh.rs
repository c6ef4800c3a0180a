//! The refresh broker against the mock issuer: single flight, refresh
//! ahead, cross-process coordination, and the fault matrix.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_tests::daemon::{codex_status, read_auth, stored_refresh};
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi, TokenSet};
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};

async fn mock(expires_in: u64) -> MockOpenAi {
    MockOpenAi::start(MockConfig {
        expires_in,
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

fn seed(sb: &Sandbox, mock: &MockOpenAi) -> TokenSet {
    let set = mock.state.seed_login("acc-7", "seven@example.com", "pro");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    set
}

/// Writes a login whose access token has already expired on disk.
fn seed_expired(sb: &Sandbox, mock: &MockOpenAi) -> TokenSet {
    let set = seed(sb, mock);
    let mut doc = read_auth(&sb.auth_file()).unwrap();
    doc["openai-codex"]["expires"] = (piauth_tests::fixtures::now_ms() - 1000).into();
    std::fs::write(sb.auth_file(), serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_callers_at_expiry_cause_exactly_one_refresh() {
    let mock = mock(3600).await;
    let sb = Sandbox::new();
    let old = seed_expired(&sb, &mock);
    // Keep the refresh in flight while every caller arrives.
    mock.state.set_token_delay(Duration::from_millis(400));
    let _d = Daemon::start_against(&sb, &mock.issuer());

    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(Client::connect(sb.socket()).await.unwrap());
    }
    let calls = (0..500).map(|i| {
        let mut c = clients[i % clients.len()].clone();
        tokio::spawn(async move { c.get_token("openai-codex", 60).await })
    });
    let results = futures_util::future::join_all(calls).await;
    let tokens: HashSet<String> = results
        .into_iter()
        .map(|r| r.unwrap().expect("every caller gets a token").access_token)
        .collect();
    assert_eq!(tokens.len(), 1, "all 500 callers got the same token");
    let token = tokens.into_iter().next().unwrap();
    assert_ne!(token, old.access_token, "and it is the new one");
    assert!(mock.state.access_token_live(&token));
    let stats = mock.stats();
    assert_eq!(stats.refreshes, 1, "{stats:?}");
    assert_eq!(stats.token_requests, 1, "{stats:?}");
    assert_eq!(stats.reuse_attempts, 0);
    // Durable: the rotated refresh token is on disk.
    let on_disk = stored_refresh(&sb.auth_file()).unwrap();
    assert!(mock.state.is_live_refresh(&on_disk));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_ahead_of_expiry_and_keeps_pi_format() {
    let mock = mock(4).await;
    let sb = Sandbox::new();
    sb.write_auth(
        "{\n  \"openai\": {\n    \"type\": \"api_key\",\n    \"key\": \"sk-keep\"\n  }\n}",
    );
    let first = seed(&sb, &mock);
    let _d = Daemon::start_against(&sb, &mock.issuer());
    let mut c = Client::connect(sb.socket()).await.unwrap();

    // A 4 s token is refreshed at half-life, before it expires, without
    // any caller asking.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            mock.stats().refreshes >= 3
        })
        .await
    );
    let t = c.get_token("", 0).await.unwrap();
    assert_ne!(t.access_token, first.access_token);
    let left = t.expires_at_ms - piauth_tests::fixtures::now_ms();
    assert!(
        left > 1000,
        "served tokens keep most of their life ({left} ms)"
    );
    // The daemon counts a refresh once it is saved, just after the issuer did.
    let mut st = codex_status(&mut c).await;
    for _ in 0..100 {
        if st.refresh_count >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        st = codex_status(&mut c).await;
    }
    assert!(st.refresh_count >= 3, "{st:?}");
    assert!(st.next_refresh_ms > st.last_refresh_ms);
    // Against the expiry of the same snapshot: the 2 s schedule may have
    // rotated the token since `t` was served.
    assert!(
        st.next_refresh_ms < st.expires_at_ms,
        "scheduled before expiry: {st:?}"
    );

    let doc = read_auth(&sb.auth_file()).unwrap();
    assert_eq!(doc["openai"]["key"], "sk-keep", "other providers are kept");
    assert_eq!(doc["openai-codex"]["accountId"], "acc-7");
    let text = std::fs::read_to_string(sb.auth_file()).unwrap();
    assert!(
        text.starts_with("{\n  \"openai\"") && !text.ends_with('\n'),
        "pi's format"
    );
    assert_eq!(mock.stats().reuse_attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_every_new_token_and_refresh_forces_one() {
    let mock = mock(3600).await;
    let sb = Sandbox::new();
    let first = seed(&sb, &mock);
    let _d = Daemon::start_against(&sb, &mock.issuer());
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let mut watch = c
        .auth()
        .watch_token(pb::WatchTokenRequest::default())
        .await
        .unwrap()
        .into_inner();
    let t0 = watch.message().await.unwrap().unwrap();
    assert_eq!(t0.access_token, first.access_token);

    let forced = c
        .auth()
        .refresh(pb::RefreshRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_ne!(forced.access_token, first.access_token);
    let t1 = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(t1.access_token, forced.access_token);
    assert_eq!(mock.stats().refreshes, 1);

    let out = sb.authctl(&["refresh"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t2 = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_ne!(t2.access_token, t1.access_token);
    assert_eq!(mock.stats().refreshes, 2);
}

/// Two daemons on two sockets share one auth.json: each expiry cycle is
/// refreshed once, by whichever gets pi's lock first; the other adopts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_share_one_auth_json_for_fifty_cycles() {
    let mock = mock(1).await;
    let sb = Sandbox::new();
    seed(&sb, &mock);
    let other_socket = sb.dir.path().join("run2").join("piauthd.sock");
    let _a = Daemon::start_against(&sb, &mock.issuer());
    let other = other_socket.clone();
    let issuer = mock.issuer();
    let _b = Daemon::start_with(&sb, move |cmd| {
        cmd.env("PIAUTHD_SOCKET", &other)
            .env("PIAUTHD_ISSUER", &issuer);
    });
    let mut a = Client::connect(sb.socket()).await.unwrap();
    let mut b = Client::connect(&other_socket).await.unwrap();

    let started = Instant::now();
    let mut served = 0u32;
    while mock.stats().refreshes < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "too slow: {:?}",
            mock.stats()
        );
        for c in [&mut a, &mut b] {
            let t = c.get_token("", 0).await.expect("both daemons always serve");
            assert!(mock.state.access_token_live(&t.access_token));
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let stats = mock.stats();
    assert_eq!(stats.reuse_attempts, 0, "{stats:?}");
    assert_eq!(stats.revocations, 0, "{stats:?}");
    assert_eq!(
        stats.token_requests, stats.refreshes,
        "no wasted or failed requests: {stats:?}"
    );
    // Each 1 s token is refreshed at half-life: about two per second in all,
    // not two per second per daemon.
    let secs = started.elapsed().as_secs_f64();
    assert!(
        (stats.refreshes as f64) < secs * 2.0 + 4.0,
        "{} refreshes in {secs:.1} s means the daemons duplicated work",
        stats.refreshes
    );
    let sa = codex_status(&mut a).await;
    let sbs = codex_status(&mut b).await;
    assert!(
        sa.refresh_count > 0 && sbs.refresh_count > 0,
        "both took turns: {} / {}",
        sa.refresh_count,
        sbs.refresh_count
    );
    assert!(served > 100);
    assert!(
        mock.state
            .is_live_refresh(&stored_refresh(&sb.auth_file()).unwrap())
    );
}

/// The refresh lead: 35 minutes by default (before pi's own refresh at 30),
/// set by the config file, overridden by the environment, and a bad value
/// stops the daemon with an error naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_lead_defaults_to_35_minutes_and_is_configurable() {
    let mock = mock(3 * 3600).await;
    let sb = Sandbox::new();
    seed(&sb, &mock);
    let ahead = |st: &pb::ProviderStatus| st.expires_at_ms - st.next_refresh_ms;
    {
        let _d = Daemon::start_against(&sb, &mock.issuer());
        let mut c = Client::connect(sb.socket()).await.unwrap();
        let st = codex_status(&mut c).await;
        assert_eq!(ahead(&st), 35 * 60 * 1000, "{st:?}");
    }
    let conf = sb.dir.path().join("config").join("piauthd");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("config.toml"), "refresh_lead_secs = 3000\n").unwrap();
    {
        let _d = Daemon::start_against(&sb, &mock.issuer());
        let mut c = Client::connect(sb.socket()).await.unwrap();
        let st = codex_status(&mut c).await;
        assert_eq!(ahead(&st), 3000 * 1000, "the config file: {st:?}");
    }
    {
        let issuer = mock.issuer();
        let _d = Daemon::start_with(&sb, move |cmd| {
            cmd.env("PIAUTHD_ISSUER", &issuer)
                .env("PIAUTHD_REFRESH_LEAD_SECS", "600");
        });
        let mut c = Client::connect(sb.socket()).await.unwrap();
        let st = codex_status(&mut c).await;
        assert_eq!(ahead(&st), 600 * 1000, "the environment wins: {st:?}");
    }
    for (env, flag) in [("0", None), ("600", Some("86401"))] {
        let mut cmd = sb.command("piauthd");
        cmd.env("PIAUTHD_REFRESH_LEAD_SECS", env);
        if let Some(v) = flag {
            cmd.arg("--refresh-lead-secs").arg(v);
        }
        let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("refresh_lead_secs"), "{err}");
    }
    assert_eq!(mock.stats().refreshes, 0);
}
