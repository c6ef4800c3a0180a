//! Unary latency at 1, 16, 64 and 256 concurrent clients: GetToken against
//! its three baselines, each measured in the same run: (A) a raw Unix-socket
//! echo, (B) pi's own lock-read-parse of auth.json, (C) the gRPC floor.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use piauth_client::Client;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::figures::{Figures, measure, percentile, us};
use crate::process::{self, Daemon};

pub async fn run(
    secs: f64,
    dir: &Path,
    auth: &Path,
    daemon: &Daemon,
    figs: &mut Figures,
) -> anyhow::Result<()> {
    let pid = daemon.child.id();
    // Baselines A (a raw Unix-socket echo) and C (the gRPC floor) are
    // served by a child process, as the daemon is: no baseline shares the
    // clients' runtime or process.
    let echo_path = dir.join("echo.sock");
    let floor_path = dir.join("floor.sock");
    let _baselines = process::serve_baselines(dir, &daemon.socket)?;

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
        let (a, _) = measure(c, secs, move |w| {
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
        let path = auth.to_owned();
        let (b, _) = measure(c, secs, move |_| {
            let path = path.clone();
            async move {
                let _ = tokio::task::spawn_blocking(move || pi_way(&path)).await;
            }
        })
        .await;
        // C: the gRPC floor, one client connection per worker.
        let floors = Arc::new(clients(&floor_path, c).await?);
        let (f, _) = measure(c, secs, move |w| {
            let mut cl = floors[w].clone();
            async move {
                let _ = cl.get_token("", 60).await;
            }
        })
        .await;
        // piauthd GetToken, one client connection per worker.
        let daemons = Arc::new(clients(&daemon.socket, c).await?);
        let rss_pid = pid;
        let sampler = tokio::spawn(async move {
            let mut m = 0;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                m = m.max(piauth_tests::process::rss_kb(rss_pid));
            }
            m
        });
        let (g, elapsed) = measure(c, secs, move |w| {
            let mut cl = daemons[w].clone();
            async move {
                let _ = cl.get_token("", 60).await;
            }
        })
        .await;
        max_rss = max_rss.max(sampler.await.unwrap_or(0));
        report(figs, c, [&a, &b, &f, &g]);
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
    Ok(())
}

/// `n` client connections to `socket`, one per worker.
async fn clients(socket: &Path, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Client::connect(socket).await?);
    }
    Ok(out)
}

/// A tokio echo server: the floor of any round trip.
pub fn serve_echo(path: &Path) -> anyhow::Result<()> {
    let echo = tokio::net::UnixListener::bind(path)?;
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
    Ok(())
}

/// The percentiles of each path at concurrency `c`, and GetToken's p50
/// over each baseline's.
fn report(figs: &mut Figures, c: usize, [a, b, f, g]: [&[Duration]; 4]) {
    let named = [
        ("echo_baseline_a", a),
        ("pi_lock_read_baseline_b", b),
        ("grpc_floor_baseline_c", f),
        ("get_token", g),
    ];
    for (name, lat) in named {
        for (tag, p) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
            figs.add(
                &format!("{name}_{tag}_c{c}"),
                us(percentile(lat, p)),
                "us",
                json!({"concurrency": c}),
            );
        }
    }
    let p50 = |lat: &[Duration]| us(percentile(lat, 0.5)).max(0.001);
    let ratios = [
        (
            "get_token_p50_over_echo",
            p50(g) / p50(a),
            json!({"target_max": 5.0}),
        ),
        (
            "get_token_p50_over_grpc_floor",
            p50(g) / p50(f),
            json!({"target_max": 1.5}),
        ),
        ("grpc_floor_p50_over_echo", p50(f) / p50(a), json!({})),
        (
            "get_token_p50_over_pi_way",
            p50(g) / p50(b),
            json!({"target_max": 1.0}),
        ),
    ];
    for (name, ratio, target) in ratios {
        figs.add(&format!("{name}_c{c}"), ratio, "x", target);
    }
}

/// pi's own way to a token: `mkdir` the lock directory (retrying with
/// backoff, as pi's lock does), read and parse auth.json, `rmdir`.
fn pi_way(path: &Path) {
    let lock = path.with_extension("json.lock");
    let mut pause = Duration::from_micros(50);
    while std::fs::create_dir(&lock).is_err() {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    let bytes = std::fs::read(path).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let _ = std::hint::black_box(v["openai-codex"]["access"].as_str().map(str::len));
    let _ = std::fs::remove_dir(&lock);
}
