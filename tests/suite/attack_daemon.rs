//! Attacks on the daemon itself, each run against the real binary: a root
//! daemon in a user's files (`sudo -E`), a FIFO and a 100 MB file at
//! `auth.json`, floods of streams and idle connections at a 1,024
//! descriptor limit, symlinked lock files, and a plain-http issuer.
//!
//! Resource figures come from `/proc/<pid>/stat` and `/proc/<pid>/status`
//! of the daemon over a measured window. Each test prints what it measured,
//! so running it against an older build (`PIAUTHD_TEST_DAEMON=<path>`) shows
//! what the attack achieved before.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use piauth_client::proto::v1 as pb;
use piauth_client::proto::v1::login_event::Event;
use piauth_client::{Client, Reason};
use piauth_tests::fixtures::{access_token, auth_json, now_ms};
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::process::{cpu_percent, limit_nofile, open_fds, peak_rss_kb, rss_kb};
use piauth_tests::wait::eventually;
use piauth_tests::{Daemon, Sandbox};

use crate::login::{Begun, begin, browse, outcome};

/// The throwaway uid that owns the victim's home in the `sudo` test.
const VICTIM: u32 = 4242;
/// The descriptor limit of the flood tests.
const NOFILE: u64 = 1024;
/// Resource bounds during a flood.
const MAX_CPU_PERCENT: f64 = 5.0;
const MAX_RSS_KB: u64 = 64 * 1024;
const MAX_LOG_BYTES: u64 = 1024 * 1024;

/// Owner, group, mode and (for a file) contents of one entry.
type Entry = (u32, u32, u32, Option<Vec<u8>>);

/// Every entry under `root`.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let bytes = meta
            .is_file()
            .then(|| std::fs::read(&p).unwrap_or_default());
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        out.insert(p, (meta.uid(), meta.gid(), meta.mode(), bytes));
    }
    out
}

/// A login valid for a day, written as pi writes it.
fn seed_valid(sb: &Sandbox) -> String {
    let exp = now_ms() + 86_400_000;
    let access = access_token("acc-a", "a@example.com", "pro", exp / 1000, "attack");
    sb.write_auth(&auth_json(&access, "rt-attack", exp, "acc-a"));
    access
}

fn rss_mb(pid: u32) -> f64 {
    rss_kb(pid) as f64 / 1024.0
}

fn log_bytes(d: &Daemon) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    size(&d.log) + size(&d.log.with_extension("err"))
}

/// `sudo -E pi-authctl refresh` starts a root daemon with the user's HOME
/// and XDG_RUNTIME_DIR. It must refuse, and change no file's owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: run with --include-ignored as root (CI does)"]
async fn a_root_daemon_in_another_users_home_refuses_and_changes_nothing() {
    piauth_tests::host::assert_root();
    let mock = piauth_tests::mock::MockOpenAi::start(Default::default())
        .await
        .unwrap();
    let sb = Sandbox::new();
    let home = sb.dir.path();
    let agent = home.join(".pi/agent");
    let runtime = home.join("xdg");
    std::fs::create_dir_all(&agent).unwrap();
    std::fs::create_dir_all(&runtime).unwrap();
    // A live login at the mock: a root daemon would refresh and rewrite it.
    let set = mock.state.seed_login("acc-v", "v@example.com", "pro");
    piauth_tests::fixtures::write_codex_login(&agent.join("auth.json"), &set).unwrap();
    for p in [
        home,
        &home.join(".pi"),
        &agent,
        &agent.join("auth.json"),
        &runtime,
    ] {
        std::os::unix::fs::chown(p, Some(VICTIM), Some(VICTIM)).unwrap();
        let mode = if p.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(p, PermissionsExt::from_mode(mode)).unwrap();
    }
    let before = snapshot(home);

    let mut cmd = sb.command("piauthd");
    cmd.env_remove("PI_CODING_AGENT_DIR")
        .env_remove("PIAUTHD_SOCKET")
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("PIAUTHD_ISSUER", mock.issuer())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let exited = tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(5), || {
            child.try_wait().ok().flatten().is_some()
        })
    });
    if !exited {
        // The daemon runs as root in the victim's files: play the attack
        // out (a refresh), so the figures show what it did.
        let mut authctl = sb.command("pi-authctl");
        authctl
            .env_remove("PI_CODING_AGENT_DIR")
            .env("PIAUTHD_SOCKET", runtime.join("piauthd/piauthd.sock"))
            .args(["refresh"]);
        let out = tokio::task::spawn_blocking(move || authctl.output())
            .await
            .unwrap()
            .unwrap();
        eprintln!("refresh as root: {}", String::from_utf8_lossy(&out.stderr));
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let after = snapshot(home);
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .map(|(p, (uid, _, mode, _))| format!("{} uid {uid} mode {mode:o}", p.display()))
        .collect();
    eprintln!("root daemon: exited by itself {exited}; changed or new: {changed:?}\n{err}");
    assert!(exited, "the root daemon must refuse to start");
    assert!(!out.status.success());
    let agent_dir = agent.display().to_string();
    assert!(
        err.contains(&format!(
            "{agent_dir} belongs to uid {VICTIM}, but piauthd runs as uid 0"
        )) && err.contains(&format!("as uid {VICTIM}, not as root (not via sudo -E)")),
        "{err}"
    );
    assert!(
        changed.is_empty(),
        "nothing changed owner, mode or bytes: {changed:?}"
    );
    assert_eq!(before.len(), after.len(), "and nothing was created");
}

/// A FIFO at `auth.json` (or a read that never returns) must not freeze
/// the daemon: calls answer with a typed error and SIGTERM ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_at_auth_json_gets_typed_errors_and_sigterm_still_works() {
    let sb = Sandbox::new();
    let c = std::ffi::CString::new(sb.auth_file().to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    sb.own(&sb.auth_file());
    let started = Instant::now();
    let mut d = Daemon::start(&sb);
    eprintln!("ready after {:?}", started.elapsed());
    let mut client = Client::connect(sb.socket()).await.unwrap();

    let asked = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(2), client.status())
        .await
        .expect("Status answers")
        .unwrap();
    let store = status.store.unwrap();
    assert_eq!(store.health, pb::StoreHealth::Unreadable as i32);
    assert!(
        store
            .detail
            .contains("is a FIFO (named pipe), not a regular file"),
        "{}",
        store.detail
    );
    let err = tokio::time::timeout(Duration::from_secs(2), client.get_token("openai-codex", 0))
        .await
        .expect("GetToken answers")
        .unwrap_err();
    let answered = asked.elapsed();
    eprintln!("Status and GetToken answered in {answered:?}: {err}");
    assert_eq!(err.reason(), Some(Reason::StoreUnavailable), "{err}");
    assert!(answered < Duration::from_secs(1));

    // A writer appears and goes again: still no hang, still typed.
    let fifo = sb.auth_file();
    let writer = std::thread::spawn(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .map(drop)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(client.status().await.is_ok());

    let term = Instant::now();
    d.signal(libc::SIGTERM);
    let exit = d.wait_exit(Duration::from_secs(2));
    eprintln!("SIGTERM ended the daemon in {:?}: {exit:?}", term.elapsed());
    assert!(exit.is_some_and(|s| s.success()), "{}", d.logs());
    // Unblock the writer if no reader ever came.
    let _ = std::fs::File::open(sb.auth_file());
    let _ = writer.join();
}

/// A 100 MB `auth.json` is refused unread: a typed error, small memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_auth_json_is_refused_with_little_memory() {
    let sb = Sandbox::new();
    let size: u64 = 100 * 1024 * 1024;
    let mut blob = String::from("{\"openai-codex\": {\"type\": \"oauth\", \"pad\": \"");
    blob.push_str(&"x".repeat(size as usize - blob.len() - 3));
    blob.push_str("\"}}");
    sb.write_auth(&blob);
    assert_eq!(blob.len() as u64, size);
    drop(blob);
    let d = Daemon::start(&sb);
    let mut client = Client::connect(sb.socket()).await.unwrap();
    let store = client.status().await.unwrap().store.unwrap();
    let pid = d.pid() as u32;
    let (rss, peak) = (rss_mb(pid), peak_rss_kb(pid));
    eprintln!(
        "daemon RSS {rss:.1} MB (peak {:.1} MB) with a {size}-byte auth.json: {}",
        peak as f64 / 1024.0,
        store.detail
    );
    assert_eq!(store.health, pb::StoreHealth::Unreadable as i32);
    assert!(
        store
            .detail
            .contains(&format!("is {size} bytes; piauthd reads at most 1 MiB")),
        "{}",
        store.detail
    );
    let err = client.get_token("openai-codex", 0).await.unwrap_err();
    assert_eq!(err.reason(), Some(Reason::StoreUnavailable), "{err}");
    assert!(peak < MAX_RSS_KB, "peak RSS {peak} kB");
}

/// Starts a daemon at the flood tests' descriptor limit with a valid login.
/// A daemon at `NOFILE` descriptors, logged in, with the mock as its
/// issuer so that a browser login can run during the flood.
fn flood_daemon(sb: &Sandbox, mock: &MockOpenAi) -> Daemon {
    seed_valid(sb);
    let issuer = mock.issuer();
    Daemon::start_with(sb, |cmd| {
        limit_nofile(cmd, NOFILE);
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CALLBACK_ADDR", "127.0.0.1:0")
            .env("PIAUTHD_CALLBACK_FALLBACK_ADDR", "127.0.0.1:0");
        // Debug level, as a user asks for it: -v.
        cmd.env_remove("RUST_LOG").arg("-v");
    })
}

/// A real browser login through the flooded daemon (a fresh connection,
/// the Login stream, Chromium on the start URL); returns the browser's time.
async fn browser_login(sb: &Sandbox) -> Duration {
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let Begun {
        mut stream, start, ..
    } = begin(&mut c, 0).await;
    let t = Instant::now();
    match crate::browser::chromium() {
        Some(browser) => {
            let out = crate::browser::headless(&browser, &start).await;
            let dom = String::from_utf8_lossy(&out.stdout);
            assert!(dom.contains("You can close this window"), "{dom}");
        }
        None => {
            assert!(std::env::var_os("CI").is_none(), "CI must install chromium");
            eprintln!("no chromium here: the login goes through a plain HTTP client");
            assert_eq!(browse(&start).await.status(), 200);
        }
    }
    let took = t.elapsed();
    assert!(
        matches!(outcome(&mut stream).await, Event::Success(_)),
        "the login succeeds"
    );
    took
}

/// What a flood left the daemon at, measured over a window.
fn measure(d: &Daemon, label: &str) -> (f64, u64) {
    let pid = d.pid() as u32;
    let cpu = cpu_percent(pid, Duration::from_secs(3));
    let rss = rss_kb(pid);
    eprintln!(
        "{label}: CPU {cpu:.1} % of a core over 3 s, RSS {:.1} MB, {} descriptors, log {} bytes",
        rss as f64 / 1024.0,
        open_fds(pid),
        log_bytes(d)
    );
    if std::env::var_os("KEEP_LOG").is_some() {
        let _ = std::fs::copy(&d.log, "/tmp/flood.log");
        let _ = std::fs::copy(d.log.with_extension("err"), "/tmp/flood.err");
    }
    (cpu, rss)
}

/// A fresh client gets a token within `limit` while the flood holds.
async fn fresh_client_served(sb: &Sandbox, limit: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    let got = tokio::time::timeout(limit, async {
        let mut c = Client::connect(sb.socket())
            .await
            .map_err(|e| e.to_string())?;
        c.get_token("openai-codex", 0)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| format!("no answer within {limit:?}"))?;
    got.map(|_| t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_watch_streams_leave_the_daemon_serving() {
    // The flood comes from the daemon's own uid: no one else can connect.
    let sb = Sandbox::new();
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let d = flood_daemon(&sb, &mock);
    let mut clients = Vec::new();
    for _ in 0..40 {
        clients.push(Client::connect(sb.socket()).await.unwrap());
    }
    let (tx, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..5000 {
        let mut c = clients[i % clients.len()].clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            match c.watch_token("openai-codex").await {
                Ok(mut stream) => {
                    let first = stream.next().await;
                    let _ = tx.send(first.is_ok());
                    // Hold the stream open until the test ends.
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    let _ = tx.send(false);
                    let _ = e;
                }
            }
        }));
    }
    drop(tx);
    let (mut held, mut refused) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while held + refused < 5000 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), opened.recv()).await {
            Ok(Some(true)) => held += 1,
            Ok(Some(false)) => refused += 1,
            _ => break,
        }
    }
    eprintln!("WatchToken streams: {held} held, {refused} refused");
    let (cpu, rss) = measure(&d, "5,000 WatchToken streams");
    let served = fresh_client_served(&sb, Duration::from_secs(2)).await;
    eprintln!("fresh GetToken during the flood: {served:?}");
    let login = browser_login(&sb).await;
    eprintln!("a browser login during the flood took {login:?}");
    // Served, not timed: a loaded CI host may be slow, a starved one never answers.
    assert!(login < Duration::from_secs(10), "the login took {login:?}");
    assert!(held > 0, "legitimate watchers are served");
    assert!(cpu < MAX_CPU_PERCENT, "CPU {cpu:.1} %");
    assert!(rss < MAX_RSS_KB, "RSS {} kB", rss);
    assert!(served.is_ok(), "{served:?}");
    assert!(log_bytes(&d) < MAX_LOG_BYTES, "log {} bytes", log_bytes(&d));
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_idle_connections_leave_the_daemon_serving() {
    // The flood comes from the daemon's own uid: no one else can connect.
    let sb = Sandbox::new();
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let d = flood_daemon(&sb, &mock);
    let socket = sb.socket();
    // Connect in a thread of its own: a full backlog blocks connect().
    let (tx, rx) = std::sync::mpsc::channel();
    let flood = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..2000 {
            match std::os::unix::net::UnixStream::connect(&socket) {
                Ok(s) => held.push(s),
                Err(e) => {
                    eprintln!("connect failed after {}: {e}", held.len());
                    break;
                }
            }
        }
        let _ = tx.send(held.len());
        held
    });
    let connected = rx.recv_timeout(Duration::from_secs(60));
    eprintln!("idle connections made: {connected:?}");
    let held = flood.join().unwrap();
    // A connect returns once the kernel queues it; wait until the daemon
    // has worked through the queue (closed every connection beyond its cap).
    let burst = Instant::now();
    let drained = tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(30), || {
            closed_by_peer(&held) + piauthd::MAX_CONNECTIONS >= held.len()
        })
    });
    eprintln!(
        "the daemon closed {} of {} idle connections within {:?} (drained: {drained})",
        closed_by_peer(&held),
        held.len(),
        burst.elapsed()
    );
    let (cpu, rss) = measure(&d, "2,000 idle connections");
    let served = fresh_client_served(&sb, Duration::from_secs(2)).await;
    eprintln!("fresh GetToken during the flood: {served:?}");
    let login = browser_login(&sb).await;
    eprintln!("a browser login during the flood took {login:?}");
    // Served, not timed: a loaded CI host may be slow, a starved one never answers.
    assert!(login < Duration::from_secs(10), "the login took {login:?}");
    let fds = open_fds(d.pid() as u32);
    let log = d.logs();
    assert_eq!(connected, Ok(2000), "every connect went through");
    assert!(cpu < MAX_CPU_PERCENT, "CPU {cpu:.1} %");
    assert!(rss < MAX_RSS_KB, "RSS {rss} kB");
    assert!(served.is_ok(), "{served:?}");
    assert!(fds < NOFILE as usize, "{fds} descriptors");
    assert!(!log.contains("cannot accept a connection"), "no EMFILE");
    assert!(log_bytes(&d) < MAX_LOG_BYTES, "log {} bytes", log_bytes(&d));
    assert!(drained);
    drop(held);
}

/// How many of `streams` the other side has closed: reading what it sent
/// (its HTTP/2 settings) ends in end of file rather than "would block".
fn closed_by_peer(streams: &[std::os::unix::net::UnixStream]) -> usize {
    use std::io::Read;
    streams
        .iter()
        .filter(|s| {
            let _ = s.set_nonblocking(true);
            let mut buf = [0u8; 512];
            let mut s = *s;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
        })
        .count()
}

/// Symlinks planted at piauthd's lock files are never followed: their
/// targets stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinked_lock_files_are_not_followed() {
    let mock = piauth_tests::mock::MockOpenAi::start(Default::default())
        .await
        .unwrap();
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-s", "s@example.com", "pro");
    piauth_tests::fixtures::write_codex_login(&sb.auth_file(), &set).unwrap();
    let victim = sb.dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious bytes").unwrap();
    let real = std::fs::canonicalize(sb.auth_file()).unwrap();
    let sidecar = PathBuf::from(format!("{}.lock.piauthd-owner", real.display()));
    std::os::unix::fs::symlink(&victim, &sidecar).unwrap();

    let d = Daemon::start_against(&sb, &mock.issuer());
    let mut client = Client::connect(sb.socket()).await.unwrap();
    let refreshed = client.refresh("openai-codex").await;
    eprintln!(
        "refresh with a symlinked sidecar: {:?}; victim now {:?}",
        refreshed.as_ref().map(|_| "ok"),
        String::from_utf8_lossy(&std::fs::read(&victim).unwrap())
    );
    assert!(refreshed.is_ok(), "{refreshed:?}\n{}", d.logs());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious bytes");
    assert!(
        std::fs::symlink_metadata(&sidecar)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(mock.stats().refreshes, 1);
    drop(d);

    // The socket's instance lock: refused, and its target untouched.
    let lock = PathBuf::from(format!("{}.piauthd-instance", sb.socket().display()));
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let out = sb.command("piauthd").stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("instance lock symlinked: {err}");
    assert!(!out.status.success());
    assert!(err.contains("is a symlink"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious bytes");
}

/// Tokens never travel in plain text to a host off the machine.
#[test]
fn a_plain_http_issuer_off_loopback_is_refused_at_start() {
    let sb = Sandbox::new();
    for (var, url) in [
        ("PIAUTHD_ISSUER", "http://auth.example.com"),
        ("PIAUTHD_CODEX_BASE_URL", "http://10.1.2.3/backend-api"),
    ] {
        let out = sb
            .command("piauthd")
            .env(var, url)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("{var}={url}: exit {:?}: {err}", out.status.code());
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("is plain http to a host that is not loopback"),
            "{err}"
        );
        assert!(!sb.socket().exists(), "it never served");
    }
}
