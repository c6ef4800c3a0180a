use super::*;

fn doc(json: &str) -> Document {
    Document::parse(json.as_bytes()).unwrap()
}

const NOW: i64 = 1_000_000_000;

fn codex(expires: i64) -> View {
    view_of(
        &doc(&format!(
            r#"{{"openai-codex":{{"type":"oauth","access":"a.b.c","refresh":"r","expires":{expires},"accountId":"acc"}},"openai":{{"type":"api_key","key":"sk"}}}}"#
        )),
        StoreHealth::Ok,
        String::new(),
    )
}

#[test]
fn serves_a_token_valid_long_enough() {
    let g = grant_from(&codex(NOW + 120_000), "openai-codex", 60, NOW).unwrap();
    assert_eq!(g.access.expose(), "a.b.c");
    assert_eq!(g.account_id, "acc");
    assert_eq!(g.expires_at_ms, NOW + 120_000);
}

#[test]
fn refuses_a_token_expiring_sooner_than_asked() {
    let e = grant_from(&codex(NOW + 30_000), "openai-codex", 60, NOW).unwrap_err();
    assert!(matches!(e, TokenError::Expiring { .. }), "{e}");
    let e = grant_from(&codex(NOW - 5_000), "openai-codex", 0, NOW).unwrap_err();
    assert!(e.to_string().contains("expired 5s ago"), "{e}");
}

#[test]
fn caps_what_a_caller_may_demand() {
    let hour_and_a_bit = NOW + 3_700_000;
    assert!(grant_from(&codex(hour_and_a_bit), "openai-codex", u32::MAX, NOW).is_ok());
}

#[test]
fn api_keys_are_served_without_expiry() {
    let g = grant_from(&codex(NOW + 120_000), "openai", 600, NOW).unwrap();
    assert_eq!(g.access.expose(), "sk");
    assert_eq!(g.expires_at_ms, 0);
}

#[test]
fn missing_provider_or_store_says_log_in() {
    let e = grant_from(&codex(NOW), "anthropic", 0, NOW).unwrap_err();
    assert!(matches!(e, TokenError::NotLoggedIn { .. }));
    assert!(e.to_string().contains("pi-authctl login"));
}

#[test]
fn a_corrupt_store_is_reported_when_nothing_is_known() {
    let view = View {
        health: StoreHealth::Corrupt,
        detail: "auth.json is corrupt".into(),
        entries: Vec::new(),
    };
    let e = grant_from(&view, "openai-codex", 0, NOW).unwrap_err();
    assert_eq!(
        e,
        TokenError::StoreCorrupt {
            detail: "auth.json is corrupt".into()
        }
    );
}

#[test]
fn a_corrupt_store_keeps_serving_the_last_good_token() {
    let mut view = codex(NOW + 120_000);
    view.health = StoreHealth::Corrupt;
    assert!(grant_from(&view, "openai-codex", 0, NOW).is_ok());
}
