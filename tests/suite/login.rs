//! Login: the browser callback, paste, device code, busy ports, cancel,
//! timeout and logout, against the mock issuer.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use piauth_client::proto::v1 as pb;
use piauth_client::proto::v1::login_event::Event;
use piauth_client::{Client, Error, LoginStream, Reason};
use piauth_tests::daemon::read_auth;
use piauth_tests::host::free_addr;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::process::tcp_listeners;
use piauth_tests::wait::wait_until;
use piauth_tests::{Daemon, Sandbox};

/// A mock, a daemon with its callback addresses, and a client.
struct Rig {
    mock: MockOpenAi,
    sb: Sandbox,
    daemon: Daemon,
    client: Client,
    primary: SocketAddr,
    fallback: SocketAddr,
}

/// The callback on port 0 (primary and fallback): each login's listener
/// gets a port of the kernel's, which the AuthorizeUrl event reports. No
/// port is picked ahead, so none can be taken in between.
async fn rig(config: MockConfig) -> Rig {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    rig_on(config, any, any).await
}

/// The callback on two fixed ports, for the tests that occupy them first.
/// They were free a moment ago ([`free_addr`]); the squatter's bind, which
/// fails loudly, says if one was taken in between.
async fn rig_on_fixed_ports(config: MockConfig) -> Rig {
    let primary = free_addr();
    let fallback = loop {
        let other = free_addr();
        if other != primary {
            break other;
        }
    };
    rig_on(config, primary, fallback).await
}

async fn rig_on(config: MockConfig, primary: SocketAddr, fallback: SocketAddr) -> Rig {
    let mock = MockOpenAi::start(config).await.unwrap();
    let sb = Sandbox::new();
    let issuer = mock.issuer();
    let daemon = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CALLBACK_ADDR", primary.to_string())
            .env("PIAUTHD_CALLBACK_FALLBACK_ADDR", fallback.to_string());
    });
    let client = Client::connect(sb.socket()).await.unwrap();
    Rig {
        mock,
        sb,
        daemon,
        client,
        primary,
        fallback,
    }
}

impl Rig {
    /// Every TCP address the daemon listens on, in the kernel's hex.
    fn listeners(&self) -> Vec<String> {
        tcp_listeners(self.daemon.pid())
    }
}

/// An HTTP client that does not follow redirects, like a browser whose
/// redirect we want to see.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser login just started.
pub(crate) struct Begun {
    pub stream: LoginStream,
    /// The one-time local start URL, for the browser on this machine.
    pub start: String,
    /// The issuer's authorize URL, for a browser elsewhere (paste).
    pub issuer: String,
    pub addr: String,
}

impl Begun {
    /// The callback's address, as the AuthorizeUrl event reported it.
    pub fn callback(&self) -> SocketAddr {
        self.addr
            .parse()
            .expect("AuthorizeUrl reports the callback address")
    }
}

/// Starts a browser login and returns its stream and URLs.
pub(crate) async fn begin(c: &mut Client, timeout_secs: u32) -> Begun {
    let mut stream = c
        .login("", pb::LoginMethod::Browser, timeout_secs)
        .await
        .unwrap();
    let Some(Event::AuthorizeUrl(a)) = stream.next().await.unwrap() else {
        panic!("the first event is the authorize URL");
    };
    Begun {
        stream,
        start: a.url,
        issuer: a.issuer_url,
        addr: a.callback_addr,
    }
}

/// What a browser does with the start URL: take the cookie, follow the
/// redirect to the issuer, and follow the issuer's back to the callback
/// with the cookie. Returns the callback's response.
pub(crate) async fn browse(start: &str) -> reqwest::Response {
    let begin = http().get(start).send().await.unwrap();
    assert_eq!(begin.status(), 302, "the start URL redirects");
    let cookie = begin.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let issuer = begin.headers()["location"].to_str().unwrap().to_owned();
    let callback = redirect_of(&issuer).await;
    http()
        .get(callback)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// What the issuer redirects the browser to, without following it.
pub(crate) async fn redirect_of(url: &str) -> String {
    let resp = http().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 303, "the mock redirects");
    resp.headers()["location"].to_str().unwrap().to_owned()
}

/// Reads events until the last one.
pub(crate) async fn outcome(stream: &mut LoginStream) -> Event {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the login ends in time")
            .unwrap()
        {
            Some(Event::Waiting(_) | Event::CallbackUnavailable(_) | Event::DeviceCode(_)) => {}
            Some(last) => return last,
            None => panic!("the stream ended without an outcome"),
        }
    }
}

pub(crate) fn listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

async fn port_closes(addr: SocketAddr) -> bool {
    wait_until(Duration::from_secs(1), || async move { !listening(addr) }).await
}

pub(crate) fn query_param(url: &str, key: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_callback_completes_a_login() {
    let mut r = rig(MockConfig::default()).await;
    r.sb.write_auth(
        "{\n  \"openai\": {\n    \"type\": \"api_key\",\n    \"key\": \"sk-keep\"\n  }\n}",
    );
    assert_eq!(
        r.listeners(),
        Vec::<String>::new(),
        "no listener before a login"
    );
    let begun = begin(&mut r.client, 0).await;
    let callback = begun.callback();
    let Begun {
        mut stream,
        start,
        issuer: url,
        ..
    } = begun;
    assert!(
        callback.ip().is_loopback() && callback.port() != 0,
        "{callback}"
    );
    assert_eq!(
        start.rsplit_once('/').unwrap().0,
        format!("http://localhost:{}/start", callback.port()),
        "the browser opens a local start URL"
    );
    assert!(!start.contains("state") && !start.contains(&query_param(&url, "state")));
    assert_eq!(
        query_param(&url, "redirect_uri"),
        format!("http://localhost:{}/auth/callback", callback.port())
    );
    assert_eq!(query_param(&url, "originator"), "pi");
    assert_eq!(query_param(&url, "code_challenge_method"), "S256");
    assert_eq!(query_param(&url, "state").len(), 32);
    assert!(listening(callback), "listening during the login");

    // The browser: the start URL, the issuer, back to the daemon's callback.
    let page = browse(&start).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("You can close this window")
    );

    let Event::Success(s) = outcome(&mut stream).await else {
        panic!("login failed")
    };
    assert_eq!(
        (s.account_id.as_str(), s.email.as_str(), s.plan.as_str()),
        ("acc-login", "login@example.com", "plus")
    );
    assert!(
        port_closes(callback).await,
        "the port closes when the login ends"
    );

    let token = r.client.get_token("", 60).await.unwrap();
    assert!(r.mock.state.access_token_live(&token.access_token));
    let doc = read_auth(&r.sb.auth_file()).unwrap();
    assert_eq!(doc["openai"]["key"], "sk-keep");
    assert_eq!(doc["openai-codex"]["accountId"], "acc-login");
    // Status lists providers in the order of auth.json, which a reload
    // may change from the order a login adds them in: find it by name.
    let st = r.client.status().await.unwrap();
    let codex = st
        .providers
        .iter()
        .find(|p| p.provider == "openai-codex")
        .unwrap();
    assert_eq!(codex.email, "login@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_paste_form_completes_a_login() {
    let mut r = rig(MockConfig::default()).await;
    let forms: [fn(&str, &str, &str) -> String; 5] = [
        |loc, _, _| loc.to_owned(),
        |_, code, state| format!("{code}#{state}"),
        |_, code, state| format!("code={code}&state={state}"),
        |_, code, state| format!("  ?code={code}&state={state}\n"),
        |_, code, _| code.to_owned(),
    ];
    for (i, form) in forms.iter().enumerate() {
        let begun = begin(&mut r.client, 0).await;
        let callback = begun.callback();
        let Begun {
            mut stream, issuer, ..
        } = begun;
        let location = redirect_of(&issuer).await;
        let pasted = form(
            &location,
            &query_param(&location, "code"),
            &query_param(&location, "state"),
        );
        r.client
            .submit_code("", &pasted)
            .await
            .unwrap_or_else(|e| panic!("form {i}: {e}"));
        assert!(
            matches!(outcome(&mut stream).await, Event::Success(_)),
            "form {i}"
        );
        assert!(port_closes(callback).await);
    }
    assert_eq!(r.mock.stats().exchanges, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pastes_get_precise_errors_and_the_login_stays_open() {
    let mut r = rig(MockConfig::default()).await;
    let begun = begin(&mut r.client, 0).await;
    let callback = begun.callback();
    let Begun {
        mut stream, issuer, ..
    } = begun;
    let location = redirect_of(&issuer).await;
    let code = query_param(&location, "code");
    let cases = [
        ("", "nothing was pasted"),
        ("   ", "nothing was pasted"),
        (
            &*format!("{code}#ffffffffffffffffffffffffffffffff"),
            "State mismatch",
        ),
        ("http://localhost:1455/auth/callback?state=x", "has no code"),
        ("not-the-code", "did not accept that code"),
    ];
    for (input, says) in cases {
        let e = r.client.submit_code("", input).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument { .. }),
            "{input:?}: {e:?}"
        );
        assert!(e.to_string().contains(says), "{input:?}: {e}");
    }
    assert!(listening(callback), "the login is still open");
    r.client.submit_code("", &location).await.unwrap();
    assert!(matches!(outcome(&mut stream).await, Event::Success(_)));
    let e = r.client.submit_code("", &location).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::FailedPrecondition {
                reason: Reason::NoLoginInProgress,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_applies_every_rule() {
    let mut r = rig(MockConfig::default()).await;
    // A slow exchange keeps the listener up after the first good hit.
    r.mock.state.set_token_delay(Duration::from_millis(1500));
    let begun = begin(&mut r.client, 0).await;
    let callback = begun.callback();
    let Begun {
        mut stream, start, ..
    } = begun;
    let base = format!("http://{callback}");
    let started = http().get(&start).send().await.unwrap();
    let cookie = started.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("piauthd_login=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let location = redirect_of(started.headers()["location"].to_str().unwrap()).await;
    let state = query_param(&location, "state");
    let get = |path: String| {
        let cookie = cookie.clone();
        async move {
            http()
                .get(path)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };

    assert_eq!(get(format!("{base}/elsewhere")).await.status(), 404);
    let post = http()
        .post(format!("{base}/auth/callback?code=c&state={state}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(matches!(post.status().as_u16(), 404 | 405));
    let mismatch = get(format!("{base}/auth/callback?code=c&state=0000")).await;
    assert_eq!(mismatch.status(), 400);
    assert!(mismatch.text().await.unwrap().contains("State mismatch"));
    assert_eq!(
        get(format!("{base}/auth/callback?state={state}"))
            .await
            .status(),
        400,
        "no code"
    );
    let cancel = get(format!("{base}/cancel")).await;
    assert_eq!(
        cancel.status(),
        200,
        "Codex CLI's /cancel is answered harmlessly"
    );
    assert!(listening(callback), "and does not cancel our login");

    let first = get(location.replace("localhost", "127.0.0.1")).await;
    assert_eq!(first.status(), 200);
    let second = get(location.replace("localhost", "127.0.0.1")).await;
    assert_eq!(second.status(), 409, "one-shot");
    assert!(matches!(outcome(&mut stream).await, Event::Success(_)));
    assert!(port_closes(callback).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_fails_the_login() {
    let mut r = rig(MockConfig {
        approve: false,
        ..MockConfig::default()
    })
    .await;
    let begun = begin(&mut r.client, 0).await;
    let callback = begun.callback();
    let Begun {
        mut stream, start, ..
    } = begun;
    let page = browse(&start).await;
    assert_eq!(page.status(), 400);
    let Event::Failure(f) = outcome(&mut stream).await else {
        panic!()
    };
    assert_eq!(f.kind, pb::LoginFailureKind::Denied as i32);
    assert!(f.message.contains("denied"), "{}", f.message);
    assert!(port_closes(callback).await);
    assert!(read_auth(&r.sb.auth_file()).is_none(), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_moves_the_login_to_the_fallback() {
    let mut r = rig_on_fixed_ports(MockConfig::default()).await;
    let squatter = TcpListener::bind(r.primary).unwrap();
    let Begun {
        mut stream,
        start,
        issuer,
        addr,
    } = begin(&mut r.client, 0).await;
    assert_eq!(addr, r.fallback.to_string());
    assert_eq!(
        query_param(&issuer, "redirect_uri"),
        format!("http://localhost:{}/auth/callback", r.fallback.port())
    );
    assert_eq!(browse(&start).await.status(), 200);
    assert!(matches!(outcome(&mut stream).await, Event::Success(_)));
    assert!(port_closes(r.fallback).await);
    drop(squatter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_both_ports_busy_it_says_so_and_paste_still_works() {
    let mut r = rig_on_fixed_ports(MockConfig::default()).await;
    let squatters = (
        TcpListener::bind(r.primary).unwrap(),
        TcpListener::bind(r.fallback).unwrap(),
    );
    let mut stream = r
        .client
        .login("", pb::LoginMethod::Browser, 0)
        .await
        .unwrap();
    let Some(Event::AuthorizeUrl(a)) = stream.next().await.unwrap() else {
        panic!()
    };
    assert!(a.callback_addr.is_empty(), "no listener");
    assert_eq!(a.url, a.issuer_url, "no start URL without a listener");
    let Some(Event::CallbackUnavailable(c)) = stream.next().await.unwrap() else {
        panic!("the busy ports are announced")
    };
    assert!(
        c.message.contains("busy") && c.message.contains("paste") && c.message.contains("--device"),
        "{}",
        c.message
    );
    let location = redirect_of(&a.url).await;
    r.client.submit_code("", &location).await.unwrap();
    assert!(matches!(outcome(&mut stream).await, Event::Success(_)));
    drop(squatters);
    assert!(TcpListener::bind(r.primary).is_ok() && TcpListener::bind(r.fallback).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_flow_polls_slows_down_and_completes() {
    let mut r = rig(MockConfig {
        device_pending_polls: 2,
        device_slow_down_at: Some(1),
        ..MockConfig::default()
    })
    .await;
    let started = std::time::Instant::now();
    let mut stream = r
        .client
        .login("", pb::LoginMethod::DeviceCode, 0)
        .await
        .unwrap();
    let Some(Event::DeviceCode(d)) = stream.next().await.unwrap() else {
        panic!("a device code first")
    };
    assert_eq!(
        d.verification_url,
        format!("{}/codex/device", r.mock.issuer())
    );
    assert_eq!(d.user_code.len(), 9);
    assert_eq!(
        r.listeners(),
        Vec::<String>::new(),
        "no callback listener for a device login"
    );
    let Event::Success(s) = outcome(&mut stream).await else {
        panic!()
    };
    assert_eq!(s.account_id, "acc-login");
    let stats = r.mock.stats();
    assert_eq!(stats.device_polls, 3, "pending, slow_down, approved");
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "slow_down added 5 s to the 1 s interval"
    );
    assert!(r.client.get_token("", 0).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_device_login_is_a_clear_failure() {
    let mut r = rig(MockConfig {
        device_enabled: false,
        ..MockConfig::default()
    })
    .await;
    let mut stream = r
        .client
        .login("", pb::LoginMethod::DeviceCode, 0)
        .await
        .unwrap();
    let Event::Failure(f) = outcome(&mut stream).await else {
        panic!()
    };
    assert_eq!(f.kind, pb::LoginFailureKind::DeviceCodeUnavailable as i32);
    assert!(f.message.contains("not enabled"), "{}", f.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_timeout_free_the_port_at_once() {
    let mut r = rig(MockConfig::default()).await;
    let begun = begin(&mut r.client, 0).await;
    let callback = begun.callback();
    let Begun { stream, .. } = begun;
    assert!(listening(callback));
    // A second login is refused while one runs.
    let e = r.client.login("", pb::LoginMethod::Browser, 0).await;
    let e = match e {
        Err(e) => e,
        Ok(mut s) => s.next().await.unwrap_err(),
    };
    assert!(
        matches!(
            e,
            Error::FailedPrecondition {
                reason: Reason::LoginInProgress,
                ..
            }
        ),
        "{e:?}"
    );
    drop(stream); // the client goes away: cancel
    assert!(port_closes(callback).await, "cancel frees the port");

    let begun = begin(&mut r.client, 1).await;
    let callback = begun.callback();
    let Begun { mut stream, .. } = begun;
    let Event::Failure(f) = outcome(&mut stream).await else {
        panic!()
    };
    assert_eq!(f.kind, pb::LoginFailureKind::Timeout as i32);
    assert!(port_closes(callback).await, "timeout frees the port");
}

/// The listening sockets are bound to 127.0.0.1 and [::1] (the redirect
/// says `localhost`, which a browser may resolve to either), never to a
/// wildcard or an external address (read from the kernel's socket table,
/// no traffic sent).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_binds_loopback_only() {
    let mut r = rig(MockConfig::default()).await;
    assert_eq!(
        r.listeners(),
        Vec::<String>::new(),
        "nothing listens before the login"
    );
    let begun = begin(&mut r.client, 0).await;
    let port_hex = format!("{:04X}", begun.callback().port());
    let Begun { stream, .. } = begun;
    // The kernel prints each 32-bit word in the machine's byte order.
    let word = |b: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(b));
    let v4 = word([127, 0, 0, 1]);
    let v6 = [[0; 4], [0; 4], [0; 4], [0, 0, 0, 1]].map(word).concat();
    let mut expected = vec![format!("{v4}:{port_hex}")];
    // A host without IPv6 loopback gets IPv4 alone.
    if TcpListener::bind("[::1]:0").is_ok() {
        expected.push(format!("{v6}:{port_hex}"));
    }
    assert_eq!(r.listeners(), expected, "127.0.0.1 and [::1] only");
    drop(stream);
    assert!(
        wait_until(Duration::from_secs(1), || async {
            r.listeners().is_empty()
        })
        .await,
        "nothing listens after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_an_account_id_fails_the_login() {
    let mut r = rig(MockConfig {
        omit_account_id: true,
        ..MockConfig::default()
    })
    .await;
    let Begun {
        mut stream, start, ..
    } = begin(&mut r.client, 0).await;
    let _ = browse(&start).await;
    let Event::Failure(f) = outcome(&mut stream).await else {
        panic!()
    };
    assert_eq!(
        f.kind,
        pb::LoginFailureKind::InvalidToken as i32,
        "{}",
        f.message
    );
    assert!(f.message.contains("account id"), "{}", f.message);
    assert!(read_auth(&r.sb.auth_file()).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_removes_only_that_provider() {
    let mut r = rig(MockConfig::default()).await;
    let others = "{\n  \"anthropic\": {\n    \"type\": \"oauth\",\n    \"refresh\": \"r\",\n    \"access\": \"a\",\n    \"expires\": 1767225600000,\n    \"extra\": [1, {\"x\": null}]\n  },\n  \"openai\": {\n    \"type\": \"api_key\",\n    \"key\": \"sk-keep\"\n  }\n}";
    r.sb.write_auth(others);
    let Begun {
        mut stream, start, ..
    } = begin(&mut r.client, 0).await;
    let _ = browse(&start).await;
    assert!(matches!(outcome(&mut stream).await, Event::Success(_)));
    assert!(read_auth(&r.sb.auth_file()).unwrap()["openai-codex"].is_object());

    assert!(r.client.logout("").await.unwrap());
    let after = read_auth(&r.sb.auth_file()).unwrap();
    let before: serde_json::Value = serde_json::from_str(others).unwrap();
    assert_eq!(after, before, "the other providers are untouched");
    let e = r.client.get_token("", 0).await.unwrap_err();
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
    assert!(
        !r.client.logout("").await.unwrap(),
        "nothing left to remove"
    );
    let out = r.sb.authctl(&["logout"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("was not logged in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_login_clears_needs_login() {
    let mut r = rig(MockConfig::default()).await;
    let set = r
        .mock
        .state
        .seed_login("acc-old", "old@example.com", "plus");
    piauth_tests::fixtures::write_codex_login(&r.sb.auth_file(), &set).unwrap();
    let c = r.client.clone();
    assert!(
        wait_until(Duration::from_secs(3), || {
            let mut c = c.clone();
            async move { c.get_token("", 0).await.is_ok() }
        })
        .await
    );
    r.mock
        .state
        .push_faults([piauth_tests::mock::Fault::InvalidGrant]);
    let _ = r.client.refresh("").await;
    let e = r.client.get_token("", 0).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unauthenticated {
                reason: Reason::NeedsLogin,
                ..
            }
        ),
        "{e:?}"
    );

    let Begun {
        mut stream, start, ..
    } = begin(&mut r.client, 0).await;
    let _ = browse(&start).await;
    assert!(matches!(outcome(&mut stream).await, Event::Success(_)));
    let t = r.client.get_token("", 0).await.unwrap();
    assert_eq!(t.account_id, "acc-login");
}
