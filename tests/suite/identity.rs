//! One identity per store, however its path is spelled.
//!
//! A daemon is killed while its refresh is on the wire, and the issuer
//! rotates the token it sent. A new daemon then starts on the same
//! `auth.json` reached another way: through a symlinked agent directory, a
//! relative path, or a `/./` spelling. It must find the dead daemon's record
//! of the refresh, report the outcome as unknown, and send nothing: a
//! re-sent refresh token is reuse, and the issuer revokes the whole login.
//! A store move, spelled the first way, must see the new daemon serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use piauth_client::Client;
use piauth_tests::daemon::{codex_status, stored_refresh};
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};

/// How long the issuer takes to answer a refresh: the kill lands inside
/// it (the test waits for the request to arrive, then kills at once).
const ISSUER_DELAY: Duration = Duration::from_secs(2);
/// Deadlines for failing, never waits.
const DEADLINE: Duration = Duration::from_secs(20);

/// Another spelling of the sandbox's agent directory: the value of
/// `PI_CODING_AGENT_DIR` and the directory the daemon starts in.
fn spelling(sb: &Sandbox, how: &str) -> (PathBuf, PathBuf) {
    let root = sb.dir.path();
    match how {
        "symlink" => {
            let link = root.join("agent-link");
            std::os::unix::fs::symlink(sb.agent_dir(), &link).expect("symlink");
            (link, root.to_owned())
        }
        "relative" => (PathBuf::from("agent"), root.to_owned()),
        "dot" => (root.join(".").join("agent"), root.to_owned()),
        other => panic!("no spelling {other}"),
    }
}

fn start_spelled(sb: &Sandbox, issuer: &str, agent_dir: &Path, cwd: &Path) -> Daemon {
    let (issuer, agent_dir, cwd) = (issuer.to_owned(), agent_dir.to_owned(), cwd.to_owned());
    Daemon::start_with(sb, move |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PI_CODING_AGENT_DIR", &agent_dir)
            .current_dir(&cwd);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_through_another_path_finds_the_refresh_on_the_wire() {
    for how in ["symlink", "relative", "dot"] {
        one_spelling(how).await;
    }
}

async fn one_spelling(how: &str) {
    let mock = MockOpenAi::start(MockConfig {
        // A token of 2 s: the daemon refreshes it at once.
        expires_in: 2,
        token_delay: ISSUER_DELAY,
        ..MockConfig::default()
    })
    .await
    .expect("mock");
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-id", "id@example.com", "plus"),
    )
    .expect("login");
    let sent = stored_refresh(&sb.auth_file()).expect("a refresh token");

    // Killed with its refresh on the wire.
    let mut first = Daemon::start_against(&sb, &mock.issuer());
    let arrived = wait_until(DEADLINE, || async { mock.stats().token_requests > 0 }).await;
    assert!(
        arrived,
        "{how}: the first daemon's refresh never reached the issuer"
    );
    first.signal(libc::SIGKILL);
    first.wait_exit(DEADLINE).expect("SIGKILL ends the daemon");
    let rotated = wait_until(DEADLINE, || async { mock.state.is_spent(&sent) }).await;
    assert!(rotated, "{how}: the issuer rotated the token it was sent");
    assert_eq!(
        stored_refresh(&sb.auth_file()).as_deref(),
        Some(sent.as_str()),
        "{how}: the dead daemon never learnt the new token"
    );

    // Restarted on the same file, spelled another way.
    let (agent_dir, cwd) = spelling(&sb, how);
    let _second = start_spelled(&sb, &mock.issuer(), &agent_dir, &cwd);
    let mut c = Client::connect(sb.socket()).await.expect("connect");
    let st = codex_status(&mut c).await;
    assert!(
        st.last_error.contains("on the wire"),
        "{how}: the unknown outcome is reported: {st:?}"
    );
    // A call asking for more than the token has left would join a
    // refresh; it is answered without one.
    let asked = c.get_token("", 3600).await;
    let stats = mock.stats();
    assert_eq!(
        stats.token_requests, 1,
        "{how}: nothing re-sent (the call answered {asked:?}): {stats:?}"
    );
    assert_eq!(stats.reuse_attempts, 0, "{how}: no reuse: {stats:?}");
    assert_eq!(stats.revocations, 0, "{how}: the login lives: {stats:?}");

    // The serving lock is the same one: a store move spelled the plain way
    // sees the daemon that was started the other way.
    let out = sb
        .command("piauthd")
        .arg("--migrate-store-to")
        .arg("keyring")
        .output()
        .expect("run piauthd --migrate-store-to");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{how}: {err}");
    assert!(
        err.contains("is serving") && err.contains(&sb.socket().display().to_string()),
        "{how}: the move is refused and names the daemon: {err}"
    );
    eprintln!(
        "identity ({how}): 1 refresh sent, 0 re-sent, outcome unknown reported, move refused"
    );
}
