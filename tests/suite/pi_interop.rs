//! The real pi beside piauthd, both lines: the legacy 0.73.1
//! (`@mariozechner/pi-coding-agent`, tests/pi-interop) and the current 1.6.0
//! (`@earendil-works/pi-coding-agent`, tests/pi-current, on Node 22).
//!
//! Several Node processes call pi's own credential code for `openai-codex` on
//! the same `auth.json` while piauthd refreshes it. The issuer must see no
//! reused refresh token, every pi call must get a valid token, pi must never
//! call the token endpoint itself, and the file must parse at every moment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use piauth_client::Client;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::proxy::RefusingProxy;
use piauth_tests::{Daemon, Sandbox};

use crate::pi_harness::{
    FileWatch, PROVIDER, current_client, current_node, legacy_client, legacy_node, lines,
    percentile, run_all,
};

const LEGACY_PROCESSES: usize = 4;
const LEGACY_RUN_MS: u64 = 24_000;
const LEGACY_LIFETIME_SECS: u64 = 2;

/// pi 0.73.1 refreshes only at expiry, so 2 s tokens make piauthd refresh
/// ahead of it about every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_pi_processes_share_the_login_with_zero_reuse() {
    let node = legacy_node();
    let mock = MockOpenAi::start(MockConfig {
        expires_in: LEGACY_LIFETIME_SECS,
        atob_safe_jwt: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-pi", "pi@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let _d = Daemon::start_against(&sb, &mock.issuer());

    // Watch the file the whole time: every read must parse.
    let watch = FileWatch::start(sb.auth_file());
    let outputs = run_all(LEGACY_PROCESSES, || {
        legacy_client(&node, &sb.agent_dir(), &mock.issuer(), LEGACY_RUN_MS, 100)
    })
    .await;
    let (reads, bad_reads) = watch.finish();

    let mut calls = 0;
    let mut redirected = 0;
    for v in lines(&outputs) {
        if v["done"] == true {
            redirected += v["redirected"].as_u64().unwrap();
            continue;
        }
        assert!(v["error"].is_null(), "a pi call failed: {v}");
        let key = v["key"].as_str().unwrap();
        let t = v["t"].as_i64().unwrap();
        assert!(
            mock.state.access_token_valid_at(key, t),
            "pi handed out a token that was not valid at {t} (issued {:?} ms before)",
            mock.state.issued_at(key).map(|at| t - at)
        );
        calls += 1;
    }
    // The daemon still refreshes while the counts are read: the issuer
    // counts a refresh when it rotates, the daemon once it has stored the
    // answer. Read the daemon before and after the issuer, so the one
    // refresh that may be between the two is allowed for exactly.
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let daemon_before = c.status().await.unwrap().providers[0].refresh_count;
    let stats = mock.stats();
    let daemon_refreshes = c.status().await.unwrap().providers[0].refresh_count;
    eprintln!(
        "pi 0.73.1 interop: {calls} pi calls, {} refreshes ({daemon_refreshes} by piauthd), \
         {redirected} pi token requests, {reads} file reads, {stats:?}",
        stats.refreshes,
    );
    assert_eq!(stats.reuse_attempts, 0, "{stats:?}");
    assert_eq!(stats.revocations, 0, "{stats:?}");
    assert!(
        stats.refreshes >= 20,
        "at least 20 expiry cycles: {stats:?}"
    );
    assert_eq!(bad_reads, 0, "auth.json always parsed");
    assert!(calls > 500, "{calls}");
    // Refreshing ahead means pi never needed to refresh on its own.
    assert_eq!(redirected, 0, "pi called the token endpoint itself");
    assert!(
        u64::from(daemon_before) <= stats.refreshes
            && stats.refreshes <= u64::from(daemon_refreshes) + 1,
        "every rotation the issuer made is one piauthd stored: piauthd {daemon_before} then \
         {daemon_refreshes}, the issuer {}",
        stats.refreshes
    );
}

const CURRENT_PROCESSES: usize = 4;
const CURRENT_RUN_MS: u64 = 25_000;
const CURRENT_INTERVAL_MS: u64 = 50;
/// Long enough that the file always holds more than pi 1.6.0's 5 minutes.
const CURRENT_LIFETIME_SECS: u64 = 3600;
/// How often the test makes piauthd refresh through the `Refresh` RPC.
const FORCED_REFRESH_EVERY: Duration = Duration::from_secs(1);

/// pi 1.6.0 (`ModelRuntime.getAuth`, pi's file store and lock) refreshes
/// when less than 5 minutes are left. With hour-long tokens it must never
/// need to, while piauthd rotates the login every second (forced through
/// the `Refresh` RPC) and every pi process re-reads the file under pi's lock
/// after each write. pi's token URL is hard-coded, so its HTTP goes through
/// a proxy that refuses and counts: any refresh by pi fails and is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pi_1_6_processes_share_the_login_while_piauthd_rotates_it() {
    let node = current_node();
    let mock = MockOpenAi::start(MockConfig {
        expires_in: CURRENT_LIFETIME_SECS,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let set = mock
        .state
        .seed_login("acc-pi16", "pi16@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let _d = Daemon::start_against(&sb, &mock.issuer());
    let proxy = RefusingProxy::start();
    let proxy_url = proxy.url();

    let watch = FileWatch::start(sb.auth_file());
    // Force a daemon refresh every second while the pi processes read.
    let stop = Arc::new(AtomicBool::new(false));
    let refresher = {
        let (stop, socket) = (stop.clone(), sb.socket());
        tokio::spawn(async move {
            let mut c = Client::connect(&socket).await.unwrap();
            let mut forced = 0u64;
            let mut tick = tokio::time::interval(FORCED_REFRESH_EVERY);
            tick.tick().await;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                c.refresh(PROVIDER).await.expect("a forced refresh failed");
                forced += 1;
            }
            forced
        })
    };
    let outputs = run_all(CURRENT_PROCESSES, || {
        current_client(
            &node,
            &sb.agent_dir(),
            &proxy_url,
            CURRENT_RUN_MS,
            CURRENT_INTERVAL_MS,
        )
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let forced = refresher.await.unwrap();
    let (reads, bad_reads) = watch.finish();

    // Every access token the mock issued, oldest first.
    let mut issued: Vec<(i64, String)> = mock
        .state
        .issued_access_tokens()
        .into_iter()
        .map(|k| (mock.state.issued_at(&k).unwrap(), k))
        .collect();
    issued.sort();

    let mut calls = 0usize;
    let mut behind = 0usize;
    let mut millis = Vec::new();
    for v in lines(&outputs) {
        if v["done"] == true {
            continue;
        }
        assert!(v["error"].is_null(), "a pi call failed: {v}");
        let key = v["key"].as_str().unwrap();
        let t = v["t"].as_i64().unwrap();
        let at = issued
            .iter()
            .position(|(_, k)| k == key)
            .unwrap_or_else(|| panic!("pi handed out a token the mock never issued: {v}"));
        // Tokens issued by the time the call returned: pi's must be the
        // newest of them or the one before (a write pi had not seen yet).
        let known = issued.iter().take_while(|(i, _)| *i <= t).count();
        assert!(
            at < known && at + 2 >= known,
            "at {t} pi handed out token #{at}, but #{} was the newest",
            known.saturating_sub(1)
        );
        assert!(mock.state.access_token_valid_at(key, t), "{v}");
        if at + 1 < known {
            behind += 1;
        }
        millis.push(v["ms"].as_f64().unwrap());
        calls += 1;
    }
    millis.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&millis, p);
    let stats = mock.stats();
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let daemon_refreshes = u64::from(c.status().await.unwrap().providers[0].refresh_count);
    let proxied = proxy.requests();
    let to_issuer = proxied
        .iter()
        .filter(|r| r.contains("auth.openai.com"))
        .count();
    eprintln!(
        "pi 1.6.0 interop: {calls} pi calls from {CURRENT_PROCESSES} processes, {} issuer refreshes \
         ({daemon_refreshes} by piauthd, {forced} forced), {behind} calls got the previous token, \
         getAuth ms p50 {:.2} p99 {:.2} max {:.2}, {} proxy connections ({to_issuer} to auth.openai.com), \
         {reads} file reads, {stats:?}",
        stats.refreshes,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        proxied.len(),
    );
    assert_eq!(to_issuer, 0, "pi tried to refresh by itself: {proxied:?}");
    assert_eq!(stats.reuse_attempts, 0, "{stats:?}");
    assert_eq!(stats.revocations, 0, "{stats:?}");
    assert_eq!(stats.refreshes, daemon_refreshes, "{stats:?}");
    assert_eq!(
        stats.refreshes, forced,
        "only the forced refreshes: {stats:?}"
    );
    assert!(stats.refreshes >= 10, "at least 10 refreshes: {stats:?}");
    assert_eq!(bad_reads, 0, "auth.json always parsed");
    assert!(calls > 500, "{calls}");
}
