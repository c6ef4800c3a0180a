//! The real pi 1.6.0 (npm `@earendil-works/pi-coding-agent`, on Node 22)
//! with the package in `client/pi/` installed as a user installs it
//! (`pi install ./client/pi`), answering prompts through piauthd.
//!
//! pi's Codex backend is the mock: the package points pi at the daemon's
//! backend by itself (no `models.json`), and no request pi makes may leave
//! for OpenAI. pi's own issuer is unreachable: every HTTPS request pi makes
//! goes to a proxy that answers nothing and records where pi wanted to go,
//! so a refresh by pi itself would fail loudly and be seen. Tokens live a few seconds, so
//! each test spans several token lifetimes.

use std::time::{Duration, Instant};

use piauth_client::Client;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::secrets::SecretService;
use piauth_tests::{Daemon, Sandbox};

use crate::pi_home::{PiHome, answered, describe, file_daemon, limit_mid_run, two_account_daemon};

/// Sessions started at once.
const SESSIONS: usize = 8;
/// Access-token lifetime at the mock.
const LIFETIME_SECS: u64 = 6;

async fn refresh_count(sb: &Sandbox) -> u32 {
    let mut c = Client::connect(sb.socket()).await.expect("connect");
    let st = c.status().await.expect("status");
    st.providers
        .iter()
        .find(|p| p.provider == "openai-codex")
        .map_or(0, |p| p.refresh_count)
}

fn short_lived_mock() -> MockConfig {
    MockConfig {
        expires_in: LIFETIME_SECS,
        // Rounds run for five lifetimes, as many as fit: at the default 1 %
        // a turn, a fast machine would meet the 5-hour limit at turn 100.
        usage_step: 0.1,
        ..MockConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_sessions_across_five_token_lifetimes_all_answered_with_zero_reuse() {
    let mock = MockOpenAi::start(short_lived_mock()).await.unwrap();
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-pi", "pi@example.com", "plus"),
    )
    .unwrap();
    let _d = file_daemon(&sb, &mock);
    let home = PiHome::new(&sb);

    let start = Instant::now();
    let (prompts, rounds) = home.rounds_for(SESSIONS, Duration::from_secs(5 * LIFETIME_SECS));
    let stats = mock.stats();
    let refreshes = refresh_count(&sb).await;
    eprintln!(
        "pi 1.6.0 + package: {prompts} prompts in {rounds} rounds over {:.1} s; {refreshes} refreshes by piauthd; issuer: {stats:?}",
        start.elapsed().as_secs_f64()
    );
    assert!(
        refreshes >= 5,
        "at least five token lifetimes: {refreshes} refreshes"
    );
    assert_eq!(stats.reuse_attempts, 0, "no refresh token reused");
    assert_eq!(stats.revocations, 0);
    assert_eq!(
        stats.token_requests,
        u64::from(refreshes),
        "every token request at the issuer was one of piauthd's refreshes"
    );
    assert!(stats.responses_requests >= prompts as u64);
    // What pi 1.6.0 sends, as the mock saw it: every turn over its
    // WebSocket, the developer item first and max_output_tokens.
    assert_eq!(stats.websocket_requests, stats.responses_requests);
    assert_eq!(stats.developer_first, stats.responses_requests);
    assert_eq!(stats.max_output_tokens_seen, stats.responses_requests);
    assert_eq!(stats.websocket_upgrades_refused, 0);
    home.assert_pi_never_called_its_issuer();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_codex_entry_in_auth_json_prompts_are_answered_from_the_keyring() {
    let Some(ss) = SecretService::start() else {
        return;
    };
    let mock = MockOpenAi::start(short_lived_mock()).await.unwrap();
    let sb = Sandbox::new();
    let (address, issuer, base) = (ss.address.clone(), mock.issuer(), mock.codex_base());
    let _d = Daemon::start_with(&sb, move |cmd| {
        cmd.env("PIAUTHD_STORE", "keyring")
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CODEX_BASE_URL", &base);
    });
    let mut c = Client::connect(sb.socket()).await.unwrap();
    // Log in through the daemon, pasting the redirect URL the issuer gives.
    let mut stream = c
        .login("", piauth_client::proto::v1::LoginMethod::Browser, 60)
        .await
        .unwrap();
    let Some(piauth_client::proto::v1::login_event::Event::AuthorizeUrl(a)) =
        stream.next().await.unwrap()
    else {
        panic!("no authorize URL")
    };
    let location = piauth_tests::paste::callback_url(&a.issuer_url).await;
    c.submit_code("", &location).await.unwrap();
    assert!(c.get_token("", 0).await.is_ok());
    let doc = piauth_tests::daemon::read_auth(&sb.auth_file()).unwrap_or_default();
    assert!(
        doc.get("openai-codex").is_none(),
        "no codex entry in auth.json"
    );

    let home = PiHome::new(&sb);
    let start = Instant::now();
    let mut prompts = 0;
    while start.elapsed() < Duration::from_secs(2 * LIFETIME_SECS) {
        let outs = home.round(SESSIONS);
        assert!(
            outs.iter().all(answered),
            "unanswered prompts:\n{}",
            describe(&outs)
        );
        prompts += outs.len();
    }
    let doc = piauth_tests::daemon::read_auth(&sb.auth_file()).unwrap_or_default();
    assert!(
        doc.get("openai-codex").is_none(),
        "pi wrote no codex entry either"
    );
    let stats = mock.stats();
    eprintln!("keyring store: {prompts} prompts answered; issuer: {stats:?}");
    assert_eq!(stats.reuse_attempts, 0);
    home.assert_pi_never_called_its_issuer();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_run_is_autostarted_and_only_prompts_in_flight_fail() {
    let mock = MockOpenAi::start(short_lived_mock()).await.unwrap();
    let sb = Sandbox::new();
    write_codex_login(
        &sb.auth_file(),
        &mock.state.seed_login("acc-pi", "pi@example.com", "plus"),
    )
    .unwrap();
    let d = file_daemon(&sb, &mock);
    let mut home = PiHome::new(&sb);
    // pi may start the daemon now, against the same mock.
    home.env = vec![
        ("PIAUTHD_NO_AUTOSTART".into(), "0".into()),
        ("PIAUTHD_ISSUER".into(), mock.issuer()),
        ("PIAUTHD_CODEX_BASE_URL".into(), mock.codex_base()),
        // The sandbox's socket is the default there, so it may be autostarted.
        ("XDG_STATE_HOME".into(), sb.dir.path().display().to_string()),
    ];
    let outs = home.round(SESSIONS);
    assert!(
        outs.iter().all(answered),
        "before the kill:\n{}",
        describe(&outs)
    );

    // Kill the daemon mid-round: once half the sessions have sent their
    // request, the others are still starting or asking for a token.
    let before = mock.stats().responses_requests;
    let pid = d.pid();
    let mut killed_at = None;
    let during = home.round_while(SESSIONS, || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while mock.stats().responses_requests < before + SESSIONS as u64 / 2 {
            assert!(Instant::now() < deadline, "the round never got under way");
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        killed_at = Some(Instant::now());
    });
    let killed_at = killed_at.expect("the daemon was killed");
    let in_flight = during.iter().filter(|(_, end)| *end > killed_at).count();
    let failed = during.iter().filter(|(o, _)| !answered(o)).count();
    for (o, end) in during.iter().filter(|(o, _)| !answered(o)) {
        assert!(
            *end > killed_at,
            "a session that ended before the kill failed"
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("    at "),
            "a failure is one line, not a stack trace:\n{err}"
        );
    }
    assert!(
        failed <= in_flight,
        "{failed} failed, but only {in_flight} were in flight at the kill"
    );
    drop(d);

    let mut after = 0;
    for _ in 0..3 {
        let outs = home.round(SESSIONS);
        assert!(
            outs.iter().all(answered),
            "after the restart:\n{}",
            describe(&outs)
        );
        after += outs.len();
    }
    let mut c = Client::connect(sb.socket())
        .await
        .expect("the autostarted daemon serves");
    let pid = c.status().await.unwrap().pid;
    eprintln!(
        "daemon killed mid-run: {failed} of {in_flight} prompts in flight failed ({SESSIONS} in the round); {after} after the autostart all answered"
    );
    let stats = mock.stats();
    assert_eq!(stats.reuse_attempts, 0);
    home.assert_pi_never_called_its_issuer();
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// Two accounts, four real pi sessions per round; A's limit is reached
/// between rounds. Every prompt is answered, the ones after the limit by B,
/// and none needs typing again: the package reports the limit and sends
/// the turn once more on B's token. The retried turns are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_mid_run_moves_pi_sessions_to_the_other_account_and_no_prompt_is_lost() {
    let (mock, sb, _d) = two_account_daemon().await;
    let home = PiHome::new(&sb);
    let retried = limit_mid_run(&home, &mock);
    eprintln!(
        "pi 1.6.0 + package, A limited mid-run: 12 prompts answered; {retried} turn(s) refused by A's limit and sent again on B; B answered 8"
    );
    assert!(
        (1..=4).contains(&retried),
        "the first turns after the limit met it once each, and later ones went to B at once: {retried}"
    );
}
