//! Crash safety: piauthd is SIGKILLed at random moments, 100 times, while
//! it refreshes about once a second against an issuer that takes 0.2 s to
//! answer, and is restarted after each kill.
//!
//! A kill during a round trip is the dangerous one: the issuer may rotate
//! the token the dead daemon sent, and a restarted daemon that sent it again
//! would be reuse, which revokes the login. piauthd records a refresh
//! durably before it leaves; a restart that finds the record for the token
//! it holds reports "outcome unknown" and sends nothing. The test reads the
//! record itself after each kill and checks both directions: every kill
//! that left a record for the stored token ends in "outcome unknown", and
//! every "outcome unknown" is such a kill. Then it logs in again, as the
//! user would, and goes on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_tests::daemon::{codex_status, read_auth, stored_refresh};
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};
use rand::Rng;
use sha2::{Digest, Sha256};

const KILLS: u32 = 100;
const ISSUER_DELAY: Duration = Duration::from_millis(200);

/// The refresh records in piauthd's state directory (the sandbox sets
/// `XDG_STATE_HOME` to its own directory).
fn records(sb: &Sandbox) -> Vec<PathBuf> {
    let dir = sb.dir.path().join("piauthd");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        // Not a temporary sibling a kill left mid-write
                        // (`<record>.piauthd-<pid>.tmp`): that was never
                        // renamed into place, so nothing was sent.
                        .is_some_and(|n| {
                            n.starts_with("piauthd-refresh-in-flight-") && n.ends_with(".json")
                        })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a record names `refresh` (by its SHA-256, as piauthd writes it).
fn names(record: &Path, refresh: &str) -> bool {
    let Ok(bytes) = std::fs::read(record) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    let want: String = Sha256::digest(refresh.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    v["refresh_sha256"].as_str() == Some(want.as_str())
}

fn says_outcome_unknown(st: &pb::ProviderStatus) -> bool {
    st.last_error.contains("on the wire")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_refresh_never_resends_the_token_after_a_restart() {
    let mock = MockOpenAi::start(MockConfig {
        // Half-life 1 s: a refresh about every second, 0.2 s on the wire.
        expires_in: 2,
        token_delay: ISSUER_DELAY,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let login = || {
        write_codex_login(
            &sb.auth_file(),
            &mock.state.seed_login("acc-k", "k@example.com", "plus"),
        )
        .unwrap()
    };
    login();

    let (mut on_wire, mut unknown, mut spent) = (0, 0, 0);
    for _ in 0..KILLS {
        let mut d = Daemon::start_against(&sb, &mock.issuer());
        // The kill lands at a random moment: the sleep is the experiment's
        // random variable, not a wait for something.
        let wait = rand::rng().random_range(100..1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        d.signal(libc::SIGKILL);
        d.wait_exit(Duration::from_secs(5))
            .expect("SIGKILL ends the daemon");
        drop(d);
        // Let a request the dead daemon sent reach the issuer and rotate:
        // wait until the dead daemon's connections are closed (so nothing
        // of it is still on its way) and the issuer has finished with every
        // request it got.
        let settled = wait_until(Duration::from_secs(10), || async {
            let s = mock.stats();
            s.open_connections == 0 && s.token_answers == s.token_requests
        })
        .await;
        assert!(settled, "the issuer finishes with every request it got");

        assert!(
            read_auth(&sb.auth_file()).is_some(),
            "auth.json parses after every kill"
        );
        let stored = stored_refresh(&sb.auth_file()).expect("the credential is still there");
        let recorded = records(&sb).iter().any(|r| names(r, &stored));
        on_wire += u32::from(recorded);
        if mock.state.is_spent(&stored) {
            spent += 1;
            assert!(
                recorded,
                "the issuer rotated a token whose refresh was not recorded"
            );
        }

        // The restarted daemon sees what the kill left.
        let d = Daemon::start_against(&sb, &mock.issuer());
        let mut c = Client::connect(sb.socket()).await.unwrap();
        let st = codex_status(&mut c).await;
        assert_eq!(
            says_outcome_unknown(&st),
            recorded,
            "outcome unknown exactly when a kill left a record for the stored token: {st:?}"
        );
        if recorded {
            unknown += 1;
            // Nothing is sent while it waits for the user: a call asking
            // for more than the token has left (which would join a refresh)
            // is answered without one, and the issuer hears nothing. (The
            // schedule's side: broker::paused_tests.)
            let before = mock.stats().token_requests;
            let asked = c.get_token("", 3600).await;
            assert_eq!(
                mock.stats().token_requests,
                before,
                "nothing re-sent (the call answered {asked:?})"
            );
            // The user logs in again; the daemon takes the new login.
            login();
            let adopted = wait_until(Duration::from_secs(5), || {
                let mut c = c.clone();
                async move { !says_outcome_unknown(&codex_status(&mut c).await) }
            })
            .await;
            assert!(adopted, "a new login ends the wait");
        }
        drop(d);
    }
    let stats = mock.stats();
    eprintln!(
        "crash test: {KILLS} kills with a {} ms issuer; {on_wire} left a refresh on the wire \
         ({spent} of them rotated by the issuer); {unknown} restarts said \"outcome unknown\" \
         and sent nothing; {} refreshes in all",
        ISSUER_DELAY.as_millis(),
        stats.refreshes
    );
    assert_eq!(
        stats.reuse_attempts, 0,
        "no restart reused a token: {stats:?}"
    );
    assert_eq!(stats.revocations, 0, "no login was revoked");
    assert!(
        spent > 0,
        "some kills landed after the issuer rotated ({on_wire} on the wire, {stats:?})"
    );
}
