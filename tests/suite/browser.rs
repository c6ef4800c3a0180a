//! The whole browser login with a real headless Chromium, and
//! `pi-authctl login` in a real pseudo-terminal with a pasted URL.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_client::proto::v1::login_event::Event;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::{Daemon, Sandbox, bin_path};

/// The Chromium to drive, if one is installed (CI installs Debian's).
pub(crate) fn chromium() -> Option<String> {
    if let Ok(path) = std::env::var("PIAUTHD_TEST_CHROMIUM") {
        return Some(path);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new("which")
                .arg(c)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_owned)
}

/// Loads `url` in a fresh headless Chromium profile, following every
/// redirect as a user's browser would, and returns what it printed (the
/// final page's DOM on stdout).
pub(crate) async fn headless(browser: &str, url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let (browser, url, dir) = (
        browser.to_owned(),
        url.to_owned(),
        profile.path().to_owned(),
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
            ])
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg("--dump-dom")
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .expect("run chromium")
    })
    .await
    .unwrap();
    drop(profile);
    out
}

/// A daemon whose login callback binds port 0 (both addresses): the login
/// URL it hands out names the port the kernel gave it.
async fn daemon_with_callback(mock: &MockOpenAi) -> (Sandbox, Daemon) {
    let sb = Sandbox::new();
    let issuer = mock.issuer();
    let d = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CALLBACK_ADDR", "127.0.0.1:0")
            .env("PIAUTHD_CALLBACK_FALLBACK_ADDR", "127.0.0.1:0");
    });
    (sb, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_completes_the_browser_login() {
    let Some(browser) = chromium() else {
        piauth_tests::host::skip_outside_ci("Debian's chromium");
        return;
    };
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let (sb, _d) = daemon_with_callback(&mock).await;
    let mut c = Client::connect(sb.socket()).await.unwrap();
    let mut stream = c.login("", pb::LoginMethod::Browser, 120).await.unwrap();
    let Some(Event::AuthorizeUrl(a)) = stream.next().await.unwrap() else {
        panic!()
    };

    let out = headless(&browser, &a.url).await;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("You can close this window"),
        "chromium did not land on the success page:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome = loop {
        match stream.next().await.unwrap() {
            Some(Event::Waiting(_)) => {}
            other => break other,
        }
    };
    assert!(matches!(outcome, Some(Event::Success(_))), "{outcome:?}");
    let st = c.status().await.unwrap();
    let codex = &st.providers[0];
    assert_eq!(
        (
            codex.provider.as_str(),
            codex.account_id.as_str(),
            codex.email.as_str()
        ),
        ("openai-codex", "acc-login", "login@example.com")
    );
    assert_eq!(codex.state, pb::ProviderState::Valid as i32);
}

/// Runs `pi-authctl login --no-browser` in a pseudo-terminal (util-linux
/// `script`), reads the URL it prints, and pastes the redirect URL at its
/// prompt, as a user over SSH would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_authctl_login_in_a_terminal_with_a_pasted_url() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let (sb, _d) = daemon_with_callback(&mock).await;
    let authctl = bin_path("pi-authctl");
    let mut cmd = Command::new("script");
    cmd.args(["-qfec"])
        .arg(format!("{} login --no-browser", authctl.display()))
        .arg("/dev/null")
        .env("PIAUTHD_SOCKET", sb.socket())
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("script (util-linux)");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = String::new();
    let read_until = |screen: &mut String, what: &str, limit: Duration| {
        let deadline = Instant::now() + limit;
        while !screen.contains(what) && Instant::now() < deadline {
            if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(50)) {
                screen.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
        screen.contains(what)
    };
    let marker = format!("{}/oauth/authorize?", mock.issuer());
    assert!(
        read_until(&mut screen, "paste the URL", Duration::from_secs(15)),
        "{screen}"
    );
    assert!(
        screen.contains("http://localhost:") && screen.contains("/start/"),
        "the local start URL is shown too: {screen}"
    );
    let start = screen.find(&marker).expect("the URL is printed");
    let url: String = screen[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();

    let location = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    // A typo first: the prompt says why and waits for another try.
    stdin.write_all(b"garbage with spaces\n").unwrap();
    assert!(
        read_until(&mut screen, "has no code", Duration::from_secs(10)),
        "{screen}"
    );
    stdin.write_all(format!("{location}\n").as_bytes()).unwrap();
    assert!(
        read_until(
            &mut screen,
            "Logged in to openai-codex as login@example.com",
            Duration::from_secs(15)
        ),
        "{screen}"
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}: {screen}");
    assert_eq!(mock.stats().exchanges, 1);
}
