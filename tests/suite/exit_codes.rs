//! `pi-authctl`'s exit status, one test per row of the README's table
//! (between its `<!-- exit-codes -->` markers): the real binary against a
//! real daemon and the mock where the row needs them. Row 0 also holds the
//! closed-pipe cases: output into a pipe whose reader is gone ends quietly,
//! never with a panic.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::wait::eventually;
use piauth_tests::{Daemon, Sandbox, bin_path};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The statuses the README's table lists, in its order.
fn readme_rows() -> Vec<u8> {
    let readme = include_str!("../../README.md");
    let start = readme.find("<!-- exit-codes").expect("the exit-code table");
    let end = readme.find("<!-- /exit-codes -->").expect("its end");
    readme[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn the_readme_table_has_exactly_the_rows_tested_here() {
    assert_eq!(readme_rows(), [0, 1, 2, 3, 4, 130]);
}

/// A sandbox logged in at the mock, and a daemon on it.
async fn logged_in(config: MockConfig) -> (MockOpenAi, Sandbox, Daemon) {
    let mock = MockOpenAi::start(config).await.unwrap();
    let sb = Sandbox::new();
    let set = mock
        .state
        .seed_login("acc-exit", "exit@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let daemon = Daemon::start_against(&sb, &mock.issuer());
    (mock, sb, daemon)
}

/// Waits for `child` to exit within `limit`; kills it and fails otherwise.
fn exit_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    if !eventually(limit, || child.try_wait().ok().flatten().is_some()) {
        let _ = child.kill();
        panic!("{what} did not exit within {limit:?}");
    }
    child.wait().unwrap()
}

/// `pi-authctl watch | head -c 10`: reads 10 bytes of watch's output, then
/// closes the pipe. Returns the still running watch.
fn watch_then_close(sb: &Sandbox) -> Child {
    let mut watch = sb
        .command("pi-authctl")
        .arg("watch")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    let mut stdout = watch.stdout.take().unwrap();
    stdout.read_exact(&mut head).unwrap();
    watch
}

/// Row 0: success; and a reader that stops reading (`watch | head -c 10`,
/// `status | true`) ends the command quietly with 0, without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_0_success_also_when_the_reader_goes_away() {
    let (_mock, sb, _d) = logged_in(MockConfig::default()).await;
    let out = sb.authctl(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // `pi-authctl watch | head -c 10` with no new token coming: watch sees
    // the reader go at once, not at the next token (30 minutes away here,
    // days with real tokens).
    let mut idle = watch_then_close(&sb);
    let status = exit_within(
        &mut idle,
        Duration::from_secs(10),
        "watch whose reader went away, with no token to write",
    );
    assert_eq!(status.code(), Some(0));

    // `pi-authctl watch | head -c 10`: read 10 bytes, close, and make the
    // next token arrive so that watch writes into the closed pipe.
    let mut watch = watch_then_close(&sb);
    let refreshed = sb.authctl(&["refresh"]);
    assert!(refreshed.status.success(), "{}", stderr(&refreshed));
    let status = exit_within(
        &mut watch,
        Duration::from_secs(10),
        "watch into a closed pipe",
    );
    let mut err = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");

    // `pi-authctl status | true`: the reader is gone before the first byte.
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["token"],
        &["models"],
    ] {
        let mut child = sb
            .command("pi-authctl")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} said: {err}");
    }
}

/// Starts `pi-authctl login --no-browser` and returns it with the sign-in
/// URL it printed.
fn begin_login(sb: &Sandbox) -> (Child, BufReader<std::process::ChildStderr>, String) {
    let mut child = sb
        .command("pi-authctl")
        .args(["login", "--no-browser"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "login said no URL");
        if let Some(url) = line.trim().strip_prefix("http") {
            break format!("http{url}");
        }
    };
    (child, lines, url)
}

/// A daemon whose login callback listens on port 0: the URL the CLI
/// prints names the port the kernel gave it.
fn login_daemon(sb: &Sandbox, mock: &MockOpenAi) -> Daemon {
    let issuer = mock.issuer();
    Daemon::start_with(sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CALLBACK_ADDR", "127.0.0.1:0")
            .env("PIAUTHD_CALLBACK_FALLBACK_ADDR", "127.0.0.1:0");
    })
}

/// Row 1: an error. The issuer denies the login: the browser (here an
/// HTTP client following the redirects) lands on the callback with
/// `error=access_denied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_1_a_login_the_issuer_denies() {
    let mock = MockOpenAi::start(MockConfig {
        approve: false,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let _d = login_daemon(&sb, &mock);
    let (mut child, mut lines, url) = begin_login(&sb);
    // As a browser: the start URL's cookie, the issuer, back to the callback.
    let landed = crate::login::browse(&url).await;
    assert_eq!(landed.status(), 400, "the callback refuses a denied login");
    let status = tokio::task::spawn_blocking(move || {
        exit_within(&mut child, Duration::from_secs(10), "a denied login")
    })
    .await
    .unwrap();
    let mut err = String::new();
    lines.read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("login failed"), "{err}");
}

/// Row 2: bad usage, before anything is sent (no daemon runs here).
#[test]
fn status_2_bad_usage() {
    let sb = Sandbox::new();
    let out = sb.authctl(&["complete", "hi", "--effort", "huge"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid value 'huge'"), "{err}");
    assert!(err.contains("minimal, low, medium, high, xhigh"), "{err}");
    for args in [
        &["watch", "--bogus"][..],
        &["frobnicate"],
        &["login", "--timeout", "soon"],
    ] {
        let out = sb.authctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

/// `pi-authctl` with the sandbox's environment and autostart on, run from
/// a copy that has no `piauthd` beside it when `alone` is set.
fn autostarting(sb: &Sandbox, alone: bool) -> Command {
    let base = sb.command("pi-authctl");
    let bin = if alone {
        let dir = sb.dir.path().join("lonely-bin");
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("pi-authctl");
        std::fs::copy(bin_path("pi-authctl"), &copy).unwrap();
        copy
    } else {
        bin_path("pi-authctl")
    };
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.env_remove("PIAUTHD_NO_AUTOSTART").stdin(Stdio::null());
    if alone {
        cmd.env("PATH", "/nonexistent");
    }
    cmd
}

/// Row 3: not running and not started. Autostart off; autostart with no
/// `piauthd` to start; autostart refused by a bad config file, whose first
/// error line (file, line, key) is shown once; a `--socket` nothing serves.
#[test]
fn status_3_not_running_and_not_started() {
    let sb = Sandbox::new();
    let out = sb.authctl(&["--no-autostart", "status"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("start it with `piauthd`"), "{err}");

    let out = autostarting(&sb, true).arg("status").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("cannot find the piauthd binary"), "{err}");

    let config = sb.dir.path().join("config/piauthd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "# mine\nlogin_timeout_secs = \"10\"\n").unwrap();
    let out = autostarting(&sb, false).arg("status").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let first = format!(
        "piauthd cannot start: the config file {} is invalid at line 2, key `login_timeout_secs`: \
         invalid type: string \"10\", expected u64",
        config.display()
    );
    assert!(err.contains(&first), "{err}");
    assert_eq!(err.matches("invalid type").count(), 1, "said once: {err}");
    assert!(!sb.socket().exists(), "no daemon was started");
    std::fs::remove_file(&config).unwrap();

    let typo = sb.dir.path().join("piauthd/piauthd.scok");
    let out = autostarting(&sb, false)
        .arg("--socket")
        .arg(&typo)
        .arg("status")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "nothing serves {}; the default is {}",
            typo.display(),
            sb.socket().display()
        )),
        "{err}"
    );
    assert!(!sb.socket().exists(), "no daemon was started for a typo");
}

/// Row 4: not logged in. `watch` says so and exits (it used to block,
/// silent); `watch --wait` says it waits; a provider piauthd cannot log in
/// to is not sent to `pi-authctl login`.
#[test]
fn status_4_not_logged_in() {
    let sb = Sandbox::new();
    let _d = Daemon::start(&sb);
    for args in [&["token"][..], &["watch"]] {
        let mut child = sb
            .command("pi-authctl")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = exit_within(&mut child, Duration::from_secs(10), "logged out");
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(status.code(), Some(4), "{args:?}: {err}");
        assert!(err.contains("pi-authctl login"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }

    let mut waiting = sb
        .command("pi-authctl")
        .args(["watch", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(waiting.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let still_running = waiting.try_wait().unwrap().is_none();
    let _ = waiting.kill();
    let _ = waiting.wait();
    assert!(line.contains("waiting for a login"), "{line}");
    assert!(still_running, "watch --wait waits");

    let out = sb.authctl(&["token", "--provider", "anthropic"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("log in to anthropic with pi itself"), "{err}");
    assert!(!err.contains("pi-authctl login"), "{err}");
}

/// Row 130: Ctrl-C during a login cancels it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_130_ctrl_c_cancels_a_login() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    let _d = login_daemon(&sb, &mock);
    let (mut child, mut lines, _url) = begin_login(&sb);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = exit_within(&mut child, Duration::from_secs(10), "a cancelled login");
    let mut err = String::new();
    lines.read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("login cancelled"), "{err}");
}
