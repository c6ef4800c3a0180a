//! `piauth-bench`: measures piauthd against the mock, with every baseline
//! in the same run (these machines are noisy). Build and run in release:
//!
//! ```text
//! cargo build --release --workspace && target/release/piauth-bench
//! ```
//!
//! Prints a table, then one JSON line per figure.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi, ReplyShape};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
}

struct Figures(Vec<serde_json::Value>);

impl Figures {
    fn add(&mut self, name: &str, value: f64, unit: &str, extra: serde_json::Value) {
        let mut v = json!({"figure": name, "value": value, "unit": unit});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        println!("{:<58} {:>14.3} {unit}", name, value);
        self.0.push(v);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs `workers` concurrent loops of `op` for `secs`; returns latencies.
async fn measure<F, Fut>(workers: usize, secs: f64, op: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    op(w).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    (all, elapsed)
}

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().map(|d| d.join(name)).unwrap_or_default()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the comm: state is [0]; utime is field 14 => [11], stime [12].
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts piauthd and returns it with the time from exec to READY=1.
fn start_daemon(
    dir: &Path,
    tag: &str,
    issuer: &str,
    codex: &str,
) -> anyhow::Result<(Daemon, Duration)> {
    let socket = dir.join(format!("{tag}.sock"));
    let notify_path = dir.join(format!("{tag}.notify"));
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path)?;
    notify.set_read_timeout(Some(Duration::from_secs(10)))?;
    let started = Instant::now();
    let child = Command::new(bin("piauthd"))
        .env_clear()
        .env("HOME", dir)
        .env("PI_CODING_AGENT_DIR", dir.join("agent"))
        .env("PIAUTHD_SOCKET", &socket)
        .env("PIAUTHD_ISSUER", issuer)
        .env("PIAUTHD_CODEX_BASE_URL", codex)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn piauthd (build it with --release first)")?;
    let mut buf = [0u8; 256];
    loop {
        let n = notify.recv(&mut buf).context("no READY=1 from piauthd")?;
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    Ok((Daemon { child, socket }, started.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::Builder::new()
        .prefix("bench")
        .tempdir_in("/tmp")?;
    std::fs::create_dir_all(dir.path().join("agent"))?;
    let mock = MockOpenAi::start(MockConfig {
        expires_in: 86_400,
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

    // Time from exec to READY (median of 10), and idle RSS.
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
    let (daemon, _) = start_daemon(dir.path(), "main", &mock.issuer(), &mock.codex_base())?;
    let pid = daemon.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    figs.add(
        "idle_rss",
        piauth_tests::daemon::rss_kb(pid) as f64 / 1024.0,
        "MB",
        json!({"target_mb": 15}),
    );

    // Baseline A: a raw Unix-socket echo round trip.
    let echo_path = dir.path().join("echo.sock");
    let echo = tokio::net::UnixListener::bind(&echo_path)?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    let mut max_rss = 0;
    for c in [1usize, 16, 64, 256] {
        // A: echo, one connection per worker.
        let mut conns = Vec::new();
        for _ in 0..c {
            conns.push(Arc::new(tokio::sync::Mutex::new(
                tokio::net::UnixStream::connect(&echo_path).await?,
            )));
        }
        let conns = Arc::new(conns);
        let (a, _) = measure(c, args.secs, move |w| {
            let conn = conns[w].clone();
            async move {
                let mut s = conn.lock().await;
                let msg = [7u8; 64];
                let _ = s.write_all(&msg).await;
                let mut got = [0u8; 64];
                let _ = s.read_exact(&mut got).await;
            }
        })
        .await;
        // B: pi's way: lock dir, read and parse auth.json, release.
        let path = auth.clone();
        let (b, _) = measure(c, args.secs, move |_| {
            let path = path.clone();
            async move {
                let lock = path.with_extension("json.lock");
                let _ = tokio::task::spawn_blocking(move || {
                    let mut pause = Duration::from_micros(50);
                    while std::fs::create_dir(&lock).is_err() {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(20));
                    }
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    let _ =
                        std::hint::black_box(v["openai-codex"]["access"].as_str().map(str::len));
                    let _ = std::fs::remove_dir(&lock);
                })
                .await;
            }
        })
        .await;
        // piauthd GetToken, one client connection per worker.
        let mut clients = Vec::new();
        for _ in 0..c {
            clients.push(Client::connect(&daemon.socket).await?);
        }
        let clients = Arc::new(clients);
        let rss_pid = pid;
        let sampler = tokio::spawn(async move {
            let mut m = 0;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                m = m.max(piauth_tests::daemon::rss_kb(rss_pid));
            }
            m
        });
        let (g, elapsed) = measure(c, args.secs, move |w| {
            let mut cl = clients[w].clone();
            async move {
                let _ = cl.get_token("", 60).await;
            }
        })
        .await;
        max_rss = max_rss.max(sampler.await.unwrap_or(0));
        for (name, lat) in [
            ("echo_baseline_a", &a),
            ("pi_lock_read_baseline_b", &b),
            ("get_token", &g),
        ] {
            figs.add(
                &format!("{name}_p50_c{c}"),
                us(percentile(lat, 0.5)),
                "us",
                json!({"concurrency": c}),
            );
            figs.add(
                &format!("{name}_p99_c{c}"),
                us(percentile(lat, 0.99)),
                "us",
                json!({"concurrency": c}),
            );
            figs.add(
                &format!("{name}_p999_c{c}"),
                us(percentile(lat, 0.999)),
                "us",
                json!({"concurrency": c}),
            );
        }
        let ratio_a = us(percentile(&g, 0.5)) / us(percentile(&a, 0.5)).max(0.001);
        let ratio_b = us(percentile(&g, 0.5)) / us(percentile(&b, 0.5)).max(0.001);
        figs.add(
            &format!("get_token_p50_over_echo_c{c}"),
            ratio_a,
            "x",
            json!({"target_max": 5.0}),
        );
        figs.add(
            &format!("get_token_p50_over_pi_way_c{c}"),
            ratio_b,
            "x",
            json!({"target_max": 1.0}),
        );
        if c == 64 {
            figs.add(
                "get_token_throughput_c64",
                g.len() as f64 / elapsed.as_secs_f64(),
                "calls/s",
                json!({"target_min": 20000}),
            );
        }
        if c == 256 {
            figs.add(
                "rss_under_load_c256",
                max_rss as f64 / 1024.0,
                "MB",
                json!({}),
            );
        }
    }

    // Streaming relay: 2,000 events, direct from the mock vs through piauthd.
    mock.state.set_reply(ReplyShape {
        deltas: Some(2000),
        delta_bytes: 32,
        ..ReplyShape::default()
    });
    let body = json!({"model": "gpt-5.1-codex-mini", "instructions": "", "input": [], "stream": true, "store": false});
    let http = reqwest::Client::new();
    let token = Client::connect(&daemon.socket)
        .await?
        .get_token("", 60)
        .await?;
    let (mut d_first, mut d_rate, mut p_first, mut p_rate) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        let t = Instant::now();
        let mut resp = http
            .post(format!("{}/codex/responses", mock.codex_base()))
            .bearer_auth(&token.access_token)
            .header("chatgpt-account-id", &token.account_id)
            .header("OpenAI-Beta", "responses=experimental")
            .header("originator", "pi")
            .header("User-Agent", "bench")
            .header("accept", "text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let mut parser = piauthd::codex::sse::SseParser::new();
        let (mut first, mut n) = (None, 0usize);
        while let Some(chunk) = resp.chunk().await? {
            let got = parser.push(&chunk)?.len();
            if got > 0 && first.is_none() {
                first = Some(t.elapsed());
            }
            n += got;
        }
        n += parser.finish()?.len();
        d_first.push(first.unwrap_or_default());
        d_rate.push(n as f64 / t.elapsed().as_secs_f64());

        let mut c = Client::connect(&daemon.socket).await?;
        let t = Instant::now();
        let mut stream = c
            .complete(pb::CompletionRequest {
                model: "gpt-5.1-codex-mini".into(),
                input_json: "[]".into(),
                ..Default::default()
            })
            .await?;
        let (mut first, mut n) = (None, 0usize);
        while let Some(_e) = stream.next().await? {
            if first.is_none() {
                first = Some(t.elapsed());
            }
            n += 1;
        }
        p_first.push(first.unwrap_or_default());
        p_rate.push(n as f64 / t.elapsed().as_secs_f64());
    }
    d_first.sort_unstable();
    p_first.sort_unstable();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (dr, pr) = (median(&mut d_rate), median(&mut p_rate));
    figs.add(
        "stream_first_event_direct_p50",
        us(percentile(&d_first, 0.5)) / 1000.0,
        "ms",
        json!({}),
    );
    figs.add(
        "stream_first_event_daemon_p50",
        us(percentile(&p_first, 0.5)) / 1000.0,
        "ms",
        json!({}),
    );
    figs.add(
        "stream_first_event_added_p50",
        (us(percentile(&p_first, 0.5)) - us(percentile(&d_first, 0.5))) / 1000.0,
        "ms",
        json!({"target_max_ms": 1.0}),
    );
    figs.add("stream_events_per_sec_direct", dr, "events/s", json!({}));
    figs.add("stream_events_per_sec_daemon", pr, "events/s", json!({}));
    figs.add(
        "stream_throughput_ratio",
        pr / dr,
        "x",
        json!({"target_min": 0.9}),
    );

    // Refresh storm: a fresh daemon whose token has expired; N callers at once.
    let storm_dir = dir.path().join("storm");
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
    let calls: Vec<_> = (0..args.storm)
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
        json!({"clients": args.storm, "target": 1}),
    );
    figs.add("storm_clients_served", ok as f64, "clients", json!({}));
    figs.add(
        "storm_last_served_minus_issuer_latency",
        us(all_served.saturating_sub(delay)) / 1000.0,
        "ms",
        json!({}),
    );
    drop(storm_daemon);

    // CPU over idle seconds (no polling expected): the loaded daemon after
    // a short settle, and a fresh one that never saw a client.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (fresh, _) = start_daemon(dir.path(), "fresh", &mock.issuer(), &mock.codex_base())?;
    let fresh_pid = fresh.child.id();
    let (t0, f0) = (cpu_ticks(pid), cpu_ticks(fresh_pid));
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let (ticks, fresh_ticks) = (cpu_ticks(pid) - t0, cpu_ticks(fresh_pid) - f0);
    let idle = json!({"idle_secs": args.idle_secs});
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

    println!();
    for f in &figs.0 {
        println!("{f}");
    }
    drop(daemon);
    Ok(())
}
