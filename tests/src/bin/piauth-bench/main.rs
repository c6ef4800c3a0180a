//! `piauth-bench`: measures piauthd against the mock, with every baseline
//! in the same run (these machines are noisy). Build and run in release:
//!
//! ```text
//! cargo build --release --workspace && target/release/piauth-bench
//! ```
//!
//! Prints a table, then one JSON line per figure.

use std::time::Duration;

use clap::Parser;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use serde_json::json;

mod accounts;
mod figures;
mod floor;
mod follow;
mod latency;
mod process;
mod relay;
mod storm;

use figures::{Figures, percentile, us};
use process::start_daemon;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks piauthd against its baselines, in one run.")]
struct Args {
    /// Seconds per latency measurement.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Seconds of idleness over which CPU time is measured.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Clients in the refresh storm.
    #[arg(long, default_value_t = 1000)]
    storm: usize,
    /// Run only these sections (comma-separated: ready, latency, relay,
    /// storm, idle, accounts, follow); all when not given. `follow` needs
    /// root and sshd.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Internal: serve the echo and gRPC-floor baselines in DIR, with a
    /// token taken from the daemon at DAEMON_SOCKET (the run starts itself
    /// this way, so that no baseline shares the clients' process).
    #[arg(long, hide = true, num_args = 2, value_names = ["DIR", "DAEMON_SOCKET"])]
    serve_baselines: Option<Vec<std::path::PathBuf>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some([dir, daemon]) = args.serve_baselines.as_deref() {
        return floor::serve_baselines(dir, daemon).await;
    }
    let dir = tempfile::Builder::new()
        .prefix("bench")
        .tempdir_in("/tmp")?;
    std::fs::create_dir_all(dir.path().join("agent"))?;
    let mock = MockOpenAi::start(MockConfig {
        expires_in: 86_400,
        // Thousands of responses: usage is not what this measures.
        usage_step: 0.0,
        ..MockConfig::default()
    })
    .await?;
    let set = mock
        .state
        .seed_login("acc-bench", "bench@example.com", "pro");
    let auth = dir.path().join("agent").join("auth.json");
    write_codex_login(&auth, &set)?;
    let mut figs = Figures(Vec::new());

    println!(
        "machine: {} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    println!("{:<58} {:>14} unit", "figure", "value");

    let wants = |section: &str| args.only.is_empty() || args.only.iter().any(|s| s == section);
    if wants("ready") {
        // Time from exec to READY (median of 10).
        let mut readies = Vec::new();
        for i in 0..10 {
            let (d, t) = start_daemon(
                dir.path(),
                &format!("r{i}"),
                &mock.issuer(),
                &mock.codex_base(),
            )?;
            readies.push(t);
            drop(d);
        }
        readies.sort_unstable();
        figs.add(
            "exec_to_ready_p50",
            us(percentile(&readies, 0.5)) / 1000.0,
            "ms",
            json!({"target_ms": 100}),
        );
    }
    let (daemon, _) = start_daemon(dir.path(), "main", &mock.issuer(), &mock.codex_base())?;
    if wants("ready") {
        tokio::time::sleep(Duration::from_millis(500)).await;
        figs.add(
            "idle_rss",
            piauth_tests::process::rss_kb(daemon.child.id()) as f64 / 1024.0,
            "MB",
            json!({"target_mb": 15}),
        );
    }
    if wants("latency") {
        latency::run(args.secs, dir.path(), &auth, &daemon, &mut figs).await?;
    }
    if wants("relay") {
        relay::run(&mock, &daemon, dir.path(), &mut figs).await?;
    }
    if wants("storm") {
        storm::storm(args.storm, dir.path(), &mock, &mut figs).await?;
    }
    if wants("idle") {
        storm::idle(args.idle_secs, &daemon, dir.path(), &mock, &mut figs).await?;
    }
    if wants("accounts") {
        accounts::run(args.secs, dir.path(), &mock, &mut figs).await?;
    }
    if wants("follow") {
        follow::run(args.secs, dir.path(), &mut figs).await?;
    }

    println!();
    for f in &figs.0 {
        println!("{f}");
    }
    drop(daemon);
    Ok(())
}
