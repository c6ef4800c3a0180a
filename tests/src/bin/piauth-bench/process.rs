//! The daemon under test, as a child process, and what is read off it.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().map(|d| d.join(name)).unwrap_or_default()
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the comm: state is [0]; utime is field 14 => [11], stime [12].
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts piauthd and returns it with the time from exec to READY=1.
pub fn start_daemon(
    dir: &Path,
    tag: &str,
    issuer: &str,
    codex: &str,
) -> anyhow::Result<(Daemon, Duration)> {
    start_daemon_with(dir, tag, issuer, codex, &[])
}

/// [`start_daemon`] with more environment (a follower's target, say).
pub fn start_daemon_with(
    dir: &Path,
    tag: &str,
    issuer: &str,
    codex: &str,
    env: &[(&str, &str)],
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
        .envs(env.iter().copied())
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

/// Kills its child when dropped.
pub struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this benchmark again as the baselines' server (`echo.sock` and
/// `floor.sock` in `dir`; see `--serve-baselines`) and waits until it serves.
pub fn serve_baselines(dir: &Path, daemon: &Path) -> anyhow::Result<KillOnDrop> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--serve-baselines")
        .arg(dir)
        .arg(daemon)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawn the baselines' server")?;
    let out = child.stdout.take().context("no stdout")?;
    let guard = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
    anyhow::ensure!(
        line.trim() == "ready",
        "the baselines' server did not start: {line:?}"
    );
    Ok(guard)
}
