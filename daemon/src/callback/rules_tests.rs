use super::*;

const ST: &str = "s1";
const COOKIE_VALUE: &str = "c00k1e";

fn flow() -> Flow {
    Flow {
        port: 1455,
        state: Secret::from(ST),
        start_nonce: Secret::from("n0nce"),
        cookie: Secret::from(COOKIE_VALUE),
        authorize_url: Secret::from("https://issuer.example/oauth/authorize?state=s1"),
    }
}

const GOOD_COOKIE: &str = "other=1; piauthd_login=c00k1e";

/// A GET from the browser that started the login.
fn asked<'a>(path: &'a str, query: Option<&'a str>) -> Asked<'a> {
    Asked {
        method: Method::GET,
        path,
        query,
        host: Some("localhost:1455"),
        cookies: vec![GOOD_COOKIE],
    }
}

fn get(path: &str, query: Option<&str>, done: bool) -> (Answer, Option<CallbackEvent>) {
    let progress = Progress {
        started: true,
        completed: done,
    };
    judge(&asked(path, query), &flow(), progress)
}

#[test]
fn the_rules() {
    assert_eq!(get("/x", None, false).0, Answer::NotFound);
    let post = Asked {
        method: Method::POST,
        ..asked("/auth/callback", None)
    };
    assert_eq!(
        judge(&post, &flow(), Progress::default()).0,
        Answer::MethodNotAllowed
    );
    assert_eq!(get("/cancel", None, false), (Answer::NotACodexLogin, None));
    assert_eq!(
        get("/auth/callback", Some("code=c&state=s2"), false).0,
        Answer::BadRequest("State mismatch")
    );
    assert_eq!(
        get("/auth/callback", Some("code=c"), false).0,
        Answer::BadRequest("State mismatch")
    );
    assert_eq!(
        get("/auth/callback", Some("state=s1"), false).0,
        Answer::BadRequest("The callback has no code.")
    );
    let (a, e) = get("/auth/callback", Some("code=c&state=s1"), false);
    assert_eq!(
        (a, e),
        (
            Answer::Success,
            Some(CallbackEvent::Code(Secret::from("c")))
        )
    );
    assert_eq!(
        get("/auth/callback", Some("code=c&state=s1"), true).0,
        Answer::AlreadyCompleted
    );
}

#[test]
fn a_denial_needs_the_right_state() {
    let (a, e) = get(
        "/auth/callback",
        Some("error=access_denied&error_description=No+thanks&state=s1"),
        false,
    );
    assert_eq!(a, Answer::Denied("No thanks".into()));
    assert_eq!(e, Some(CallbackEvent::Denied("No thanks".into())));
    let (a, e) = get("/auth/callback", Some("error=access_denied"), false);
    assert_eq!((a, e), (Answer::BadRequest("State mismatch"), None));
}

#[test]
fn the_start_url_works_once_and_sets_the_cookie() {
    let f = flow();
    let start = asked("/start/n0nce", None);
    let (a, e) = judge(&start, &f, Progress::default());
    assert_eq!((&a, e), (&Answer::Start, None));
    let r = respond(&a, &f);
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()[header::LOCATION],
        "https://issuer.example/oauth/authorize?state=s1"
    );
    assert_eq!(
        r.headers()[header::SET_COOKIE],
        "piauthd_login=c00k1e; HttpOnly; SameSite=Lax; Path=/"
    );
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");

    let used = Progress {
        started: true,
        completed: false,
    };
    assert_eq!(
        judge(&start, &f, used),
        (Answer::StartReused, Some(CallbackEvent::StartReused))
    );
    assert_eq!(
        judge(&asked("/start/other", None), &f, Progress::default()).0,
        Answer::NotFound,
        "a wrong nonce is nothing"
    );
    assert_eq!(
        judge(&asked("/start/", None), &f, Progress::default()).0,
        Answer::NotFound
    );
}

#[test]
fn the_callback_needs_the_cookie_of_this_login() {
    let f = flow();
    let q = Some("code=c&state=s1");
    for cookies in [
        vec![],
        vec!["piauthd_login=wrong"],
        vec!["piauthd_login=c00k1e2"],
        vec!["xpiauthd_login=c00k1e"],
        vec!["other=piauthd_login=c00k1e"],
    ] {
        let req = Asked {
            cookies: cookies.clone(),
            ..asked("/auth/callback", q)
        };
        assert_eq!(
            judge(&req, &f, Progress::default()),
            (Answer::NotThisBrowser, None),
            "{cookies:?}"
        );
    }
    let split = Asked {
        cookies: vec!["a=b", "piauthd_login=c00k1e"],
        ..asked("/auth/callback", q)
    };
    assert_eq!(judge(&split, &f, Progress::default()).0, Answer::Success);
    // Without the cookie even a wrong state says only "not this browser".
    let bare = Asked {
        cookies: vec![],
        ..asked("/auth/callback", Some("code=c&state=nope"))
    };
    assert_eq!(
        judge(&bare, &f, Progress::default()).0,
        Answer::NotThisBrowser
    );
    assert_eq!(
        respond(&Answer::NotThisBrowser, &f).status(),
        StatusCode::FORBIDDEN
    );
}

#[test]
fn host_must_name_the_listener() {
    for ok in [
        "localhost:1455",
        "LocalHost:1455",
        "127.0.0.1:1455",
        "[::1]:1455",
    ] {
        assert!(host_allowed(Some(ok), 1455), "{ok}");
    }
    for bad in [
        None,
        Some(""),
        Some("localhost"),
        Some("localhost:1457"),
        Some("evil.example:1455"),
        Some("localhost.evil.example:1455"),
        Some("127.0.0.2:1455"),
        Some("[::1]"),
        Some("::1:1455"),
    ] {
        assert!(!host_allowed(bad, 1455), "{bad:?}");
    }
    let f = flow();
    for path in ["/auth/callback", "/start/n0nce", "/cancel"] {
        let req = Asked {
            host: Some("evil.example:1455"),
            ..asked(path, Some("code=c&state=s1"))
        };
        assert_eq!(
            judge(&req, &f, Progress::default()),
            (Answer::WrongHost, None)
        );
    }
}

#[test]
fn flow_debug_shows_no_secret() {
    let shown = format!("{:?}", flow());
    for secret in [ST, COOKIE_VALUE, "n0nce", "issuer.example"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

/// The text of a page: its `Full` body is ready at once.
fn body_of(page: Response<Full<Bytes>>) -> String {
    use futures_util::FutureExt;
    use http_body_util::BodyExt;
    let collected = page
        .into_body()
        .collect()
        .now_or_never()
        .expect("a full body is ready at once");
    let Ok(collected) = collected;
    String::from_utf8(collected.to_bytes().to_vec()).expect("a UTF-8 page")
}

#[test]
fn pages_escape_what_the_query_said() {
    let r = respond(&Answer::Denied("<script>x</script>".into()), &flow());
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    let body = body_of(r);
    assert!(
        body.contains("The sign-in was refused: &lt;script&gt;x&lt;/script&gt;"),
        "{body}"
    );
    assert!(
        !body.contains("<script>"),
        "the markup is not echoed: {body}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// Any path, query and cookie: no panic, a code only with the right
    /// state and cookie, and a page that never echoes markup.
    #[test]
    fn any_request_is_judged_safely(
        path in "/\\PC{0,40}",
        query in proptest::option::of("\\PC{0,200}"),
        cookie in "\\PC{0,40}",
        done in proptest::prelude::any::<bool>(),
    ) {
        let req = Asked { cookies: vec![cookie.as_str()], ..asked(&path, query.as_deref()) };
        let progress = Progress { started: true, completed: done };
        let (answer, event) = judge(&req, &flow(), progress);
        if let Some(CallbackEvent::Code(_)) = &event {
            proptest::prop_assert_eq!(&answer, &Answer::Success);
            proptest::prop_assert!(!done);
            proptest::prop_assert!(query.as_deref().unwrap_or("").contains("state=s1"));
            proptest::prop_assert!(cookie.contains("piauthd_login=c00k1e"));
        }
        let page = respond(&answer, &flow());
        proptest::prop_assert!(page.status().as_u16() >= 200);
        let body = body_of(page);
        if let Answer::Denied(reason) = &answer {
            proptest::prop_assert!(!escape(reason).contains('<'));
            proptest::prop_assert!(!reason.contains('<') || !body.contains(reason.as_str()));
        }
    }
}

#[test]
fn escape_neutralises_markup() {
    assert_eq!(
        escape("<a href='x'>&</a>"),
        "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
    );
}
