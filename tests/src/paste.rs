//! What a user pastes in a paste login: the callback URL their browser ends
//! at, found by following the login's redirects the way a browser does, but
//! without delivering it to the daemon's listener.

/// How many redirects a login may take before the callback URL.
const MAX_HOPS: usize = 5;

/// Follows `url`'s redirects and returns the first one that points at the
/// callback path (`/auth/callback`), without requesting it. Panics when the
/// chain never gets there: the test then says which URL it stopped at.
pub async fn callback_url(url: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let mut at = url.to_owned();
    for _ in 0..MAX_HOPS {
        let resp = http
            .get(&at)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {at}: {e}"));
        let Some(location) = resp.headers().get("location") else {
            panic!("{at} answered {} without a redirect", resp.status());
        };
        let location = location.to_str().expect("an ASCII Location").to_owned();
        let next = reqwest::Url::parse(&at)
            .and_then(|base| base.join(&location))
            .unwrap_or_else(|e| panic!("bad Location {location:?} from {at}: {e}"));
        if next.path() == "/auth/callback" {
            return next.into();
        }
        at = next.into();
    }
    panic!("no redirect to /auth/callback within {MAX_HOPS} hops of {url}")
}
