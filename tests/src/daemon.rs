//! Starting and stopping the real daemon in a sandbox, and reading what it
//! leaves: `auth.json` and its Status.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::Sandbox;

/// A running `piauthd`. Killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the daemon at trace level and waits until it serves.
    pub fn start(sandbox: &Sandbox) -> Daemon {
        Daemon::start_with(sandbox, |_| {})
    }

    /// Starts the daemon against a mock issuer at `issuer`.
    pub fn start_against(sandbox: &Sandbox, issuer: &str) -> Daemon {
        let issuer = issuer.to_owned();
        Daemon::start_with(sandbox, move |cmd| {
            cmd.env("PIAUTHD_ISSUER", &issuer);
        })
    }

    /// Like [`Daemon::start`], with a hook to adjust the command. Returns
    /// once the daemon reports READY=1 on a real `NOTIFY_SOCKET`: its socket
    /// listens and its credentials are loaded.
    pub fn start_with(sandbox: &Sandbox, adjust: impl FnOnce(&mut Command)) -> Daemon {
        let n = unique();
        let log = sandbox.dir.path().join(format!("piauthd-{n}.log"));
        let notify_path = sandbox.dir.path().join(format!("notify-{n}"));
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
        // The daemon may run as another uid (an unprivileged sandbox).
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&notify_path, fs::Permissions::from_mode(0o777));
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut cmd = sandbox.command("piauthd");
        cmd.env("RUST_LOG", "trace")
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("log file"))
            .stderr(fs::File::create(log.with_extension("err")).expect("log file"));
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn piauthd");
        let mut d = Daemon { child, log };
        d.wait_ready(&notify);
        d
    }

    /// Waits for READY=1, or fails with the log.
    fn wait_ready(&mut self, notify: &std::os::unix::net::UnixDatagram) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("piauthd exited early ({status}):\n{}", self.logs());
            }
            if let Ok(n) = notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).contains("READY=1")
            {
                return;
            }
        }
        panic!(
            "piauthd did not report READY=1 within 20 s:\n{}",
            self.logs()
        );
    }

    /// Everything the daemon printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        let mut s = fs::read_to_string(&self.log).unwrap_or_default();
        s += &fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        s
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for the daemon to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Reads and parses `auth.json`; `None` if it is missing or does not parse.
pub fn read_auth(path: &Path) -> Option<serde_json::Value> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `openai-codex` refresh token in `auth.json`.
pub fn stored_refresh(path: &Path) -> Option<String> {
    read_auth(path)?["openai-codex"]["refresh"]
        .as_str()
        .map(str::to_owned)
}

/// The `openai-codex` entry of the daemon's Status.
pub async fn codex_status(
    c: &mut piauth_client::Client,
) -> piauth_client::proto::v1::ProviderStatus {
    c.status()
        .await
        .expect("Status answers")
        .providers
        .into_iter()
        .find(|p| p.provider == "openai-codex")
        .expect("an openai-codex entry")
}
