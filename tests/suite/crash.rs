//! Crash safety: piauthd is SIGKILLed at random moments while refreshing
//! every half second, 100 times, and restarted each time.
//!
//! `auth.json` must parse after every kill. The login must survive every
//! kill, except one that lands after the issuer rotated the token and
//! before the daemon's fsync: that window cannot be closed from our side
//! (the issuer has spent the old token; the new one existed only in a dead
//! process). The test counts how many kills landed there.

use std::time::Duration;

use piauth_tests::daemon::{read_auth, stored_refresh};
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::{Daemon, Sandbox};
use rand::Rng;

const KILLS: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_refreshes_never_tears_auth_json() {
    let mock = MockOpenAi::start(MockConfig {
        expires_in: 1,
        // Keep each refresh in flight a while, so kills land inside some.
        token_delay: Duration::from_millis(60),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-k", "k@example.com", "plus"),
    )
    .unwrap();

    let mut in_window = 0;
    let mut survived = 0;
    let mut kills = 0;
    // At least 100 kills, spanning at least 100 refresh cycles.
    while kills < KILLS || mock.stats().refreshes < 100 {
        kills += 1;
        let mut d = Daemon::start_against(&sb, &mock.issuer());
        let wait = rand::rng().random_range(100..1000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        d.signal(libc::SIGKILL);
        d.wait_exit(Duration::from_secs(5))
            .expect("SIGKILL ends the daemon");
        drop(d);
        // Let a request the dead daemon sent reach the issuer, as it would.
        tokio::time::sleep(Duration::from_millis(100)).await;

        assert!(
            read_auth(&sb.auth_file()).is_some(),
            "auth.json parses after every kill"
        );
        let stored = stored_refresh(&sb.auth_file()).expect("the credential is still there");
        if mock.state.is_live_refresh(&stored) {
            survived += 1;
        } else if mock.state.is_spent(&stored) {
            // The issuer rotated, the daemon died before saving: the one
            // unavoidable window. Log in again and go on.
            in_window += 1;
            write_codex_login(
                &sb.auth_file(),
                &mock.state.seed_login("acc-k", "k@example.com", "plus"),
            )
            .unwrap();
        } else {
            panic!("the stored refresh token is neither live nor spent: the login was lost");
        }
    }
    let stats = mock.stats();
    eprintln!(
        "crash test: {kills} kills, {survived} logins survived, {in_window} kills landed between \
         the issuer's rotation and the fsync; {} refreshes in all",
        stats.refreshes
    );
    assert_eq!(
        stats.reuse_attempts, 0,
        "no restart ever reused a spent token: {stats:?}"
    );
    assert_eq!(stats.revocations, 0);
    assert_eq!(survived + in_window, kills);
}
