//! The login callback against another local user (uid 65534, through
//! `setpriv`, with Debian's `/usr/bin/python3` as its tool) and against a
//! flood: the real daemon, the real mock issuer, a real browser.
//!
//! What the same attacks achieved before these defences (debug build, 2
//! cores): a code for `attacker@evil.example`, delivered with the `state`
//! from `xdg-open`'s argv, was accepted (200) and replaced the victim's
//! `auth.json`; a squatter on `[::1]` got `code` and `state` from Chromium
//! and showed it its own page; 200 idle connections at 64 descriptors spun
//! the daemon at 58-68 % of a core and Chromium's login failed after 11 s;
//! at EMFILE the accept loop took 106 %; any `Host` was served.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_client::proto::v1::login_event::Event;
use piauth_tests::host::free_addr;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::process::rss_kb;
use piauth_tests::sandbox::NOBODY;
use piauth_tests::{Daemon, Sandbox};

use crate::login::{Begun, begin, browse, http, outcome, redirect_of};

/// A mock, a daemon, a client, and the victim's existing login
/// (`old@example.com`).
struct Victim {
    mock: MockOpenAi,
    sb: Sandbox,
    daemon: Daemon,
    client: Client,
    /// The configured callback address: port 0 unless the test squats a
    /// fixed port first; a login's own port is in its AuthorizeUrl event.
    callback: SocketAddr,
}

/// Starts the victim with its callback on port 0 (the kernel's choice,
/// reported per login); `nofile` caps the daemon's descriptors (soft and
/// hard, so the daemon cannot raise it back).
async fn victim(nofile: Option<u64>) -> Victim {
    victim_on("127.0.0.1:0".parse().unwrap(), nofile).await
}

async fn victim_on(callback: SocketAddr, nofile: Option<u64>) -> Victim {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-old", "old@example.com", "plus");
    piauth_tests::fixtures::write_codex_login(&sb.auth_file(), &set).unwrap();
    let issuer = mock.issuer();
    let daemon = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CALLBACK_ADDR", callback.to_string())
            .env("PIAUTHD_CALLBACK_FALLBACK_ADDR", "127.0.0.1:0");
        if let Some(n) = nofile {
            piauth_tests::process::limit_nofile(cmd, n);
        }
    });
    let client = Client::connect(sb.socket()).await.unwrap();
    Victim {
        mock,
        sb,
        daemon,
        client,
        callback,
    }
}

/// A Python program run as the attacker, uid 65534 (switching uid needs
/// root: every test using it is ignored unless run as root).
fn attacker(script: &str) -> Command {
    let python = "/usr/bin/python3";
    assert!(
        std::path::Path::new(python).exists(),
        "the attacker needs Debian's python3 (CI installs it)"
    );
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args(["--clear-groups", "--", python, "-c", script])
        .env_clear()
        .stdin(Stdio::null());
    cmd
}

/// The attacker's HTTP client: GETs each `(host, port, path)` without
/// following redirects; prints `status N [location]` or `closed`.
const FETCH: &str = r#"
import http.client, sys
for target in sys.argv[1:]:
    host, port, path = target.split(" ", 2)
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("GET", path, headers={"Host": "localhost:" + port})
        r = c.getresponse()
        print("status", r.status, r.getheader("location") or "", flush=True)
    except (ConnectionError, http.client.RemoteDisconnected) as e:
        print("closed", type(e).__name__, flush=True)
"#;

/// Runs [`FETCH`] as the attacker; one line per target.
fn attacker_fetch(targets: &[String]) -> Vec<String> {
    let out = attacker(FETCH).args(targets).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `host port path` of a URL, for [`FETCH`].
fn target(url: &str) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    format!(
        "{} {} {path}",
        u.host_str().unwrap().trim_matches(['[', ']']),
        u.port().unwrap(),
    )
}

/// Whether this host has IPv6 loopback (containers may have it off; then
/// no one can squat `[::1]` either).
fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

fn account_in(sb: &Sandbox) -> String {
    let doc = piauth_tests::daemon::read_auth(&sb.auth_file()).unwrap();
    doc["openai-codex"]["accountId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The attacker learns `state` (as it could from `xdg-open`'s argv before),
/// signs in at the issuer as itself, and delivers its own code to the
/// victim's listener on both loopback families, and tries the start URL.
/// Every connection is closed unread; the victim's login then completes,
/// as the victim, and says which login it kept beside it.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
async fn a_stolen_state_cannot_log_the_victim_in_as_the_attacker() {
    piauth_tests::host::assert_root();
    let mut v = victim(None).await;
    let before = std::fs::read(v.sb.auth_file()).unwrap();
    let begun = begin(&mut v.client, 0).await;
    let port = begun.callback().port();
    let Begun {
        mut stream,
        start,
        issuer,
        ..
    } = begun;
    let state = crate::login::query_param(&issuer, "state");

    // The attacker's own sign-in: a code for attacker@evil.example.
    let own = attacker_fetch(&[target(&format!(
        "{issuer}&login_hint=attacker%40evil.example"
    ))]);
    let injected = own[0].split(' ').nth(2).unwrap().to_owned();
    assert!(injected.contains(&state), "{own:?}");
    let path = injected.split_once(&format!(":{port}")).unwrap().1;
    let mut tries = vec![format!("127.0.0.1 {port} {path}"), target(&start)];
    if ipv6_loopback() {
        tries.push(format!("::1 {port} {path}"));
    }
    let seen = attacker_fetch(&tries);
    assert_eq!(seen.len(), tries.len(), "{seen:?}");
    assert!(
        seen.iter().all(|l| l.starts_with("closed")),
        "every attacker connection is closed unanswered: {seen:?}"
    );
    assert_eq!(
        v.mock.stats().exchanges,
        0,
        "the attacker's code was never used"
    );
    assert_eq!(
        std::fs::read(v.sb.auth_file()).unwrap(),
        before,
        "auth.json is unchanged"
    );

    // The victim's own browser still finishes the login.
    assert_eq!(browse(&start).await.status(), 200);
    let Event::Success(s) = outcome(&mut stream).await else {
        panic!("the victim's login completes")
    };
    assert_eq!(
        (s.account_id.as_str(), s.email.as_str()),
        ("acc-login", "login@example.com")
    );
    assert_eq!(
        s.kept, "old@example.com",
        "it says which login it kept beside the new one"
    );
    assert_eq!(account_in(&v.sb), "acc-login");
    let log = v.daemon.logs();
    assert!(
        log.contains(&format!(
            "refused a connection from another user (uid {NOBODY})"
        )),
        "{log}"
    );
    let code = crate::login::query_param(&injected, "code");
    assert!(
        !log.contains(&state) && !log.contains(&code),
        "no secret in the log"
    );
}

/// The attacker listens on `[::1]` at the victim's callback port first.
/// The browser login is refused before any URL is shown, naming the holder
/// and the device-code login; nothing ever connects to the squatter.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
async fn a_squatter_on_ipv6_loopback_gets_no_redirect() {
    piauth_tests::host::assert_root();
    if !ipv6_loopback() {
        // With no [::1] there is nothing to squat, but nothing tested either.
        piauth_tests::host::skip_outside_ci("IPv6 loopback ([::1] to squat)");
        return;
    }
    // A fixed port is the point here: the attacker takes it first.
    let mut v = victim_on(free_addr(), None).await;
    let port = v.callback.port();
    let squat = format!(
        r#"
import socket, sys
s = socket.socket(socket.AF_INET6)
s.bind(("::1", {port}))
s.listen(8)
print("bound", flush=True)
s.settimeout(8)
try:
    c, _ = s.accept()
    print("GOT", c.recv(200)[:60], flush=True)
except socket.timeout:
    print("nothing", flush=True)
"#
    );
    let mut squatter = attacker(&squat).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = squatter.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"bound\n");

    let mut stream = v
        .client
        .login("", pb::LoginMethod::Browser, 0)
        .await
        .unwrap();
    let first_event = stream.next().await.unwrap();
    let Some(Event::Failure(f)) = first_event else {
        panic!("the browser login is refused before any URL: {first_event:?}")
    };
    assert_eq!(f.kind, pb::LoginFailureKind::CallbackPortHeld as i32);
    for says in [
        format!("[::1]:{port}"),
        format!("uid {NOBODY}"),
        format!("process {}", squatter.id()),
        "--device".to_owned(),
    ] {
        assert!(f.message.contains(&says), "{says}: {}", f.message);
    }
    assert!(stream.next().await.unwrap().is_none(), "nothing follows");
    assert!(
        !crate::login::listening(v.callback),
        "and nothing of ours listens"
    );

    // The CLI says the same and exits non-zero.
    let cli = v.sb.authctl(&["login", "--no-browser"]);
    let said = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success() && said.contains("--device"), "{said}");
    assert!(
        !said.contains("oauth/authorize"),
        "no redirect is shown: {said}"
    );

    let waited = squatter.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(
        rest.trim(),
        "nothing",
        "the squatter got no connection ({waited:?})"
    );
    assert_eq!(v.mock.stats().exchanges, 0);
}

/// CPU time of a process so far, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat(5), 12 and 13 here.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Percent of one core the process used over `window`, measured from
/// /proc/<pid>/stat, while `during` runs (it may take up to the window).
/// The rest of the window is slept: it is the measurement, not a wait.
async fn cpu_percent_over<F: std::future::Future<Output = ()>>(
    pid: i32,
    window: Duration,
    during: F,
) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (t0, w0) = (cpu_ticks(pid), Instant::now());
    during.await;
    tokio::time::sleep(window.saturating_sub(w0.elapsed())).await;
    (cpu_ticks(pid) - t0) as f64 / hz / w0.elapsed().as_secs_f64() * 100.0
}

/// GetToken, a few times over the window, each within a second.
async fn keeps_serving(client: &Client, window: Duration) {
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        let mut c = client.clone();
        let got = tokio::time::timeout(Duration::from_secs(1), c.get_token("", 0)).await;
        assert!(matches!(got, Ok(Ok(_))), "GetToken is served: {got:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// 200 idle connections from the attacker on the callback port while the
/// daemon may hold only 64 descriptors: it stays idle, keeps serving, and a
/// real browser login completes within 2 s.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
async fn two_hundred_idle_connections_at_64_descriptors() {
    piauth_tests::host::assert_root();
    let mut v = victim(Some(64)).await;
    let begun = begin(&mut v.client, 0).await;
    let port = begun.callback().port();
    let Begun {
        mut stream, start, ..
    } = begun;
    let v6 = if ipv6_loopback() { "True" } else { "False" };
    let flood = format!(
        r#"
import socket, time
held = []
for i in range(200):
    family, host = (socket.AF_INET6, "::1") if {v6} and i % 2 else (socket.AF_INET, "127.0.0.1")
    s = socket.socket(family)
    s.connect((host, {port}))
    held.append(s)
print("open", len(held), flush=True)
time.sleep(60)
"#
    );
    let mut flooder = attacker(&flood).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = [0u8; 9];
    std::io::Read::read_exact(flooder.stdout.as_mut().unwrap(), &mut line).unwrap();
    assert_eq!(&line, b"open 200\n");
    let log_before = v.daemon.logs().len();

    let pid = v.daemon.pid();
    let window = Duration::from_secs(3);
    let cpu = cpu_percent_over(pid, window, keeps_serving(&v.client, window)).await;
    let rss_mb = rss_kb(pid as u32) as f64 / 1024.0;
    eprintln!(
        "flood: daemon CPU {cpu:.1} % of a core, RSS {rss_mb:.1} MB, log +{} bytes",
        v.daemon.logs().len() - log_before
    );
    assert!(cpu < 5.0, "the daemon used {cpu:.1} % of a core");
    assert!(rss_mb < 64.0, "the daemon holds {rss_mb:.1} MB");

    let took = match crate::browser::chromium() {
        Some(browser) => {
            let t = Instant::now();
            let out = crate::browser::headless(&browser, &start).await;
            let dom = String::from_utf8_lossy(&out.stdout);
            assert!(dom.contains("You can close this window"), "{dom}");
            t.elapsed()
        }
        None => {
            assert!(std::env::var_os("CI").is_none(), "CI must install chromium");
            eprintln!("no chromium here: the login goes through a plain HTTP client");
            let t = Instant::now();
            assert_eq!(browse(&start).await.status(), 200);
            t.elapsed()
        }
    };
    eprintln!("flood: the browser login took {took:?}");
    assert!(took < Duration::from_secs(2), "the login took {took:?}");
    assert!(matches!(outcome(&mut stream).await, Event::Success(_)));
    // The flood began before `log_before`: count over the whole log.
    let refusals = v
        .daemon
        .logs()
        .matches("refused a connection from another user")
        .count();
    assert!(
        (1..=2).contains(&refusals),
        "200 refusals are logged once per window, not {refusals} times"
    );
    let _ = flooder.kill();
    let _ = flooder.wait();
}

/// At the descriptor limit `accept` fails at once, again and again: the
/// listener backs off instead of spinning, logs it once, keeps GetToken
/// served, and takes the browser as soon as descriptors are free again.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_accept_backs_off() {
    let mut v = victim(None).await;
    let begun = begin(&mut v.client, 0).await;
    let callback = begun.callback();
    let Begun {
        mut stream, start, ..
    } = begun;
    let pid = v.daemon.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // A soft limit below what is open: every new descriptor fails with
    // EMFILE. (The hard limit stays, so the soft one can be put back.)
    let limit = |n: usize| {
        let ok = Command::new("prlimit")
            .arg(format!("--pid={pid}"))
            .arg(format!("--nofile={n}:"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "prlimit (util-linux) sets the daemon's limit");
    };
    limit(open.saturating_sub(2));
    let waiting: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(callback).unwrap())
        .collect();
    let window = Duration::from_secs(3);
    let cpu = cpu_percent_over(pid, window, keeps_serving(&v.client, window)).await;
    eprintln!("EMFILE: daemon CPU {cpu:.1} % of a core");
    assert!(cpu < 5.0, "the daemon used {cpu:.1} % of a core at EMFILE");
    // Within one log window: exactly one line, naming the error.
    let log = v.daemon.logs();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("accept failed"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "accept errors are logged once per window: {lines:?}"
    );
    assert!(lines[0].contains("Too many open files"), "{lines:?}");

    limit(1024);
    drop(waiting);
    let t = Instant::now();
    assert_eq!(browse(&start).await.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(matches!(outcome(&mut stream).await, Event::Success(_)));
}

/// From the victim's own uid (what every system without a socket-owner
/// table relies on): a wrong `Host` and a missing or wrong cookie are
/// refused and leave the login open; a second use of the start URL ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_wants_its_host_and_its_cookie() {
    let mut v = victim(None).await;
    let begun = begin(&mut v.client, 0).await;
    let port = begun.callback().port();
    let Begun {
        mut stream,
        start,
        issuer,
        ..
    } = begun;
    let location = redirect_of(&issuer).await;
    let rebinding = http()
        .get(&location)
        .header("host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status(), 421, "a DNS-rebinding page gets nothing");
    let started = http()
        .get(start.replace("localhost", "127.0.0.1"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 421, "nor does its start");
    let bare = http().get(&location).send().await.unwrap();
    assert_eq!(bare.status(), 403);
    assert!(
        bare.text()
            .await
            .unwrap()
            .contains("not started from this browser")
    );
    let forged = http()
        .get(&location)
        .header("cookie", "piauthd_login=00000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(v.mock.stats().exchanges, 0);
    assert_eq!(account_in(&v.sb), "acc-old");

    // The real start works, once; the second use ends the login.
    let first = http().get(&start).send().await.unwrap();
    assert_eq!(first.status(), 302);
    let again = http().get(&start).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let Event::Failure(f) = outcome(&mut stream).await else {
        panic!("a reused start URL ends the login")
    };
    assert!(f.message.contains("opened a second time"), "{}", f.message);
    assert_eq!(account_in(&v.sb), "acc-old");
}

/// `pi-authctl login` hands the browser opener only the one-time start URL:
/// its argv (readable by every user) holds no `state` and no challenge.
/// The opener here is a script, named by `$BROWSER` (which the opener
/// honours before the desktop's default), that records its argv; the test
/// then plays the browser with that URL, and the login completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_opener_never_sees_state() {
    let v = victim(None).await;
    let bin = v.sb.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let argv = v.sb.dir.path().join("opener-argv");
    let opener = bin.join("record-browser");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\n", argv.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cli =
        v.sb.command("pi-authctl")
            .arg("login")
            .env("BROWSER", &opener)
            .env("DISPLAY", ":99")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let recorded = piauth_tests::wait::eventually(Duration::from_secs(15), || {
        std::fs::read_to_string(&argv).is_ok_and(|a| !a.is_empty())
    });
    assert!(recorded, "the opener was run");
    let args = std::fs::read_to_string(&argv).unwrap();
    let url = args.trim();
    // The port is the kernel's (port 0 configured); the browse below lands
    // on the daemon's callback there, which proves it is the daemon's.
    let port = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(0);
    assert!(
        port != 0 && url.starts_with(&format!("http://localhost:{port}/start/")),
        "{args}"
    );
    for secret in ["state", "code_challenge", "oauth/authorize"] {
        assert!(
            !args.contains(secret),
            "{secret} in the opener's argv: {args}"
        );
    }
    assert_eq!(browse(url).await.status(), 200);
    let out = tokio::task::spawn_blocking(move || cli.wait_with_output().unwrap())
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("as login@example.com") && said.contains("old@example.com is kept beside it"),
        "{said}"
    );
}
