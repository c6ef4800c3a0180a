//! The real pi (npm `@mariozechner/pi-coding-agent@0.73.1`) beside piauthd.
//!
//! Several Node processes call pi's own `AuthStorage.getApiKey("openai-codex")`
//! on the same `auth.json` while piauthd refreshes it, with tokens that
//! expire every 2 s. pi's token URL is redirected to the mock. The issuer
//! must see no reused refresh token, every pi call must get a valid token,
//! and the file must parse at every moment.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use piauth_client::Client;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::{Daemon, Sandbox};

const PI_PROCESSES: usize = 4;
const RUN_MS: u64 = 24_000;
const LIFETIME_SECS: u64 = 2;

fn interop_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/pi-interop"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_pi_processes_share_the_login_with_zero_reuse() {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules/@mariozechner/pi-coding-agent")
            .exists(),
        "pi is not installed: run the suite with `tests/run` (it runs `npm ci` in {})",
        dir.display()
    );
    let mock = MockOpenAi::start(MockConfig {
        expires_in: LIFETIME_SECS,
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
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, bad_reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let watcher = {
        let (stop, reads, bad) = (stop.clone(), reads.clone(), bad_reads.clone());
        let path = sb.auth_file();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let ok = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|v| v["openai-codex"]["refresh"].is_string());
                reads.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let node = std::env::var("PIAUTHD_TEST_NODE").unwrap_or_else(|_| "node".into());
    let children: Vec<_> = (0..PI_PROCESSES)
        .map(|_| {
            Command::new(&node)
                .current_dir(&dir)
                .arg("pi-client.mjs")
                .arg(sb.agent_dir())
                .arg(mock.issuer())
                .arg(RUN_MS.to_string())
                .arg("100")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {node}: {e}"))
        })
        .collect();
    let outputs: Vec<_> = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();

    let mut calls = 0;
    let mut redirected = 0;
    for out in &outputs {
        assert!(
            out.status.success(),
            "pi client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in BufReader::new(&out.stdout[..]).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
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
    }
    let stats = mock.stats();
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let daemon_refreshes = c.status().await.unwrap().providers[0].refresh_count;
    eprintln!(
        "pi interop: {calls} pi calls, {} refreshes ({daemon_refreshes} by piauthd), \
         {} pi token requests, {} file reads, {:?}",
        stats.refreshes,
        redirected,
        reads.load(Ordering::Relaxed),
        stats
    );
    assert_eq!(stats.reuse_attempts, 0, "{stats:?}");
    assert_eq!(stats.revocations, 0, "{stats:?}");
    assert!(
        stats.refreshes >= 20,
        "at least 20 expiry cycles: {stats:?}"
    );
    assert_eq!(
        bad_reads.load(Ordering::Relaxed),
        0,
        "auth.json always parsed"
    );
    assert!(calls > 500, "{calls}");
    // Refreshing ahead means pi never needed to refresh on its own.
    assert_eq!(redirected, 0, "pi called the token endpoint itself");
    assert_eq!(u64::from(daemon_refreshes), stats.refreshes);
}
