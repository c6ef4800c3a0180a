//! An unwritable store: the rotated token is kept in memory and served,
//! Status says `degraded`, and the write lands once the disk recovers.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use piauth_tests::daemon::stored_refresh;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};

fn status(sb: &Sandbox) -> serde_json::Value {
    let out = sb.authctl(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn token(sb: &Sandbox) -> String {
    let out = sb.authctl(&["token", "--min-valid", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_degrades_without_losing_the_rotated_token() {
    let mock = MockOpenAi::start(MockConfig {
        expires_in: 4,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::unprivileged();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-d", "d@example.com", "plus"),
    )
    .unwrap();
    sb.own(&sb.auth_file());
    let d = Daemon::start_against(&sb, &mock.issuer());
    // The bounds below are generous: tokens live 4 s and refresh at half
    // life, but a loaded machine may delay each refresh by seconds, and a
    // bound only says how long to wait for what must happen.
    assert!(
        wait_until(Duration::from_secs(20), || async {
            mock.stats().refreshes >= 1
        })
        .await
    );
    assert!(
        wait_until(Duration::from_secs(2), || async {
            stored_refresh(&sb.auth_file()).is_some_and(|r| mock.state.is_live_refresh(&r))
        })
        .await
    );

    // The store goes read-only (directory and file); the next refreshes
    // cannot be saved.
    let agent = sb.agent_dir();
    std::fs::set_permissions(sb.auth_file(), std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o500)).unwrap();
    let before = mock.stats().refreshes;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            mock.stats().refreshes >= before + 2
        })
        .await,
        "two refreshes while the store is read-only:\n{}",
        d.logs()
    );
    let st = status(&sb);
    assert_eq!(st["store"]["health"], "degraded", "{st}");
    assert_eq!(st["providers"][0]["state"], "degraded", "{st}");
    let on_disk = stored_refresh(&sb.auth_file()).unwrap();
    assert!(
        mock.state.is_spent(&on_disk),
        "the disk holds an older, spent token"
    );
    let served = token(&sb);
    assert!(
        mock.state.access_token_live(&served),
        "the new token is served from memory"
    );
    assert_eq!(
        mock.stats().reuse_attempts,
        0,
        "refreshes continued from memory"
    );

    // The disk recovers: the token kept in memory is written.
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(sb.auth_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        wait_until(Duration::from_secs(40), || async {
            stored_refresh(&sb.auth_file()).is_some_and(|r| mock.state.is_live_refresh(&r))
        })
        .await,
        "the kept token reaches the disk"
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            status(&sb)["store"]["health"] == "ok"
        })
        .await
    );
    let stats = mock.stats();
    assert_eq!(
        (stats.reuse_attempts, stats.revocations),
        (0, 0),
        "{stats:?}"
    );
}
