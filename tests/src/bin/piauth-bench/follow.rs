//! One owner and 8 followers over a real `sshd` on loopback (root and
//! OpenSSH needed): how long after the owner has a new token the last
//! follower serves it, whether the owner still refreshes once per cycle for
//! all of them, and a follower's GetToken against the owner's, measured in
//! turns in the same run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use piauth_client::Client;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::sshd::Sshd;
use serde_json::json;

use crate::figures::{Figures, measure, percentile, us};
use crate::process::{Daemon, start_daemon_with};

const FOLLOWERS: usize = 8;
const CYCLES: usize = 10;

/// The owner, its `sshd` and its followers, stopped when dropped.
struct Setup {
    mock: MockOpenAi,
    owner: Daemon,
    followers: Vec<Daemon>,
    _sshd: Sshd,
}

pub async fn run(secs: f64, dir: &Path, figs: &mut Figures) -> anyhow::Result<()> {
    let setup = start(dir).await?;
    propagation(&setup, figs).await?;
    get_token(secs, &setup, figs).await
}

async fn start(dir: &Path) -> anyhow::Result<Setup> {
    anyhow::ensure!(
        rustix::process::geteuid().as_raw() == 0 && Path::new("/usr/sbin/sshd").exists(),
        "the follow section needs root and Debian's openssh-server (sshd)"
    );
    // 2 s tokens: the owner refreshes about every second.
    let mock = MockOpenAi::start(MockConfig {
        expires_in: 2,
        usage_step: 0.0,
        ..MockConfig::default()
    })
    .await?;
    let owner_home = dir.join("owner");
    std::fs::create_dir_all(owner_home.join("agent"))?;
    let set = mock.state.seed_login("acc-own", "own@example.com", "pro");
    write_codex_login(&owner_home.join("agent").join("auth.json"), &set)?;
    let (owner, _) = start_daemon_with(
        &owner_home,
        "owner",
        &mock.issuer(),
        &mock.codex_base(),
        &[],
    )?;
    let sshd = Sshd::start(&dir.join("sshd"));
    let target = sshd.target(&owner.socket);
    let ssh = sshd.ssh();
    let mut followers = Vec::new();
    for i in 0..FOLLOWERS {
        let home = dir.join(format!("follower-{i}"));
        std::fs::create_dir_all(home.join("agent"))?;
        let env = [
            ("PIAUTHD_FOLLOW", target.as_str()),
            ("PIAUTHD_SSH", ssh.as_str()),
        ];
        followers
            .push(start_daemon_with(&home, "f", "http://127.0.0.1:9", &mock.codex_base(), &env)?.0);
    }
    Ok(Setup {
        mock,
        owner,
        followers,
        _sshd: sshd,
    })
}

/// Owner's new token to the last follower serving it; refreshes per cycle.
async fn propagation(setup: &Setup, figs: &mut Figures) -> anyhow::Result<()> {
    let Setup {
        mock,
        owner,
        followers,
        ..
    } = setup;
    // Every follower's token stream, once each serves a token.
    let mut streams = Vec::new();
    for f in followers {
        let started = Instant::now();
        let stream = loop {
            let mut c = Client::connect(&f.socket).await?;
            if let Ok(s) = c.watch_token("").await {
                break s;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "a follower never reached its owner"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        streams.push(stream);
    }
    let mut owner_stream = Client::connect(&owner.socket)
        .await?
        .watch_token("")
        .await?;
    owner_stream.next().await?;
    for s in &mut streams {
        s.next().await?;
    }

    // Each cycle: the owner's new token, then each follower's copy of it.
    let refreshes_before = mock.stats().refreshes;
    let mut spread = Vec::new();
    for _ in 0..CYCLES {
        let Some(token) = owner_stream.next().await? else {
            anyhow::bail!("the owner's stream ended");
        };
        let at = Instant::now();
        let mut last = Duration::ZERO;
        for s in &mut streams {
            loop {
                let Some(t) = s.next().await? else {
                    anyhow::bail!("a follower's stream ended");
                };
                if t.access_token == token.access_token {
                    break;
                }
            }
            last = last.max(at.elapsed());
        }
        spread.push(last);
    }
    let refreshes = mock.stats().refreshes - refreshes_before;
    spread.sort_unstable();
    figs.add(
        "follow_owner_to_last_of_8_followers_p50",
        us(percentile(&spread, 0.5)) / 1000.0,
        "ms",
        json!({"target_ms": 50, "cycles": CYCLES, "max_ms": us(spread[spread.len() - 1]) / 1000.0}),
    );
    figs.add(
        "follow_refreshes_per_cycle_with_8_followers",
        refreshes as f64 / CYCLES as f64,
        "x",
        json!({"target": 1.0}),
    );
    Ok(())
}

/// GetToken, one client, owner and a follower in turns.
async fn get_token(secs: f64, setup: &Setup, figs: &mut Figures) -> anyhow::Result<()> {
    let Setup {
        owner, followers, ..
    } = setup;
    let (mut base, mut via) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (socket, into) in [(&owner.socket, &mut base), (&followers[0].socket, &mut via)] {
            let client = Arc::new(Client::connect(socket).await?);
            let (lat, _) = measure(1, secs / 3.0, move |_| {
                let mut c = (*client).clone();
                async move {
                    let _ = c.get_token("", 0).await;
                }
            })
            .await;
            into.extend(lat);
        }
    }
    base.sort_unstable();
    via.sort_unstable();
    let p50 = |lat: &[Duration]| us(percentile(lat, 0.5));
    figs.add(
        "follow_get_token_p50",
        p50(&via),
        "us",
        json!({"baseline_owner_p50_us": p50(&base)}),
    );
    figs.add(
        "follow_get_token_over_owner",
        p50(&via) / p50(&base).max(f64::MIN_POSITIVE),
        "x",
        json!({"target_max": 1.2}),
    );
    Ok(())
}
