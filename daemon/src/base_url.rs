//! Base URLs (the issuer's, the Codex backend's) that endpoints are joined
//! onto, and how people see them.
//!
//! [`crate::config`] checks a configured URL and makes it a base; the HTTP
//! clients ([`crate::upstream`], [`crate::codex`]) join endpoints onto it.
//! Both need the same two rules, so they live here, below both.

use url::Url;

/// `url` with its path ending in exactly one `/`, so that [`Url::join`]
/// appends below it (`https://h/backend-api` joined with `codex/responses`
/// would otherwise lose `backend-api`).
pub fn as_base(mut url: Url) -> Url {
    let path = format!("{}/", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// A base URL as people see it (`--check-config`, `status`, logs): without
/// the trailing `/` that [`as_base`] adds for joining, as it was given.
pub fn shown(url: &Url) -> &str {
    let text = url.as_str();
    text.strip_suffix('/').unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_joins_below_its_path_and_shows_as_given() {
        for given in [
            "https://h/backend-api",
            "https://h/backend-api/",
            "https://h/backend-api//",
        ] {
            let base = as_base(Url::parse(given).expect("url"));
            assert_eq!(base.as_str(), "https://h/backend-api/", "{given}");
            assert_eq!(
                base.join("codex/responses").expect("join").as_str(),
                "https://h/backend-api/codex/responses"
            );
            assert_eq!(shown(&base), "https://h/backend-api");
        }
        assert_eq!(
            shown(&as_base(Url::parse("http://127.0.0.1:8787").expect("url"))),
            "http://127.0.0.1:8787"
        );
    }
}
