//! The OS keyring store, against a real Secret Service (gnome-keyring on a
//! private D-Bus session).

use std::time::Duration;

use piauth_client::{Client, Error, Reason};
use piauth_tests::daemon::read_auth;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::secrets::SecretService;
use piauth_tests::{Daemon, Sandbox};

fn keyring_daemon(sb: &Sandbox, ss: &SecretService, mock: &MockOpenAi) -> Daemon {
    let (address, issuer) = (ss.address.clone(), mock.issuer());
    Daemon::start_with(sb, move |cmd| {
        cmd.env("PIAUTHD_STORE", "keyring")
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("PIAUTHD_ISSUER", &issuer);
    })
}

fn stop(mut d: Daemon) {
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(20)).expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_kept_in_the_keyring_survives_a_restart() {
    let Some(ss) = SecretService::start() else {
        return;
    };
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    sb.write_auth(
        "{\n  \"openai\": {\n    \"type\": \"api_key\",\n    \"key\": \"sk-keep\"\n  }\n}",
    );
    let d = keyring_daemon(&sb, &ss, &mock);
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let st = c.status().await.unwrap();
    assert!(st.store.unwrap().path.contains("OS keyring"));

    // Log in (pasting the redirect URL).
    let mut stream = c
        .login("", piauth_client::proto::v1::LoginMethod::Browser, 60)
        .await
        .unwrap();
    let Some(piauth_client::proto::v1::login_event::Event::AuthorizeUrl(a)) =
        stream.next().await.unwrap()
    else {
        panic!()
    };
    let location = piauth_tests::paste::callback_url(&a.issuer_url).await;
    c.submit_code("", &location).await.unwrap();
    let token = c.get_token("", 60).await.unwrap();
    assert!(mock.state.access_token_live(&token.access_token));
    let doc = read_auth(&sb.auth_file()).unwrap();
    assert!(
        doc.get("openai-codex").is_none(),
        "the login is not in auth.json"
    );
    assert_eq!(doc["openai"]["key"], "sk-keep");
    drop(stream);
    stop(d);

    let _d = keyring_daemon(&sb, &ss, &mock);
    let mut c = Client::connect(sb.socket()).await.unwrap();
    assert_eq!(
        c.get_token("", 60).await.unwrap().access_token,
        token.access_token,
        "kept across a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_moves_the_login_both_ways() {
    let Some(ss) = SecretService::start() else {
        return;
    };
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    sb.write_auth(
        "{\n  \"openai\": {\n    \"type\": \"api_key\",\n    \"key\": \"sk-keep\"\n  }\n}",
    );
    let set = mock.state.seed_login("acc-m", "m@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();

    let migrate = |to: &str| {
        let out = sb
            .command("pi-authctl")
            .env("DBUS_SESSION_BUS_ADDRESS", &ss.address)
            .args(["store", "migrate", "--to", to])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate --to {to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    migrate("keyring");
    let doc = read_auth(&sb.auth_file()).unwrap();
    assert!(doc.get("openai-codex").is_none());
    assert_eq!(doc["openai"]["key"], "sk-keep", "other providers stay");
    let d = keyring_daemon(&sb, &ss, &mock);
    let mut c = Client::connect(sb.socket()).await.unwrap();
    assert_eq!(
        c.get_token("", 60).await.unwrap().access_token,
        set.access_token
    );
    stop(d);

    migrate("file");
    let doc = read_auth(&sb.auth_file()).unwrap();
    assert_eq!(doc["openai-codex"]["refresh"], set.refresh_token.as_str());
    assert_eq!(doc["openai"]["key"], "sk-keep");
    // The keyring is empty again: a keyring daemon finds no login.
    let _d = keyring_daemon(&sb, &ss, &mock);
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let e = c.get_token("", 0).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unauthenticated {
                reason: Reason::NotLoggedIn,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn without_a_reachable_keyring_the_daemon_refuses_to_start() {
    let sb = Sandbox::new();
    let original =
        "{\n  \"openai\": {\n    \"type\": \"api_key\",\n    \"key\": \"sk-keep\"\n  }\n}";
    sb.write_auth(original);
    let out = sb
        .command("piauthd")
        .env("PIAUTHD_STORE", "keyring")
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/no-bus", sb.dir.path().display()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the OS keyring is not usable"), "{err}");
    assert!(err.contains("--store file"), "{err}");
    assert!(!sb.socket().exists(), "it never served");
    assert_eq!(std::fs::read_to_string(sb.auth_file()).unwrap(), original);
}

/// Runs `pi-authctl store migrate --to <to>` (which runs the real piauthd's
/// `--migrate-store-to`) on the private Secret Service.
fn migrate(sb: &Sandbox, ss: &SecretService, to: &str) -> std::process::Output {
    sb.command("pi-authctl")
        .env("DBUS_SESSION_BUS_ADDRESS", &ss.address)
        .args(["store", "migrate", "--to", to])
        .output()
        .unwrap()
}

/// A move while a daemon serves either store is refused before anything
/// is touched: the daemon named, `auth.json` byte for byte as it was, the
/// token still served. Once the daemon is stopped the same move goes
/// through, and a keyring daemon blocks the move back the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_is_refused_while_a_daemon_serves_the_store() {
    let Some(ss) = SecretService::start() else {
        panic!("this test needs dbus-daemon, gnome-keyring-daemon and dbus-send");
    };
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    let set = mock
        .state
        .seed_login("acc-busy", "busy@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let before = std::fs::read(sb.auth_file()).unwrap();

    let d = Daemon::start_against(&sb, &mock.issuer());
    let out = migrate(&sb, &ss, "keyring");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let expected = format!(
        "piauthd (pid {}, socket {}) is serving {}: stop it first (systemctl --user stop \
         piauthd), then run the move again, and start it with --store keyring",
        d.pid(),
        sb.socket().display(),
        sb.auth_file().display()
    );
    assert!(err.contains(&expected), "{err}");
    assert_eq!(std::fs::read(sb.auth_file()).unwrap(), before, "untouched");
    let mut c = Client::connect(sb.socket()).await.unwrap();
    assert_eq!(
        c.get_token("", 60).await.unwrap().access_token,
        set.access_token,
        "the daemon still serves the login"
    );
    drop(c);
    stop(d);

    let out = migrate(&sb, &ss, "keyring");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        read_auth(&sb.auth_file())
            .unwrap()
            .get("openai-codex")
            .is_none()
    );

    // The keyring store is held the same way.
    let d = keyring_daemon(&sb, &ss, &mock);
    let out = migrate(&sb, &ss, "file");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("piauthd (pid {}, socket", d.pid()))
            && err.contains("is serving OS keyring")
            && err.contains("start it with --store file"),
        "{err}"
    );
    let mut c = Client::connect(sb.socket()).await.unwrap();
    assert_eq!(
        c.get_token("", 60).await.unwrap().access_token,
        set.access_token
    );
    assert!(
        read_auth(&sb.auth_file())
            .unwrap()
            .get("openai-codex")
            .is_none()
    );
    drop(c);
    stop(d);
}
