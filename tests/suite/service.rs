//! Running as a service: the units, socket activation with readiness
//! notification, the launchd plist, install, and autostart.

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use piauth_client::Client;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::host::have_tool;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::wait::wait_until;
use piauth_tests::{Sandbox, bin_path};

#[test]
fn the_units_pass_systemd_analyze_verify() {
    if !have_tool("systemd-analyze") {
        return;
    }
    let sb = Sandbox::new();
    let units = sb.dir.path().join("units");
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
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let service = std::fs::read_to_string(units.join("piauthd.service")).unwrap();
    assert!(service.contains(
        &format!("ExecStart={}", std::fs::canonicalize(bin_path("piauthd")).unwrap().display())
    ));
    let runtime = sb.dir.path().join("xdg-runtime");
    std::fs::create_dir(&runtime).unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["--user", "verify", "piauthd.service", "piauthd.socket"])
        .current_dir(&units)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success(), "systemd-analyze failed:\n{said}");
    assert!(said.trim().is_empty(), "systemd-analyze warned:\n{said}");
}

#[test]
fn the_launchd_plist_parses_with_the_right_keys_and_paths() {
    let python = std::env::var("PIAUTHD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let sb = Sandbox::new();
    let dir = sb.dir.path().join("agents");
    let out = sb
        .command("pi-authctl")
        .args([
            "service",
            "install",
            "--platform",
            "launchd",
            "--no-start",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = dir.join("dev.piauthd.plist");
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/../launchd/dev.piauthd.plist");
    let check = r#"
import plistlib, sys
home, binary, path = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path, "rb") as f:
    p = plistlib.load(f)
assert p["Label"] == "dev.piauthd", p["Label"]
assert p["RunAtLoad"] is True
assert p["KeepAlive"] == {"SuccessfulExit": False}, p["KeepAlive"]
args = p["ProgramArguments"]
assert len(args) == 1 and args[0].endswith("/piauthd"), args
for key in ("StandardOutPath", "StandardErrorPath"):
    assert p[key].endswith("/Library/Logs/piauthd.log"), p[key]
    assert p[key].startswith("/"), p[key]
if home:
    assert args[0] == binary, (args[0], binary)
    assert p["StandardOutPath"] == home + "/Library/Logs/piauthd.log", p["StandardOutPath"]
print("ok")
"#;
    let binary = std::fs::canonicalize(bin_path("piauthd")).unwrap();
    for (home, path) in [
        (
            sb.dir.path().display().to_string(),
            rendered.display().to_string(),
        ),
        (String::new(), committed.to_owned()),
    ] {
        let out = Command::new(&python)
            .args(["-c", check, &home, &binary.display().to_string(), &path])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Uninstall removes it again.
    let out = sb
        .command("pi-authctl")
        .args(["service", "uninstall", "--platform", "launchd", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!rendered.exists());
    // A dry run writes nothing.
    let out = sb
        .command("pi-authctl")
        .args(["service", "install", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ExecStart=")
            || String::from_utf8_lossy(&out.stdout).contains("<plist")
    );
    assert!(
        !sb.dir
            .path()
            .join("config/systemd/user/piauthd.service")
            .exists()
    );
}

/// systemd's own `systemd-socket-activate` passes a real listening socket
/// (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES); the daemon reports READY=1 on a
/// real NOTIFY_SOCKET and serves a token over the passed socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_with_readiness_notification() {
    if !have_tool("systemd-socket-activate") {
        return;
    }
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-sd", "sd@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let run = sb.dir.path().join("sd");
    // Private, as systemd makes %t: clients refuse an open directory.
    std::fs::DirBuilder::new().mode(0o700).create(&run).unwrap();
    let socket = run.join("piauthd.sock");
    let notify_path = run.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();

    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .arg("--fdname=piauthd")
        .arg(format!(
            "--setenv=PI_CODING_AGENT_DIR={}",
            sb.agent_dir().display()
        ))
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
        .arg(format!("--setenv=PIAUTHD_ISSUER={}", mock.issuer()))
        .arg(format!("--setenv=HOME={}", sb.dir.path().display()))
        .arg("--setenv=RUST_LOG=info")
        .arg(bin_path("piauthd"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || async { socket.exists() }).await);
    // The first connection starts the daemon.
    let mut c = Client::connect(&socket).await.unwrap();
    let token = c.get_token("", 60).await.unwrap();
    assert_eq!(token.access_token, set.access_token);

    let mut buf = [0u8; 512];
    let n = tokio::task::spawn_blocking(move || {
        let n = notify.recv(&mut buf).unwrap();
        (String::from_utf8_lossy(&buf[..n]).into_owned(), notify)
    })
    .await
    .unwrap();
    let (ready, notify) = n;
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(
        ready.contains("STATUS=serving on") && ready.contains("logged in"),
        "{ready}"
    );

    // Stopping says so, and leaves systemd's socket file alone.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(activator.id() as i32, libc::SIGTERM) };
    let stopping = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(stopping.contains("STOPPING=1"), "{stopping}");
    let _ = activator.wait();
}

/// A `.socket` unit with `ListenDatagram=` (or anything but a listening
/// Unix stream socket) passed as fd 3: the real daemon refuses it at once,
/// naming the descriptor and what it is, and binds nothing of its own.
#[test]
fn socket_activation_with_a_datagram_socket_is_refused() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let datagram = UnixDatagram::bind(sb.dir.path().join("dgram")).unwrap();
    let fd = datagram.as_raw_fd();
    let mut cmd = Command::new("sh");
    // `$$` is the shell's pid, which `exec` hands to piauthd: LISTEN_PID
    // names the daemon, as systemd's does.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\"")
        .arg(bin_path("piauthd"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", sb.dir.path())
        .env("XDG_STATE_HOME", sb.dir.path())
        .env("XDG_CONFIG_HOME", sb.dir.path().join("config"))
        .env("PI_CODING_AGENT_DIR", sb.agent_dir())
        .env("PIAUTHD_SOCKET", sb.socket())
        .stdin(Stdio::null());
    // SAFETY: dup2 and fcntl are async-signal-safe and touch only the
    // child's descriptor table. The new fd 3 has no close-on-exec flag; when
    // the socket already is fd 3, dup2 does nothing, so the flag is cleared.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "cannot use the socket passed by systemd: fd 3 is a datagram socket, \
             not a listening stream socket: check the .socket unit's ListenStream="
        ),
        "{stderr}"
    );
    assert!(!sb.socket().exists(), "nothing bound instead");
}

/// Ten clients at once, no daemon: exactly one daemon is started, and all
/// ten are served by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_racing_clients_start_exactly_one_daemon() {
    let sb = Sandbox::new();
    let children: Vec<_> = (0..10)
        .map(|_| {
            sb.command("pi-authctl")
                .env_remove("PIAUTHD_NO_AUTOSTART")
                .args(["status", "--json"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut pids = std::collections::HashSet::new();
    let mut started_messages = 0;
    for out in &outputs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        pids.insert(v["pid"].as_u64().unwrap());
        if stderr.contains("started piauthd") {
            started_messages += 1;
            assert!(stderr.contains("its log is"), "{stderr}");
        }
    }
    assert_eq!(pids.len(), 1, "all ten were served by one daemon: {pids:?}");
    assert_eq!(started_messages, 1, "exactly one client started it");
    let pid = *pids.iter().next().unwrap() as i32;
    // Exactly one piauthd process serves this sandbox's socket.
    let socket = sb.socket().display().to_string();
    let serving: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let exe = std::fs::read_link(format!("/proc/{p}/exe")).ok();
            let env = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
            exe.is_some_and(|e| e.ends_with("piauthd"))
                && String::from_utf8_lossy(&env).contains(&format!("PIAUTHD_SOCKET={socket}"))
        })
        .collect();
    assert_eq!(serving, vec![pid]);
    // The sandbox's XDG_STATE_HOME is its own directory.
    assert!(sb.dir.path().join("piauthd/piauthd.log").exists());
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}
