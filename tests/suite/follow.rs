//! A follower over real OpenSSH: `piauthd --follow ssh://...` on one
//! "machine" (its own home), the owner on another, a real `sshd` between
//! them on loopback. The follower never calls the issuer, never stores a
//! refresh token, and serves only tokens the owner got.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_tests::fixtures::{now_ms, write_codex_login};
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::sshd::{self, Sshd, ssh_children};
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};

async fn mock(expires_in: u64) -> MockOpenAi {
    MockOpenAi::start(MockConfig {
        expires_in,
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

/// The owner: a daemon holding a login, on its own sandbox, against the
/// mock's issuer and backend.
fn owner(mock: &MockOpenAi) -> (Sandbox, Daemon) {
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-own", "owner@example.com", "pro");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let d = crate::pi_home::file_daemon(&sb, mock);
    (sb, d)
}

/// An owner on `mock`, a real sshd, and a follower over it that has
/// reached the owner.
struct OverSsh {
    never: MockOpenAi,
    osb: Sandbox,
    od: Daemon,
    sshd: Sshd,
    fsb: Sandbox,
    fd: Daemon,
}

async fn over_ssh(mock: &MockOpenAi) -> OverSsh {
    let never = mock_never().await;
    let (osb, od) = owner(mock);
    let sshd = Sshd::start(&osb.dir.path().join("sshd"));
    let fsb = Sandbox::new();
    let fd = follower(
        &fsb,
        &sshd.target(&osb.socket()),
        &sshd.ssh(),
        &never.issuer(),
    );
    assert!(
        wait_reachable(&fsb.socket(), Duration::from_secs(20)).await,
        "the follower never reached its owner:\n{}",
        fd.logs()
    );
    OverSsh {
        never,
        osb,
        od,
        sshd,
        fsb,
        fd,
    }
}

/// A follower of `target` on its own sandbox, whose issuer is `issuer`
/// (a mock that must never be called).
fn follower(sb: &Sandbox, target: &str, ssh: &str, issuer: &str) -> Daemon {
    let (target, ssh, issuer) = (target.to_owned(), ssh.to_owned(), issuer.to_owned());
    Daemon::start_with(sb, move |cmd| {
        // piauthd's own trace (where a leak would show), not every HTTP/2
        // frame of 30,000 calls.
        cmd.env("RUST_LOG", "info,piauthd=trace")
            .env("PIAUTHD_FOLLOW", &target)
            .env("PIAUTHD_SSH", &ssh)
            .env("PIAUTHD_ISSUER", &issuer);
    })
}

async fn follow_status(socket: &Path) -> Option<pb::FollowStatus> {
    let mut c = Client::connect(socket).await.ok()?;
    c.status().await.ok()?.follow
}

async fn wait_reachable(socket: &Path, limit: Duration) -> bool {
    wait_until(limit, || async {
        follow_status(socket).await.is_some_and(|f| f.reachable)
    })
    .await
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

/// What one client saw: tokens, and failures with whether the last token
/// it had was still valid then.
#[derive(Default)]
struct Seen {
    tokens: Vec<String>,
    served: u64,
    /// Failures while the client's last token was still valid.
    failed_while_valid: Vec<String>,
    /// Failures after the last token had run out (allowed, counted).
    failed_expired: u64,
}

async fn load(socket: std::path::PathBuf, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let mut client = loop {
        if let Ok(c) = Client::connect(&socket).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut last_expiry = 0;
    while !stop.load(Ordering::Relaxed) {
        match client.get_token("", 0).await {
            Ok(t) => {
                seen.served += 1;
                last_expiry = t.expires_at_ms;
                if seen.tokens.last() != Some(&t.access_token) {
                    seen.tokens.push(t.access_token);
                }
            }
            Err(e) => {
                if now_ms() < last_expiry {
                    seen.failed_while_valid.push(e.to_string());
                } else {
                    seen.failed_expired += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

/// 100 refresh cycles of 1 s tokens, 16 clients on the follower and 4 on
/// the owner; the forward's ssh is killed once and the owner restarted
/// once mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_over_ssh_serves_the_owners_tokens_through_faults() {
    if !sshd::available() {
        return;
    }
    let mock = mock(1).await;
    let OverSsh {
        never,
        osb,
        mut od,
        sshd: _sshd,
        fsb,
        fd,
    } = over_ssh(&mock).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let socket = if i < 16 { fsb.socket() } else { osb.socket() };
        tasks.push((i < 16, tokio::spawn(load(socket, stop.clone()))));
    }
    let started = Instant::now();
    let mut reconnects = Vec::new();
    let mut faults = 0;
    while mock.stats().refreshes < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "too slow: {:?}",
            mock.stats()
        );
        let refreshes = mock.stats().refreshes;
        if faults == 0 && refreshes >= 30 {
            eprintln!("[{:?}] killing the forward", started.elapsed());
            faults += 1;
            let pids = ssh_children(fd.child.id());
            assert_eq!(pids.len(), 1, "one forward: {pids:?}");
            let at = Instant::now();
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(pids[0] as i32).unwrap(),
                rustix::process::Signal::KILL,
            )
            .unwrap();
            wait_for_new_ssh(fd.child.id(), pids[0]).await;
            assert!(
                wait_reachable(&fsb.socket(), Duration::from_secs(10)).await,
                "{}",
                fd.logs()
            );
            reconnects.push(at.elapsed());
        } else if faults == 1 && refreshes >= 60 {
            eprintln!("[{:?}] restarting the owner", started.elapsed());
            faults += 1;
            let at = Instant::now();
            // A restart, not a crash: a SIGKILL may land between the
            // issuer's answer and the save, and then the owner rightly
            // sends nothing until told (the crash tests cover that).
            od.signal(libc::SIGTERM);
            assert!(
                od.wait_exit(Duration::from_secs(20)).is_some(),
                "the owner did not stop"
            );
            assert!(
                wait_until(Duration::from_secs(10), || async {
                    follow_status(&fsb.socket())
                        .await
                        .is_some_and(|f| !f.reachable)
                })
                .await,
                "the follower did not notice the owner go"
            );
            od = crate::pi_home::file_daemon(&osb, &mock);
            assert!(
                wait_reachable(&fsb.socket(), Duration::from_secs(10)).await,
                "{}",
                fd.logs()
            );
            reconnects.push(at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!("[{:?}] 100 refreshes", started.elapsed());
    let issued: std::collections::HashSet<String> =
        mock.state.issued_access_tokens().into_iter().collect();
    let (mut served, mut expired_failures) = (0, 0);
    for (on_follower, task) in tasks {
        let seen = task.await.unwrap();
        // The owner's own clients fail while it restarts; the follower's
        // must not while their token is valid.
        assert!(
            !on_follower || seen.failed_while_valid.is_empty(),
            "failed while the cached token was valid: {:?}",
            seen.failed_while_valid
        );
        for t in &seen.tokens {
            assert!(issued.contains(t), "a token the owner never got was served");
        }
        if on_follower {
            served += seen.served;
            expired_failures += seen.failed_expired;
        }
        assert!(seen.served > 0);
    }
    eprintln!("[{:?}] clients joined", started.elapsed());
    let stats = mock.stats();
    assert_eq!(stats.reuse_attempts, 0, "{stats:?}");
    assert_eq!(stats.revocations, 0, "{stats:?}");
    assert_eq!(
        never.stats().token_requests,
        0,
        "the follower called an issuer"
    );
    assert_eq!(faults, 2);
    for r in &reconnects {
        assert!(*r < Duration::from_secs(10), "reconnected in {r:?}");
    }
    eprintln!(
        "follower: {served} tokens served over {} refreshes; {expired_failures} calls failed after \
         the cached token ran out; reconnected in {reconnects:?}",
        stats.refreshes
    );
    no_refresh_token_under(fsb.dir.path(), &mock);
    eprintln!("[{:?}] scanned", started.elapsed());
    drop(od);
}

/// No file under `dir` (logs included) holds a refresh token: every one
/// the mock issues starts with the same prefix, so none may appear at all.
fn no_refresh_token_under(dir: &Path, mock: &MockOpenAi) {
    let refresh = mock.state.issued_refresh_tokens();
    let prefix = "rt_mock_";
    assert!(!refresh.is_empty() && refresh.iter().all(|r| r.starts_with(prefix)));
    for (path, bytes) in files_under(dir) {
        let found = bytes.windows(prefix.len()).any(|w| w == prefix.as_bytes());
        assert!(!found, "{} holds a refresh token", path.display());
    }
}

/// A mock issuer the follower is pointed at, to prove it is never called.
async fn mock_never() -> MockOpenAi {
    mock(3600).await
}

/// Waits until `parent` runs an ssh other than `old`.
async fn wait_for_new_ssh(parent: u32, old: u32) {
    assert!(
        wait_until(Duration::from_secs(10), || async {
            ssh_children(parent).iter().any(|p| *p != old)
        })
        .await,
        "the forward was not restarted"
    );
}

/// Starts a follower and waits until it has tried its owner and failed;
/// then `pi-authctl status` says why in one line and exits 1, and the
/// follower wrote nothing.
async fn refused_in_one_line(target: &str, ssh: &str, expect: &str) {
    let never = mock_never().await;
    let fsb = Sandbox::new();
    let fd = follower(&fsb, target, ssh, &never.issuer());
    let tried = wait_until(Duration::from_secs(30), || async {
        follow_status(&fsb.socket())
            .await
            .is_some_and(|f| !f.reachable && f.detail.contains(expect))
    })
    .await;
    assert!(tried, "the follower never tried its owner:\n{}", fd.logs());
    let out = fsb.authctl(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("pi-authctl: this piauthd follows"),
        "{stderr}"
    );
    assert!(stderr.contains(expect), "{expect:?} in {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NOT reachable"), "{stdout}");
    assert!(!fsb.auth_file().exists(), "a follower wrote auth.json");
    assert_eq!(never.stats().token_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_is_one_clear_line() {
    if !sshd::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    refused_in_one_line(
        "ssh://root@no-such-host.invalid/run/x.sock",
        &sshd.ssh(),
        "Could not resolve hostname no-such-host.invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_one_clear_line() {
    if !sshd::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    let ssh = sshd.ssh_with_key(&sshd.stranger_key());
    refused_in_one_line(
        &sshd.target(Path::new("/run/x.sock")),
        &ssh,
        "Permission denied (publickey)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_socket_that_is_not_piauthd_is_one_clear_line() {
    if !sshd::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&dir.path().join("sshd"));
    // Something else listens there: it answers every connection with a
    // line of text and closes.
    let other = dir.path().join("other.sock");
    let listener = std::os::unix::net::UnixListener::bind(&other).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            use std::io::Write;
            let mut conn = conn;
            let _ = conn.write_all(b"220 not piauthd\r\n");
        }
    });
    refused_in_one_line(
        &sshd.target(&other),
        &sshd.ssh(),
        "does not answer as piauthd",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_piauthd_of_another_user_is_one_clear_line() {
    if !sshd::available() {
        return;
    }
    let mock = mock(3600).await;
    // The owner runs as another uid; ssh logs in as root.
    let osb = Sandbox::unprivileged();
    let set = mock
        .state
        .seed_login("acc-other", "other@example.com", "pro");
    write_codex_login(&osb.auth_file(), &set).unwrap();
    osb.own(&osb.auth_file());
    let _od = Daemon::start_against(&osb, &mock.issuer());
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&dir.path().join("sshd"));
    refused_in_one_line(&sshd.target(&osb.socket()), &sshd.ssh(), "another user").await;
}

/// A login copied to the follower's machine for the owner's account is
/// the cross-machine race: the follower stops, saying what to do, and the
/// copy is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_copy_of_the_owners_login_refuses_to_go_on() {
    let mock = mock(3600).await;
    let (osb, _od) = owner(&mock);
    let fsb = Sandbox::new();
    std::fs::copy(osb.auth_file(), fsb.auth_file()).unwrap();
    let before = std::fs::read(fsb.auth_file()).unwrap();
    let mut fd = Daemon::start_with(&fsb, |cmd| {
        cmd.env("PIAUTHD_FOLLOW", osb.socket());
    });
    let status = fd
        .wait_exit(Duration::from_secs(20))
        .expect("the follower went on");
    assert!(!status.success());
    let logs = fd.logs();
    assert!(logs.contains("will not follow"), "{logs}");
    assert!(logs.contains("account acc-own"), "{logs}");
    assert!(logs.contains("Remove the copy"), "{logs}");
    assert_eq!(
        std::fs::read(fsb.auth_file()).unwrap(),
        before,
        "the copy was changed"
    );
    assert_eq!(mock.stats().refreshes, 0);
}

/// Without a path, the follower asks the remote shell where its user's
/// piauthd listens (here PIAUTHD_SOCKET, passed by ssh's SetEnv).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_path_the_follower_finds_the_owners_default_socket() {
    if !sshd::available() {
        return;
    }
    let mock = mock(3600).await;
    let never = mock_never().await;
    let (osb, _od) = owner(&mock);
    let sshd = Sshd::start(&osb.dir.path().join("sshd"));
    let ssh = format!(
        "{} -o SetEnv=PIAUTHD_SOCKET={}",
        sshd.ssh(),
        osb.socket().display()
    );
    let fsb = Sandbox::new();
    let target = format!("ssh://root@127.0.0.1:{}", sshd.port);
    let fd = follower(&fsb, &target, &ssh, &never.issuer());
    assert!(
        wait_reachable(&fsb.socket(), Duration::from_secs(20)).await,
        "{}",
        fd.logs()
    );
    let mut c = Client::connect(fsb.socket()).await.unwrap();
    let t = c.get_token("", 60).await.unwrap();
    assert!(mock.state.access_token_live(&t.access_token));
    let status = c.status().await.unwrap();
    let follow = status.follow.unwrap();
    assert_eq!(follow.owner_account_id, "acc-own");
    assert_eq!(follow.target, target);
    // The owner's store, as the owner reports it.
    assert_eq!(status.accounts.len(), 1);
    let out = fsb.authctl(&["status"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("follows  {target} (reachable for")),
        "{text}"
    );
    assert!(
        text.contains("owner    account acc-own (owner@example.com)"),
        "{text}"
    );
}

/// pi 1.6.0 with the package, on the follower's machine, answers prompts
/// across token lifetimes with the package unchanged: its socket is the
/// follower's, and the owner alone refreshes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_with_the_package_works_against_a_follower_unchanged() {
    if !sshd::available() {
        return;
    }
    const LIFETIME_SECS: u64 = 6;
    let mock = mock(LIFETIME_SECS).await;
    let OverSsh { never, fsb, .. } = &over_ssh(&mock).await;
    let home = crate::pi_home::PiHome::new(fsb);
    let start = Instant::now();
    let mut prompts = 0;
    while start.elapsed() < Duration::from_secs(2 * LIFETIME_SECS) {
        let outs = home.round(4);
        assert!(
            outs.iter().all(crate::pi_home::answered),
            "unanswered prompts:\n{}",
            crate::pi_home::describe(&outs)
        );
        prompts += outs.len();
    }
    let stats = mock.stats();
    assert!(stats.refreshes >= 2, "{stats:?}");
    assert_eq!(stats.reuse_attempts, 0, "{stats:?}");
    assert!(stats.responses_requests >= prompts as u64);
    assert_eq!(
        never.stats().token_requests,
        0,
        "the follower called an issuer"
    );
    home.assert_pi_never_called_its_issuer();
    no_refresh_token_under(fsb.dir.path(), &mock);
    eprintln!(
        "pi on a follower: {prompts} prompts over {:?}, {} refreshes by the owner",
        start.elapsed(),
        stats.refreshes
    );
}

/// A login started on a follower runs on the owner: a device code by
/// default (the owner's browser callback is on another machine), shown on
/// the follower; the login lands in the owner's store, and the follower
/// serves it as soon as the owner pushes it. Here the owner's socket is
/// simply a path (as a container's bind mount would be).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_a_follower_runs_on_the_owner_with_a_device_code() {
    let mock = mock(3600).await;
    let never = mock_never().await;
    let osb = Sandbox::new();
    let _od = Daemon::start_against(&osb, &mock.issuer());
    let fsb = Sandbox::new();
    let target = osb.socket().display().to_string();
    let fd = follower(&fsb, &target, "ssh", &never.issuer());
    assert!(
        wait_reachable(&fsb.socket(), Duration::from_secs(20)).await,
        "{}",
        fd.logs()
    );
    let mut c = Client::connect(fsb.socket()).await.unwrap();
    let err = c.get_token("", 0).await.unwrap_err();
    assert!(err.to_string().contains("not logged in"), "{err}");

    let mut events = c.login("", pb::LoginMethod::Unspecified, 0).await.unwrap();
    let mut saw_code = false;
    let success = loop {
        match tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("the login ends in time")
            .expect("the login stream")
        {
            Some(pb::login_event::Event::DeviceCode(d)) => {
                assert!(!d.user_code.is_empty());
                saw_code = true;
            }
            Some(pb::login_event::Event::AuthorizeUrl(u)) => panic!("a browser login: {u:?}"),
            Some(pb::login_event::Event::Success(s)) => break s,
            Some(pb::login_event::Event::Failure(f)) => panic!("{}", f.message),
            Some(_) => {}
            None => panic!("the login stream ended"),
        }
    };
    assert!(saw_code, "the device code was shown on the follower");
    let served = wait_until(Duration::from_secs(10), || async {
        let mut c = Client::connect(fsb.socket()).await.unwrap();
        c.get_token("", 0)
            .await
            .is_ok_and(|t| t.account_id == success.account_id)
    })
    .await;
    assert!(served, "the follower serves the new login:\n{}", fd.logs());
    assert!(
        osb.auth_file().exists(),
        "the login is in the owner's store"
    );
    assert!(
        !fsb.auth_file().exists(),
        "and nothing is on the follower's"
    );
    assert_eq!(never.stats().token_requests, 0);
    assert_eq!(never.stats().exchanges, 0);
}
