//! A slow issuer must not stall pi: pi beside piauthd, while piauthd waits
//! 12 s for each refresh, must fare no worse than pi alone.
//!
//! Each test runs one pi line twice on the same `auth.json` of hour-long
//! tokens, with the same load: a few long-lived pi processes calling pi's
//! credential code every 50 ms, and a series of cold starts (one call
//! each) while they run. First pi alone, with no daemon: the baseline.
//! Then beside piauthd, whose issuer answers after 12 s, while the test
//! forces refreshes back to back. A token with an hour left gives piauthd no
//! reason to hold pi's lock across the round trip; if it does, pi's calls
//! wait for it and pi's cold starts give up on it. pi 1.6.0 re-reads the
//! file under the lock (waiting up to 30 s) on any call after it changed,
//! so once the first refresh has written, its calls wait out the next one.
//! pi 0.73.1 reads the file under the lock only at start-up (and when it
//! refreshes itself), retrying for about 200 ms, then starts with no login.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use piauth_client::Client;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::proxy::RefusingProxy;
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};
use tokio::time::Instant;

use crate::pi_harness::{
    FileWatch, PROVIDER, current_client, current_node, legacy_client, legacy_node, lines,
    parse_lines, percentile, run_all, spawn_piped, wait_all,
};

/// Long-lived pi processes per phase.
const SESSIONS: usize = 3;
const INTERVAL_MS: u64 = 50;
/// Single-call pi processes per phase, started while the sessions run.
const COLD_STARTS: usize = 12;
/// Far more than pi 1.6.0's 5-minute margin: pi never needs to refresh,
/// and piauthd has no hurry either.
const LIFETIME_SECS: u64 = 3600;
const ISSUER_DELAY: Duration = Duration::from_secs(12);
/// The longest the sessions may take to make their first call (Node and
/// pi start-up on a loaded host). Cold starts and refreshes begin once
/// every session has, so each read `auth.json` while nobody held pi's lock.
const START_LIMIT: Duration = Duration::from_secs(90);
/// The baseline's sessions run this long; its cold starts are spread over
/// `BASELINE_WINDOW` once every session runs.
const BASELINE_RUN_MS: u64 = 16_000;
const BASELINE_WINDOW: Duration = Duration::from_secs(12);
/// Beside the daemon, refreshes start during `SLOW_WINDOW` once every session runs:
/// two of 12 s back to back, the second ending before the sessions do.
const SLOW_RUN_MS: u64 = 28_000;
const SLOW_WINDOW: Duration = Duration::from_secs(20);
/// How much longer than alone a pi call may take beside the daemon.
const STALL_SLACK_MS: f64 = 1000.0;

/// One pi line and how its clients are run.
#[derive(Clone)]
enum Pi {
    /// pi 0.73.1; its issuer requests go to the mock and are counted by the
    /// client (`redirected`).
    Legacy { node: OsString, issuer: String },
    /// pi 1.6.0; its HTTP goes to a proxy that refuses and counts.
    Current {
        node: PathBuf,
        proxy: Arc<RefusingProxy>,
    },
}

impl Pi {
    fn name(&self) -> &'static str {
        match self {
            Pi::Legacy { .. } => "pi 0.73.1",
            Pi::Current { .. } => "pi 1.6.0",
        }
    }

    fn client(&self, agent_dir: &Path, run_ms: u64) -> Command {
        match self {
            Pi::Legacy { node, issuer } => {
                legacy_client(node, agent_dir, issuer, run_ms, INTERVAL_MS)
            }
            Pi::Current { node, proxy } => {
                current_client(node, agent_dir, &proxy.url(), run_ms, INTERVAL_MS)
            }
        }
    }

    /// Connections pi 1.6.0 tried to open to its issuer so far (0.73.1
    /// reports its own in its output).
    fn proxied_to_issuer(&self) -> u64 {
        match self {
            Pi::Legacy { .. } => 0,
            Pi::Current { proxy, .. } => proxy
                .requests()
                .iter()
                .filter(|r| r.contains("auth.openai.com"))
                .count() as u64,
        }
    }
}

/// What one phase measured.
#[derive(Default)]
struct Figures {
    /// Calls by the long-lived sessions, and those that failed.
    calls: usize,
    failed: Vec<String>,
    /// The sessions' call durations, sorted.
    millis: Vec<f64>,
    cold_failed: usize,
    cold_first_error: Option<String>,
    /// The slowest cold start's call, and its slowest start-up (Node's
    /// start until pi's credentials were loaded: pi 1.6.0 waits for pi's
    /// lock there).
    cold_max_ms: f64,
    cold_max_startup_ms: f64,
    /// Token requests pi made itself.
    pi_refreshes: u64,
    /// Refreshes forced through piauthd, and the shortest of them.
    forced: u64,
    forced_min: Option<Duration>,
}

impl Figures {
    fn max_ms(&self) -> f64 {
        percentile(&self.millis, 1.0)
    }

    fn summary(&self, label: &str) -> String {
        format!(
            "{label}: {} calls in {SESSIONS} sessions ({} failed), ms p50 {:.1} p99 {:.1} max {:.1}; \
             cold starts {}/{COLD_STARTS} failed (slowest call {:.1} ms, slowest start-up {:.0} ms, \
             first error: {}); \
             {} refreshes forced through piauthd (shortest {:?}), {} by pi itself",
            self.calls,
            self.failed.len(),
            percentile(&self.millis, 0.5),
            percentile(&self.millis, 0.99),
            self.max_ms(),
            self.cold_failed,
            self.cold_max_ms,
            self.cold_max_startup_ms,
            self.cold_first_error.as_deref().unwrap_or("none"),
            self.forced,
            self.forced_min,
            self.pi_refreshes,
        )
    }
}

fn epoch_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(now.as_millis()).unwrap()
}

/// Starts `COLD_STARTS` single-call clients `every` apart, the first at
/// `first`, and waits for all of them off the runtime.
async fn cold_starts(first: Instant, every: Duration, cmd: impl Fn() -> Command) -> Vec<Output> {
    let mut children = Vec::new();
    for i in 0..COLD_STARTS {
        tokio::time::sleep_until(first + every * i as u32).await;
        children.push(spawn_piped(cmd()));
    }
    wait_all(children).await
}

/// Forces refreshes back to back until `until`; returns the epoch ms of
/// the first and each refresh's duration.
fn force_refreshes(
    socket: PathBuf,
    until: Instant,
) -> tokio::task::JoinHandle<(i64, Vec<Duration>)> {
    tokio::spawn(async move {
        let mut c = Client::connect(&socket).await.unwrap();
        let began = epoch_ms();
        let mut took = Vec::new();
        while Instant::now() < until {
            let start = Instant::now();
            c.refresh(PROVIDER).await.expect("a forced refresh failed");
            took.push(start.elapsed());
        }
        (began, took)
    })
}

/// Reads the long-lived sessions' lines into `fig`. Every token handed out
/// must have been valid when it was; each session's first call must have
/// returned before `locked_from` (epoch ms), else it did not start before
/// the refreshes as the phase needs.
fn read_sessions(fig: &mut Figures, outputs: &[Output], mock: &MockOpenAi, locked_from: i64) {
    for v in lines(outputs) {
        if v["done"] == true {
            fig.pi_refreshes += v["redirected"].as_u64().unwrap_or(0);
            continue;
        }
        fig.calls += 1;
        fig.millis.push(v["ms"].as_f64().unwrap());
        match v["key"].as_str() {
            Some(key) if v["error"].is_null() => assert!(
                mock.state
                    .access_token_valid_at(key, v["t"].as_i64().unwrap()),
                "pi handed out a token that was not valid: {v}"
            ),
            _ => fig.failed.push(v.to_string()),
        }
    }
    fig.millis.sort_by(f64::total_cmp);
    for out in outputs {
        let first = parse_lines(out)[0]["t"].as_i64().unwrap();
        assert!(
            first < locked_from,
            "a session's first call ended at {first}, after the refreshes began at \
             {locked_from}: the phase did not measure what it should"
        );
    }
}

/// Reads the cold starts into `fig`: one that exits with an error, or
/// whose call fails, failed.
fn read_cold_starts(fig: &mut Figures, outputs: &[Output], mock: &MockOpenAi) {
    for out in outputs {
        let mut error = (!out.status.success()).then(|| {
            format!(
                "exit {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        if out.status.success() {
            let lines = parse_lines(out);
            let call = &lines[0];
            fig.cold_max_ms = fig.cold_max_ms.max(call["ms"].as_f64().unwrap());
            match call["key"].as_str() {
                Some(key) if call["error"].is_null() => assert!(
                    mock.state
                        .access_token_valid_at(key, call["t"].as_i64().unwrap()),
                    "pi handed out a token that was not valid: {call}"
                ),
                _ => error = Some(call.to_string()),
            }
            let done = lines.last().unwrap();
            fig.pi_refreshes += done["redirected"].as_u64().unwrap_or(0);
            let startup = done["startupMs"].as_f64().unwrap();
            fig.cold_max_startup_ms = fig.cold_max_startup_ms.max(startup);
        }
        if let Some(e) = error {
            fig.cold_failed += 1;
            fig.cold_first_error.get_or_insert(e);
        }
    }
}

/// One phase: the sessions for `run_ms`; once all run, cold starts spread
/// over `window` and, with a daemon's `socket`, refreshes forced back to
/// back through it for as long as they start within `window`.
async fn phase(
    pi: &Pi,
    mock: &MockOpenAi,
    agent_dir: &Path,
    run_ms: u64,
    window: Duration,
    socket: Option<PathBuf>,
) -> Figures {
    let proxied_before = pi.proxied_to_issuer();
    let ready = tempfile::tempdir().unwrap();
    let marker = ready.path().join("ready");
    let sessions = {
        let (pi, dir, marker) = (pi.clone(), agent_dir.to_owned(), marker.clone());
        tokio::spawn(async move {
            run_all(SESSIONS, || {
                let mut c = pi.client(&dir, run_ms);
                c.env("PI_CLIENT_READY", &marker);
                c
            })
            .await
        })
    };
    let started = wait_until(START_LIMIT, || {
        let dir = ready.path().to_owned();
        async move { std::fs::read_dir(dir).map_or(0, Iterator::count) >= SESSIONS }
    })
    .await;
    assert!(
        started,
        "the pi sessions did not all start within {START_LIMIT:?}"
    );
    let start = Instant::now();
    let refresher = socket.map(|s| force_refreshes(s, start + window));
    let every = window / COLD_STARTS as u32;
    let cold = cold_starts(start, every, || pi.client(agent_dir, 0)).await;
    let sessions = sessions.await.unwrap();

    let mut fig = Figures::default();
    let mut locked_from = i64::MAX;
    if let Some(r) = refresher {
        let (began, took) = r.await.unwrap();
        locked_from = began;
        fig.forced = took.len() as u64;
        fig.forced_min = took.into_iter().min();
    }
    read_sessions(&mut fig, &sessions, mock, locked_from);
    read_cold_starts(&mut fig, &cold, mock);
    fig.pi_refreshes += pi.proxied_to_issuer() - proxied_before;
    fig
}

/// Both phases for one pi line, then the checks.
async fn pi_beside_a_slow_issuer(pi: impl FnOnce(&MockOpenAi) -> Pi, atob_safe_jwt: bool) {
    let mock = MockOpenAi::start(MockConfig {
        expires_in: LIFETIME_SECS,
        atob_safe_jwt,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let pi = pi(&mock);
    let sb = Sandbox::new();
    let set = mock
        .state
        .seed_login("acc-slow", "slow@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let watch = FileWatch::start(sb.auth_file());

    let alone = phase(
        &pi,
        &mock,
        &sb.agent_dir(),
        BASELINE_RUN_MS,
        BASELINE_WINDOW,
        None,
    )
    .await;
    let name = pi.name();
    eprintln!("{}", alone.summary(&format!("{name} alone")));
    assert_eq!(mock.stats().token_requests, 0, "nothing refreshed alone");

    let _d = Daemon::start_against(&sb, &mock.issuer());
    mock.state.set_token_delay(ISSUER_DELAY);
    let beside = phase(
        &pi,
        &mock,
        &sb.agent_dir(),
        SLOW_RUN_MS,
        SLOW_WINDOW,
        Some(sb.socket()),
    )
    .await;
    let (reads, bad_reads) = watch.finish();
    let stats = mock.stats();
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let daemon_refreshes = u64::from(c.status().await.unwrap().providers[0].refresh_count);
    eprintln!(
        "{} ({daemon_refreshes} by piauthd; {reads} file reads, {bad_reads} unparsable; {stats:?})",
        beside.summary(&format!(
            "{name} beside piauthd, {} s issuer",
            ISSUER_DELAY.as_secs()
        ))
    );

    assert_eq!(stats.reuse_attempts, 0, "{stats:?}");
    assert_eq!(stats.revocations, 0, "{stats:?}");
    assert_eq!(bad_reads, 0, "auth.json always parsed");
    assert_eq!(alone.pi_refreshes + beside.pi_refreshes, 0, "pi refreshed");
    assert!(
        alone.failed.is_empty(),
        "pi alone failed: {:?}",
        alone.failed
    );
    assert!(beside.forced >= 2, "two slow refreshes: {}", beside.forced);
    assert!(
        beside.forced_min >= Some(ISSUER_DELAY),
        "each forced refresh waited for the slow issuer: {:?}",
        beside.forced_min
    );
    assert_eq!(stats.refreshes, beside.forced, "{stats:?}");
    assert_eq!(stats.refreshes, daemon_refreshes, "{stats:?}");

    // The issue's "Done when", all checked before any is reported.
    let mut unmet = Vec::new();
    if !beside.failed.is_empty() {
        unmet.push(format!("pi calls failed: {:?}", beside.failed));
    }
    if beside.max_ms() > alone.max_ms() + STALL_SLACK_MS {
        unmet.push(format!(
            "pi stalled {:.0} ms beside piauthd, {:.0} ms alone",
            beside.max_ms(),
            alone.max_ms()
        ));
    }
    if beside.cold_failed > alone.cold_failed {
        unmet.push(format!(
            "{} of {COLD_STARTS} cold starts failed beside piauthd, {} alone: {}",
            beside.cold_failed,
            alone.cold_failed,
            beside.cold_first_error.as_deref().unwrap_or_default()
        ));
    }
    assert!(unmet.is_empty(), "{name}: {}", unmet.join("; "));
}

/// pi 0.73.1 reads `auth.json` under pi's lock when it starts and when it
/// refreshes; with hour-long tokens only its cold starts meet the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pi_0_73_fares_as_well_beside_a_slow_issuer_as_alone() {
    let node = legacy_node();
    pi_beside_a_slow_issuer(
        |mock| Pi::Legacy {
            node,
            issuer: mock.issuer(),
        },
        true,
    )
    .await;
}

/// pi 1.6.0 re-reads `auth.json` under pi's lock whenever it changed
/// (`readLatestData` compares the file's revision), so every session's
/// next call after a write waits for the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pi_1_6_fares_as_well_beside_a_slow_issuer_as_alone() {
    let node = current_node();
    pi_beside_a_slow_issuer(
        |_| Pi::Current {
            node,
            proxy: Arc::new(RefusingProxy::start()),
        },
        false,
    )
    .await;
}
