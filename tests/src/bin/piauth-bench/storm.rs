//! The refresh storm at expiry, and CPU over idle seconds.

use std::path::Path;
use std::time::{Duration, Instant};

use piauth_client::Client;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::MockOpenAi;
use serde_json::json;

use crate::figures::{Figures, us};
use crate::process::{Daemon, cpu_ticks, start_daemon};

/// A fresh daemon whose token has expired, and `clients` callers at once.
pub async fn storm(
    clients_n: usize,
    dir: &Path,
    mock: &MockOpenAi,
    figs: &mut Figures,
) -> anyhow::Result<()> {
    // Refresh storm: a fresh daemon whose token has expired; N callers at once.
    let storm_dir = dir.join("storm");
    std::fs::create_dir_all(storm_dir.join("agent"))?;
    let set = mock
        .state
        .seed_login("acc-storm", "storm@example.com", "pro");
    let storm_auth = storm_dir.join("agent").join("auth.json");
    write_codex_login(&storm_auth, &set)?;
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&storm_auth)?)?;
    doc["openai-codex"]["expires"] = json!(piauth_tests::fixtures::now_ms() - 1000);
    std::fs::write(&storm_auth, serde_json::to_string_pretty(&doc)?)?;
    let delay = Duration::from_millis(100);
    mock.state.set_token_delay(delay);
    let before = mock.stats().refreshes;
    let mut clients = Vec::new();
    // Connect first (the socket accepts before the daemon is up), then fire.
    let (storm_daemon, _) = start_daemon(&storm_dir, "storm", &mock.issuer(), &mock.codex_base())?;
    for _ in 0..64 {
        clients.push(Client::connect(&storm_daemon.socket).await?);
    }
    let t = Instant::now();
    let calls: Vec<_> = (0..clients_n)
        .map(|i| {
            let mut c = clients[i % clients.len()].clone();
            tokio::spawn(async move { c.get_token("", 60).await.is_ok() })
        })
        .collect();
    let mut ok = 0;
    for c in calls {
        ok += usize::from(c.await.unwrap_or(false));
    }
    let all_served = t.elapsed();
    figs.add(
        "storm_upstream_refreshes",
        (mock.stats().refreshes - before) as f64,
        "refreshes",
        json!({"clients": clients_n, "target": 1}),
    );
    figs.add("storm_clients_served", ok as f64, "clients", json!({}));
    figs.add(
        "storm_last_served_minus_issuer_latency",
        us(all_served.saturating_sub(delay)) / 1000.0,
        "ms",
        json!({}),
    );
    drop(storm_daemon);
    Ok(())
}

/// CPU over idle seconds (no polling expected): the loaded daemon after a
/// short settle, and a fresh one that never saw a client.
pub async fn idle(
    secs: u64,
    loaded: &Daemon,
    dir: &Path,
    mock: &MockOpenAi,
    figs: &mut Figures,
) -> anyhow::Result<()> {
    let pid = loaded.child.id();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (fresh, _) = start_daemon(dir, "fresh", &mock.issuer(), &mock.codex_base())?;
    let fresh_pid = fresh.child.id();
    let (t0, f0) = (cpu_ticks(pid), cpu_ticks(fresh_pid));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (ticks, fresh_ticks) = (cpu_ticks(pid) - t0, cpu_ticks(fresh_pid) - f0);
    let idle = json!({"idle_secs": secs});
    figs.add(
        "idle_cpu_ms_fresh_daemon",
        fresh_ticks as f64 * 1000.0 / hz,
        "ms",
        idle.clone(),
    );
    figs.add(
        "idle_cpu_ms_after_load",
        ticks as f64 * 1000.0 / hz,
        "ms",
        idle,
    );
    drop(fresh);
    Ok(())
}
