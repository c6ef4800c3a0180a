use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use piauth_tests::wait::eventually;
use piauth_tests::{Daemon, Sandbox};

#[test]
fn socket_is_0600_in_a_0700_directory() {
    let sb = Sandbox::new();
    let _d = Daemon::start(&sb);
    let sock = std::fs::symlink_metadata(sb.socket()).unwrap();
    let dir = std::fs::metadata(sb.socket().parent().unwrap()).unwrap();
    assert_eq!(sock.mode() & 0o777, 0o600);
    assert_eq!(dir.mode() & 0o777, 0o700);
}

#[test]
fn a_second_instance_is_refused_with_a_clear_message() {
    let sb = Sandbox::new();
    let first = Daemon::start(&sb);
    let out = sb.command("piauthd").stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "another piauthd (pid {}) is already serving",
            first.pid()
        )),
        "{err}"
    );
    // The first one still serves.
    assert!(sb.authctl(&["status"]).status.success());
}

#[test]
fn a_stale_socket_from_a_crash_is_replaced() {
    let sb = Sandbox::new();
    let mut first = Daemon::start(&sb);
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    assert!(sb.socket().exists(), "SIGKILL leaves the socket behind");
    let _second = Daemon::start(&sb);
    assert!(sb.authctl(&["status"]).status.success());
}

#[test]
fn a_leftover_socket_file_without_a_daemon_is_replaced() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.socket().parent().unwrap()).unwrap();
    std::fs::set_permissions(
        sb.socket().parent().unwrap(),
        PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    drop(std::os::unix::net::UnixListener::bind(sb.socket()).unwrap());
    let _d = Daemon::start(&sb);
    assert!(sb.authctl(&["status"]).status.success());
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let sb = Sandbox::new();
    let mut d = Daemon::start(&sb);
    d.signal(libc::SIGTERM);
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}\n{}", d.logs());
    assert!(!sb.socket().exists());
    let out = sb.authctl(&["status"]);
    assert_eq!(out.status.code(), Some(3), "not running is exit code 3");
    assert!(String::from_utf8_lossy(&out.stderr).contains("piauthd is not running"));
}

/// Opens the socket to everyone (as a misconfiguration would) and calls it
/// as another uid. `pi-authctl` refuses first (the directory is not its
/// user's); a raw gRPC call that skips the client's checks (curl over the
/// socket) still meets the daemon's peer check.
#[test]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
fn a_foreign_uid_is_refused() {
    piauth_tests::host::assert_root();
    let sb = Sandbox::new();
    let _d = Daemon::start(&sb);
    for dir in [sb.dir.path(), sb.socket().parent().unwrap()] {
        std::fs::set_permissions(dir, PermissionsExt::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(sb.socket(), PermissionsExt::from_mode(0o666)).unwrap();
    let authctl = piauth_tests::bin_path("pi-authctl");
    piauth_tests::sandbox::make_reachable(&authctl);
    let as_nobody = |program: &std::ffi::OsStr| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program);
        c
    };
    let out = as_nobody(authctl.as_os_str())
        .args(["--socket"])
        .arg(sb.socket())
        .args(["token"])
        .output()
        .expect("setpriv is in util-linux");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("belongs to uid 0 (root)"), "{err}");
    assert!(err.contains("not to you (uid 65534"), "{err}");
    let empty = sb.dir.path().join("empty-request");
    std::fs::write(&empty, [0u8; 5]).unwrap();
    std::fs::set_permissions(&empty, PermissionsExt::from_mode(0o644)).unwrap();
    let out = as_nobody("curl".as_ref())
        .args(["-sS", "--http2-prior-knowledge", "--unix-socket"])
        .arg(sb.socket())
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("--data-binary")
        .arg(format!("@{}", empty.display()))
        .args(["-D", "-", "-o", "/dev/null"])
        .arg("http://localhost/piauth.v1.Auth/GetToken")
        .output()
        .expect("curl (with HTTP/2) runs the raw call");
    let headers = String::from_utf8_lossy(&out.stdout);
    assert!(
        headers.contains("grpc-status: 7"),
        "{headers}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        headers.contains("piauthd%20serves%20only%20uid%200") && headers.contains("uid%2065534"),
        "{headers}"
    );
    // The owner is still served, once its directory is private again.
    std::fs::set_permissions(
        sb.socket().parent().unwrap(),
        PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(2), || sb
        .authctl(&["status"])
        .status
        .success()));
}

/// A runtime directory of another user (root under `sudo -E` keeps the
/// user's XDG_RUNTIME_DIR) is refused: the daemon creates nothing in it.
#[test]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
fn a_runtime_dir_of_another_uid_is_refused() {
    piauth_tests::host::assert_root();
    let sb = Sandbox::new();
    let runtime = sb.dir.path().join("xdg");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&runtime, Some(4242), Some(4242)).unwrap();
    let out = sb
        .command("piauthd")
        .env_remove("PIAUTHD_SOCKET")
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{} belongs to uid 4242, but piauthd runs as uid 0",
            runtime.display()
        )) && err.contains("not via sudo -E"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&runtime).unwrap().count(),
        0,
        "nothing created"
    );
}

/// A connection with no open call is closed after the idle timeout; one
/// holding a WatchToken stream is not, and its stream keeps delivering.
/// Opens a connection that sends nothing and reads until the daemon ends
/// it (its HTTP/2 settings arrive first); false if 5 s pass first.
fn an_idle_connection_is_closed(socket: &std::path::Path) -> bool {
    use std::io::Read;
    let mut idle = std::os::unix::net::UnixStream::connect(socket).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    tokio::task::block_in_place(|| {
        loop {
            match idle.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_but_a_watching_one_stays() {
    let sb = Sandbox::new();
    let exp = piauth_tests::fixtures::now_ms() + 86_400_000;
    let token = |nonce: &str| {
        piauth_tests::fixtures::access_token("acc-i", "i@example.com", "pro", exp / 1000, nonce)
    };
    let first = token("first");
    sb.write_auth(&piauth_tests::fixtures::auth_json(
        &first, "rt-i", exp, "acc-i",
    ));
    let _d = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_CONNECTION_IDLE_SECS", "1");
    });
    let mut watcher = piauth_client::Client::connect(sb.socket()).await.unwrap();
    let mut stream = watcher.watch_token("openai-codex").await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().access_token, first);
    let started = std::time::Instant::now();
    let closed = an_idle_connection_is_closed(&sb.socket());
    let after = started.elapsed();
    assert!(closed, "the idle connection was closed");
    assert!(
        after >= Duration::from_millis(900),
        "not before the timeout: {after:?}"
    );
    // Past the timeout once more (a second idle connection, opened now, is
    // closed too), the watching connection still delivers.
    assert!(
        an_idle_connection_is_closed(&sb.socket()),
        "the second idle connection was closed"
    );
    let second = token("second");
    sb.write_auth(&piauth_tests::fixtures::auth_json(
        &second, "rt-i", exp, "acc-i",
    ));
    let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the stream is alive")
        .unwrap()
        .expect("a token, not the end");
    assert_eq!(next.access_token, second);
}

/// After a daemon dies, the clients' hint is the command that started it,
/// its settings included: followed literally, it starts the same daemon
/// (same store, same issuer and backend), never a bare `piauthd` against
/// OpenAI's issuer with another store.
#[test]
fn the_hint_after_a_daemon_dies_starts_the_same_daemon_again() {
    let sb = Sandbox::new();
    // Not the sandbox's defaults, so the hint must carry them.
    let issuer = "http://127.0.0.1:7";
    let backend = "http://127.0.0.1:7/backend-api";
    let agent = sb.dir.path().join("elsewhere");
    std::fs::create_dir_all(&agent).unwrap();
    let mut first = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", issuer)
            .env("PIAUTHD_CODEX_BASE_URL", backend)
            .arg("--agent-dir")
            .arg(&agent);
    });
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(5)).expect("killed");

    let out = sb.authctl(&["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let hint = err
        .split("start it again as it was started: `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("a start command in: {err}"))
        .to_owned();
    for part in [
        format!("PIAUTHD_ISSUER={issuer}"),
        format!("PIAUTHD_CODEX_BASE_URL={backend}"),
        format!("--agent-dir {}", agent.display()),
    ] {
        assert!(hint.contains(&part), "{part} in the hint: {hint}");
    }
    assert!(!err.contains("start one with"), "{err}");

    // Followed literally, by a shell that has nothing but PATH and HOME.
    let bin_dir = piauth_tests::sandbox::bin_path("piauthd")
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut again = Command::new("bash")
        .env_clear()
        .env("PATH", path)
        .env("HOME", sb.dir.path())
        .args(["-c", &hint])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sb.dir.path().join("again.log")).unwrap())
        .spawn()
        .unwrap();
    let served = eventually(Duration::from_secs(10), || {
        sb.authctl(&["status"]).status.success()
    });
    let status = String::from_utf8_lossy(&sb.authctl(&["status"]).stdout).into_owned();
    // The daemon the hint started (bash ran it in its place), whatever its pid.
    let json = sb.authctl(&["status", "--json"]);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json.stdout)
        && let Some(pid) = v["pid"].as_i64()
    {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let _ = again.kill();
    let _ = again.wait();
    let log = std::fs::read_to_string(sb.dir.path().join("again.log")).unwrap_or_default();
    assert!(served, "the hint `{hint}` started no daemon:\n{log}");
    assert!(status.contains(&format!("issuer   {issuer}")), "{status}");
    assert!(
        status.contains(&agent.join("auth.json").display().to_string()),
        "the same store: {status}"
    );
}
