//! Starting and stopping the real daemon in a sandbox directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary (`piauthd`, `pi-authctl`), built next to the
/// test executable. `cargo test --workspace` builds them before any test runs.
///
/// `PIAUTHD_TEST_DAEMON`, when set, names another `piauthd` to run instead
/// (an older build, to measure what an attack achieved before a fix).
pub fn bin_path(name: &str) -> PathBuf {
    if name == "piauthd"
        && let Some(other) = std::env::var_os("PIAUTHD_TEST_DAEMON").filter(|p| !p.is_empty())
    {
        return PathBuf::from(other);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the suite with `cargo test --workspace`",
        path.display()
    );
    path
}

/// A private directory holding pi's agent dir, the socket and the logs.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// Run every child as this uid (through `setpriv`), when set.
    pub run_as: Option<u32>,
}

/// The uid unprivileged sandboxes run as when the tests run as root.
pub const NOBODY: u32 = 65534;

/// Lets other users traverse every directory above `path` (adds `o+x`), so
/// a child run as another uid can execute the workspace binaries.
pub fn make_reachable(path: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut p = path;
    while let Some(parent) = p.parent() {
        if let Ok(meta) = fs::metadata(p) {
            let mode = meta.mode();
            if meta.is_dir() && mode & 0o001 == 0 {
                let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o001));
            }
        }
        p = parent;
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        // Short paths: Unix socket paths are limited to ~104 bytes.
        let dir = tempfile::Builder::new()
            .prefix("piauth")
            .tempdir_in("/tmp")
            .expect("temp dir");
        fs::create_dir_all(dir.path().join("agent")).expect("agent dir");
        Sandbox { dir, run_as: None }
    }

    /// A sandbox whose children run without root's powers, so file modes
    /// bind them: as uid 65534 when the tests run as root, else as the
    /// current user.
    pub fn unprivileged() -> Sandbox {
        let mut sb = Sandbox::new();
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } == 0 {
            for entry in [sb.dir.path().to_owned(), sb.agent_dir()] {
                std::os::unix::fs::chown(&entry, Some(NOBODY), Some(NOBODY)).expect("chown");
            }
            make_reachable(&bin_path("piauthd"));
            sb.run_as = Some(NOBODY);
        }
        sb
    }

    pub fn agent_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    pub fn auth_file(&self) -> PathBuf {
        self.agent_dir().join("auth.json")
    }

    /// The default socket of the sandbox's environment (`XDG_STATE_HOME`
    /// is the sandbox), so clients may autostart a daemon on it.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("piauthd").join("piauthd.sock")
    }

    /// Writes `auth.json` as pi would (owned by the sandbox's user).
    pub fn write_auth(&self, json: &str) {
        fs::write(self.auth_file(), json).expect("write auth.json");
        self.own(&self.auth_file());
    }

    /// Gives `path` to the sandbox's user, if it has its own.
    pub fn own(&self, path: &Path) {
        if let Some(uid) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown");
        }
    }

    /// Environment every child gets: no user config, the sandbox's paths.
    pub fn command(&self, bin: &str) -> Command {
        let mut cmd = match self.run_as {
            None => Command::new(bin_path(bin)),
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(bin_path(bin));
                c
            }
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path())
            .env("PI_CODING_AGENT_DIR", self.agent_dir())
            .env("PIAUTHD_SOCKET", self.socket())
            // Tests start daemons themselves; the autostart test removes this.
            .env("PIAUTHD_NO_AUTOSTART", "1")
            .env("PIAUTHD_ISSUER", "http://127.0.0.1:9")
            .env("PIAUTHD_CODEX_BASE_URL", "http://127.0.0.1:9/backend-api");
        cmd
    }

    /// Runs `pi-authctl` with `args` and returns its output.
    pub fn authctl(&self, args: &[&str]) -> std::process::Output {
        self.command("pi-authctl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pi-authctl")
    }
}

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

/// Polls an async `check` every 20 ms until it is true or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 10 ms until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Resident memory of a process, in kB (Linux; 0 elsewhere).
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// The most resident memory a process has had, in kB (Linux; 0 elsewhere).
pub fn peak_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time a process has used (user plus system), in clock ticks, from
/// `/proc/<pid>/stat` (Linux; 0 elsewhere).
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after it.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// The share of one core a process used over `window`, in percent,
/// measured from its CPU ticks.
pub fn cpu_percent(pid: u32, window: Duration) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let before = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(window);
    let used = cpu_ticks(pid).saturating_sub(before) as f64 / hz;
    100.0 * used / started.elapsed().as_secs_f64()
}

/// How many descriptors a process has open (Linux; 0 elsewhere).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The TCP sockets process `pid` listens on, each as the kernel's hex
/// `address:port` (its descriptors' inodes, looked up in /proc/net/tcp
/// and tcp6, IPv4 first).
pub fn tcp_listeners(pid: i32) -> Vec<String> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's descriptors (Linux /proc)")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?;
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp")
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]))
        .map(|f| f[1].to_owned())
        .collect()
}

/// Makes `cmd` start with a descriptor limit of `n` (soft and hard), as
/// `prlimit --nofile=n:n` would.
pub fn limit_nofile(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Fails unless the tests run as root. Every root-only test is
/// `#[ignore = "needs root: ..."]`, so a plain `cargo test` as another user
/// lists it as ignored; `tests/run` passes `--include-ignored` when it runs
/// as root (CI does), and a run with `--include-ignored` as another user
/// fails here instead of passing having done nothing.
pub fn assert_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (it is ignored unless run with --include-ignored): run it as root, as CI does"
    );
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Lets a test skip because this host lacks `what`: outside CI it says so
/// on stderr; in CI (`CI` set, as `.ci/run` does) it fails, so a skip can
/// never pass as "ok" there.
pub fn skip_outside_ci(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide {what}: a test needing it would be skipped"
    );
    eprintln!("skipped: {what} is missing here (CI provides it)");
}

/// Whether `tool` is installed. Outside CI a missing tool skips the test
/// that needs it (saying so); in CI (`CI` set) it is a failure.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("which")
        .arg(tool)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip_outside_ci(tool);
    }
    found
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
