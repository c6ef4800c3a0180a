//! Failover between two ChatGPT accounts under load: the mock exhausts
//! account A while 64 GetToken clients and 8 completion streams run, each
//! in its own session. No GetToken call fails, no stream fails (a limit
//! before the first event is sent to B), the calls after the limit are
//! B's, A serves again after its reset, and no refresh token is sent twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_tests::accounts::{device_login, exhaust_a, two_accounts};
use piauth_tests::fixtures::now_ms;
use piauth_tests::mock::MockConfig;
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};

const GETTERS: usize = 64;
const STREAMERS: usize = 8;

/// What each client saw: when each call started, which account served it,
/// and the failures.
#[derive(Debug, Default)]
struct Seen {
    served: Vec<(Instant, String)>,
    failures: Vec<String>,
    streams: u64,
}

async fn add_b_and_prefer_a(sb: &Sandbox) {
    assert_eq!(device_login(&sb.socket()).await.account_id, "acc-b");
    let mut c = Client::connect(sb.socket()).await.unwrap();
    c.use_account("acc-a").await.unwrap();
}

fn spawn_getter(
    c: Client,
    session: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            match c.clone().session_token(&session, "", 60).await {
                Ok(t) => seen.lock().unwrap().served.push((started, t.account_id)),
                Err(e) => seen.lock().unwrap().failures.push(e.to_string()),
            }
            // Pacing, so 64 clients leave the 2 cores to the daemon.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

fn spawn_streamer(
    c: Client,
    session: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let req = pb::CompletionRequest {
                model: "gpt-5.1-codex-mini".into(),
                input_json: "[]".into(),
                session_id: session.clone(),
                ..Default::default()
            };
            let outcome = async {
                let mut s = c.clone().complete(req).await?;
                while s.next_text().await?.is_some() {}
                Ok::<(), piauth_client::Error>(())
            };
            match outcome.await {
                Ok(()) => seen.lock().unwrap().streams += 1,
                Err(e) => seen.lock().unwrap().failures.push(format!("stream: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limited_account_fails_over_without_a_failed_call_and_comes_back_at_its_reset() {
    let (mock, sb) = two_accounts(MockConfig {
        expires_in: 20,
        // B takes every stream after the limit: small steps keep it far
        // from its own limit.
        usage_step: 0.05,
        ..MockConfig::default()
    })
    .await;
    let (issuer, base) = (mock.issuer(), mock.codex_base());
    let daemon = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CODEX_BASE_URL", &base);
    });
    add_b_and_prefer_a(&sb).await;

    // A's 5-hour window is full until `reset`; the daemon does not know yet.
    let reset = now_ms() / 1000 + 25;
    exhaust_a(&mock, reset);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for i in 0..GETTERS {
        let c = Client::connect(sb.socket()).await.unwrap();
        tasks.push(spawn_getter(
            c,
            format!("get-{i}"),
            stop.clone(),
            seen.clone(),
        ));
    }
    // Every getter is served by A (preferred, room as far as the daemon
    // knows) before any stream runs.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let s = seen.lock().unwrap();
            s.served.iter().filter(|(_, a)| a == "acc-a").count() >= GETTERS * 2
        })
        .await,
        "the getters are served by A first"
    );
    for i in 0..STREAMERS {
        let c = Client::connect(sb.socket()).await.unwrap();
        tasks.push(spawn_streamer(
            c,
            format!("stream-{i}"),
            stop.clone(),
            seen.clone(),
        ));
    }

    // The first stream meets A's limit; the daemon says so.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            daemon.logs().contains("an account reached its usage limit")
        })
        .await,
        "the limit is noted: {}",
        daemon.logs()
    );
    let limited_at = Instant::now();
    let served_by_a_at_limit = mock.state.charged("acc-a").served;
    let after = |s: &Seen| s.served.iter().filter(|(t, _)| *t > limited_at).count();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            after(&seen.lock().unwrap()) >= GETTERS * 3
        })
        .await,
        "the getters keep being served"
    );
    {
        let s = seen.lock().unwrap();
        let on_a: Vec<_> = s
            .served
            .iter()
            .filter(|(t, a)| *t > limited_at && a == "acc-a")
            .collect();
        assert!(
            on_a.is_empty(),
            "{} calls after the limit went to A",
            on_a.len()
        );
    }

    // After A's reset, a new session is A's again (it is preferred). Each
    // try is a new session: one that began while A was limited stays with
    // B while B has room, as pins do.
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let tries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    assert!(
        wait_until(Duration::from_secs(60), || {
            let (mut c, tries) = (c.clone(), tries.clone());
            async move {
                let n = tries.fetch_add(1, Ordering::Relaxed) + 1;
                c.session_token(&format!("after-reset-{n}"), "", 60)
                    .await
                    .is_ok_and(|t| t.account_id == "acc-a")
            }
        })
        .await,
        "A serves again after its reset"
    );
    assert!(now_ms() / 1000 >= reset, "not before the reset");
    let session = format!("after-reset-{}", tries.load(Ordering::Relaxed));
    let mut after_reset = c
        .complete(pb::CompletionRequest {
            model: "gpt-5.1-codex-mini".into(),
            input_json: "[]".into(),
            session_id: session,
            ..Default::default()
        })
        .await
        .unwrap();
    while after_reset.next_text().await.unwrap().is_some() {}

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let s = seen.lock().unwrap();
    assert!(s.failures.is_empty(), "failures: {:?}", s.failures);
    assert!(s.streams >= STREAMERS as u64, "{} streams", s.streams);
    let (a, b) = (mock.state.charged("acc-a"), mock.state.charged("acc-b"));
    assert!(a.refused >= 1, "A's limit refused the first stream: {a:?}");
    assert_eq!(b.refused, 0, "B was never refused");
    assert_eq!(
        a.served,
        served_by_a_at_limit + 1,
        "A served again only after its reset"
    );
    let stats = mock.stats();
    assert_eq!(stats.reuse_attempts, 0, "no refresh token was sent twice");
    assert_eq!(stats.revocations, 0);
    assert!(
        stats.refreshes >= 2,
        "both accounts were refreshed meanwhile"
    );
    eprintln!(
        "failover: {} GetToken answers ({} after the limit, all B's), {} streams, {} refused by A's limit, {} served by B, {} refreshes",
        s.served.len(),
        after(&s),
        s.streams,
        a.refused,
        b.served,
        stats.refreshes
    );
}
