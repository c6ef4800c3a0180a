//! pi's lock during a refresh on the wire: given back while the token is
//! outside every pi threshold, held across inside them, and the file's word
//! wins when pi logs in or out meanwhile.
//!
//! "pi" here is what pi does to the file: `mkdir auth.json.lock`, read or
//! write `auth.json`, `rmdir`. The real pi beside a slow issuer is in
//! `slow_issuer.rs`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use piauth_client::Client;
use piauth_tests::daemon::{read_auth, stored_refresh};
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi, TokenSet};
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};

const PROVIDER: &str = "openai-codex";
/// How long the issuer takes to answer each refresh.
const ISSUER_DELAY: Duration = Duration::from_secs(3);

fn lock_dir(sb: &Sandbox) -> PathBuf {
    let real = std::fs::canonicalize(sb.auth_file()).unwrap();
    PathBuf::from(format!("{}.lock", real.display()))
}

/// Takes pi's lock as pi does (`mkdir`), trying until `limit`; returns how
/// long it took, or the last error.
async fn take_like_pi(dir: &Path, limit: Duration) -> Result<Duration, io::Error> {
    let started = Instant::now();
    loop {
        match std::fs::create_dir(dir) {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) if started.elapsed() >= limit => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A daemon on a seeded login whose tokens live `expires_in` seconds, with
/// a slow issuer; returns after the first forced refresh has reached it.
async fn refresh_on_the_wire(
    expires_in: u64,
) -> (
    MockOpenAi,
    Sandbox,
    Daemon,
    TokenSet,
    tokio::task::JoinHandle<Result<piauth_client::proto::v1::Token, piauth_client::Error>>,
) {
    let mock = MockOpenAi::start(MockConfig {
        expires_in,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let set = mock
        .state
        .seed_login("acc-short", "short@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    mock.state.set_token_delay(ISSUER_DELAY);
    let daemon = Daemon::start_against(&sb, &mock.issuer());
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let refresh = tokio::spawn(async move { c.refresh(PROVIDER).await });
    assert!(
        wait_until(Duration::from_secs(5), || async {
            mock.stats().token_requests >= 1
        })
        .await,
        "the forced refresh reached the issuer"
    );
    (mock, sb, daemon, set, refresh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_pi_thresholds_pi_may_take_its_lock_while_the_refresh_is_on_the_wire() {
    let (mock, sb, daemon, set, refresh) = refresh_on_the_wire(3600).await;
    let dir = lock_dir(&sb);
    let waited = take_like_pi(&dir, Duration::from_millis(500))
        .await
        .expect("pi takes its lock while piauthd's refresh is on the wire");
    // pi reads the file under its lock: it still holds the token being
    // refreshed, which has an hour left, so pi would not refresh.
    assert_eq!(
        stored_refresh(&sb.auth_file()),
        Some(set.refresh_token.clone())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::remove_dir(&dir).unwrap();

    let token = refresh.await.unwrap().expect("the refresh completes");
    let on_disk = stored_refresh(&sb.auth_file()).unwrap();
    assert_ne!(on_disk, set.refresh_token, "the rotated token is stored");
    assert!(mock.state.is_live_refresh(&on_disk));
    assert!(mock.state.access_token_live(&token.access_token));
    assert!(!dir.exists(), "piauthd released pi's lock");
    let stats = mock.stats();
    assert_eq!((stats.refreshes, stats.reuse_attempts), (1, 0), "{stats:?}");
    eprintln!("pi took its lock {waited:?} into a {ISSUER_DELAY:?} refresh");
    assert!(
        daemon.logs().contains("holds_pi_lock=false"),
        "the log says the lock was given back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_pi_thresholds_the_lock_is_held_across_the_round_trip() {
    // Ten minutes left: pi 1.x's print-bearer-token would refresh now, so a
    // pi that found the lock free could spend the same token.
    let (mock, sb, _daemon, _set, refresh) = refresh_on_the_wire(600).await;
    let dir = lock_dir(&sb);
    let refused = take_like_pi(&dir, Duration::from_millis(1500)).await;
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(io::ErrorKind::AlreadyExists),
        "piauthd holds pi's lock while its refresh is on the wire"
    );
    refresh.await.unwrap().expect("the refresh completes");
    assert!(!dir.exists(), "released once the token is stored");
    let stats = mock.stats();
    assert_eq!((stats.refreshes, stats.reuse_attempts), (1, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_written_while_the_refresh_is_on_the_wire_wins() {
    let (mock, sb, _daemon, _set, refresh) = refresh_on_the_wire(3600).await;
    // pi's /login, under pi's lock, with another account.
    let dir = lock_dir(&sb);
    take_like_pi(&dir, Duration::from_millis(500))
        .await
        .unwrap();
    let login = mock.state.seed_login("acc-new", "new@example.com", "pro");
    write_codex_login(&sb.auth_file(), &login).unwrap();
    std::fs::remove_dir(&dir).unwrap();

    refresh
        .await
        .unwrap()
        .expect("the refresh call ends cleanly");
    assert_eq!(
        stored_refresh(&sb.auth_file()),
        Some(login.refresh_token.clone()),
        "the new login stays in the file"
    );
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let served = c.get_token(PROVIDER, 60).await.unwrap();
    assert_eq!(served.access_token, login.access_token, "and is served");
    assert_eq!(mock.stats().reuse_attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_while_the_refresh_is_on_the_wire_is_not_undone() {
    let (mock, sb, _daemon, _set, refresh) = refresh_on_the_wire(3600).await;
    let dir = lock_dir(&sb);
    take_like_pi(&dir, Duration::from_millis(500))
        .await
        .unwrap();
    let mut doc = read_auth(&sb.auth_file()).unwrap();
    doc.as_object_mut().unwrap().remove(PROVIDER);
    doc["openai"] = serde_json::json!({"type": "api_key", "key": "sk-other"});
    std::fs::write(sb.auth_file(), serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    std::fs::remove_dir(&dir).unwrap();

    let _ = refresh.await.unwrap();
    let after = read_auth(&sb.auth_file()).unwrap();
    assert!(after.get(PROVIDER).is_none(), "the logout stands: {after}");
    assert_eq!(after["openai"]["key"], "sk-other");
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let err = c.get_token(PROVIDER, 60).await.unwrap_err();
    assert!(err.to_string().contains("not logged in"), "{err}");
    assert_eq!(mock.stats().reuse_attempts, 0);
}

/// Two daemons on one `auth.json`, each forced to refresh at the same
/// moment, over and over: while one gives pi's lock back, the sidecar
/// flock keeps the other queued, so the issuer never sees a reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_never_refresh_at_once_while_pi_lock_is_given_back() {
    const ROUNDS: usize = 5;
    let mock = MockOpenAi::start(MockConfig {
        expires_in: 3600,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-two", "two@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    mock.state.set_token_delay(Duration::from_millis(500));
    let _a = Daemon::start_against(&sb, &mock.issuer());
    let other_socket = sb.dir.path().join("run2").join("piauthd.sock");
    let (other, issuer) = (other_socket.clone(), mock.issuer());
    let _b = Daemon::start_with(&sb, move |cmd| {
        cmd.env("PIAUTHD_SOCKET", &other)
            .env("PIAUTHD_ISSUER", &issuer);
    });
    let a = Client::connect(sb.socket()).await.unwrap();
    let b = Client::connect(&other_socket).await.unwrap();
    for round in 0..ROUNDS {
        let both = [a.clone(), b.clone()]
            .map(|mut c| tokio::spawn(async move { c.refresh(PROVIDER).await }));
        for call in both {
            let token = call
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(mock.state.access_token_live(&token.access_token));
        }
    }
    let stats = mock.stats();
    assert_eq!(
        (stats.reuse_attempts, stats.revocations),
        (0, 0),
        "{stats:?}"
    );
    // Each round rotates once or twice (the second daemon may find the
    // first one's token newer than what it held, or refresh after it).
    assert!(
        (ROUNDS as u64..=2 * ROUNDS as u64).contains(&stats.refreshes),
        "{stats:?}"
    );
    let on_disk = stored_refresh(&sb.auth_file()).unwrap();
    assert!(
        mock.state.is_live_refresh(&on_disk),
        "the file holds the live login"
    );
}
