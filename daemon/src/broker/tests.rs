use super::*;

pub(crate) fn view_from(json: &str) -> View {
    let mut view = View {
        health: StoreHealth::Ok,
        detail: String::new(),
        entries: Vec::new(),
        refresh: RefreshState::default(),
        generation: 0,
        loads: 0,
    };
    adopt_document(&mut view, &Document::parse(json.as_bytes()).unwrap(), NOW);
    view
}

const NOW: i64 = 1_000_000_000;

fn codex(expires: i64) -> View {
    let mut v = view_from(&format!(
        r#"{{"openai-codex":{{"type":"oauth","access":"a.b.c","refresh":"r","expires":{expires},"accountId":"acc"}},"openai":{{"type":"api_key","key":"sk"}},"anthropic":{{"type":"oauth","access":"x","refresh":"y","expires":{expires}}}}}"#
    ));
    v.refresh.lifetime_ms = 3_600_000;
    v
}

fn serve(d: Decision) -> Grant {
    match d {
        Decision::Serve(g) => g,
        other => panic!("expected Serve, got {other:?}"),
    }
}

#[test]
fn serves_a_token_valid_long_enough() {
    let g = serve(decide(&codex(NOW + 120_000), 60, NOW));
    assert_eq!(g.access.expose(), "a.b.c");
    assert_eq!(g.account_id, "acc");
    assert_eq!(g.expires_at_ms, NOW + 120_000);
}

#[test]
fn a_token_shorter_than_asked_is_refreshed() {
    let d = decide(&codex(NOW + 30_000), 60, NOW);
    assert!(
        matches!(d, Decision::Refresh { wanted_ms: 60_000 }),
        "{d:?}"
    );
    let d = decide(&codex(NOW - 5_000), 0, NOW);
    assert!(matches!(d, Decision::Refresh { .. }), "{d:?}");
}

#[test]
fn demands_are_capped_by_the_lifetime() {
    let mut v = codex(NOW + 3_000);
    v.refresh.lifetime_ms = 4_000;
    // Asking for an hour of a 4 s token: half the lifetime (2 s) is enough.
    assert!(matches!(decide(&v, 3600, NOW), Decision::Serve(_)));
}

#[test]
fn backoff_serves_what_is_still_valid_and_explains_otherwise() {
    let mut v = codex(NOW + 30_000);
    v.refresh.retry_at_ms = Some(NOW + 5_000);
    v.refresh.last_error = "HTTP 503".into();
    assert!(matches!(decide(&v, 60, NOW), Decision::Serve(_)));
    let mut v = codex(NOW - 1);
    v.refresh.retry_at_ms = Some(NOW + 5_000);
    v.refresh.last_error = "HTTP 503".into();
    let Decision::Fail(e) = decide(&v, 0, NOW) else {
        panic!()
    };
    assert!(matches!(e, TokenError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("HTTP 503"));
}

#[test]
fn needs_login_fails_even_with_a_valid_token() {
    let mut v = codex(NOW + 120_000);
    v.refresh.phase = Phase::NeedsLogin {
        refresh_used: Secret::from("r"),
        reason: "refresh_token_reused".into(),
    };
    let Decision::Fail(e) = decide(&v, 0, NOW) else {
        panic!()
    };
    assert!(matches!(e, TokenError::NeedsLogin { .. }));
    assert!(e.to_string().contains("pi-authctl login"));
}

#[test]
fn an_unknown_outcome_serves_until_expiry_then_asks_for_login() {
    let mut v = codex(NOW + 30_000);
    v.refresh.phase = Phase::OutcomeUnknown {
        refresh_used: Secret::from("r"),
        reason: "reset".into(),
    };
    assert!(matches!(decide(&v, 60, NOW), Decision::Serve(_)));
    let mut v = codex(NOW - 1);
    v.refresh.phase = Phase::OutcomeUnknown {
        refresh_used: Secret::from("r"),
        reason: "reset".into(),
    };
    assert!(matches!(
        decide(&v, 0, NOW),
        Decision::Fail(TokenError::NeedsLogin { .. })
    ));
}

#[test]
fn a_new_refresh_token_on_disk_clears_needs_login() {
    let mut v = codex(NOW + 120_000);
    v.refresh.phase = Phase::NeedsLogin {
        refresh_used: Secret::from("r"),
        reason: "x".into(),
    };
    let same = Document::parse(
        br#"{"openai-codex":{"type":"oauth","access":"a.b.c","refresh":"r","expires":5}}"#,
    )
    .unwrap();
    adopt_document(&mut v, &same, NOW);
    assert!(matches!(v.refresh.phase, Phase::NeedsLogin { .. }));
    let relogged = Document::parse(
        br#"{"openai-codex":{"type":"oauth","access":"n.e.w","refresh":"r2","expires":5}}"#,
    )
    .unwrap();
    let generation = v.generation;
    adopt_document(&mut v, &relogged, NOW);
    assert_eq!(v.refresh.phase, Phase::Idle);
    assert_eq!(v.generation, generation + 1);
}

#[test]
fn an_unpersisted_token_survives_a_reload_of_the_older_file() {
    let mut v = codex(NOW + 120_000);
    v.refresh.unpersisted = true;
    let old = Document::parse(br#"{"openai-codex":{"type":"oauth","access":"o.l.d","refresh":"r0","expires":5},"openai":{"type":"api_key","key":"k2"}}"#).unwrap();
    adopt_document(&mut v, &old, NOW);
    assert_eq!(v.codex().unwrap().access.expose(), "a.b.c");
    assert!(matches!(
        grant_static(&v, "openai", 0, NOW)
            .unwrap()
            .access
            .expose()
            .as_str(),
        "k2"
    ));
}

#[test]
fn other_providers_are_served_but_not_refreshed() {
    let v = codex(NOW + 120_000);
    let g = grant_static(&v, "openai", 600, NOW).unwrap();
    assert_eq!((g.access.expose().as_str(), g.expires_at_ms), ("sk", 0));
    assert!(grant_static(&v, "anthropic", 60, NOW).is_ok());
    let e = grant_static(&v, "anthropic", 600, NOW).unwrap_err();
    assert!(matches!(e, TokenError::Expiring { .. }), "{e}");
    let e = grant_static(&v, "nobody", 0, NOW).unwrap_err();
    assert!(matches!(e, TokenError::NotLoggedIn { .. }));
}

#[test]
fn not_logged_in_or_corrupt_store() {
    let empty = view_from("{}");
    assert!(matches!(
        decide(&empty, 0, NOW),
        Decision::Fail(TokenError::NotLoggedIn { .. })
    ));
    let mut corrupt = empty.clone();
    corrupt.health = StoreHealth::Corrupt;
    corrupt.detail = "auth.json is corrupt".into();
    assert!(matches!(
        decide(&corrupt, 0, NOW),
        Decision::Fail(TokenError::StoreCorrupt { .. })
    ));
}

#[test]
fn next_refresh_follows_policy_and_stops_when_stuck() {
    const HOUR: i64 = 3_600_000;
    let mut v = codex(NOW + 10 * HOUR);
    v.refresh.lifetime_ms = 10 * HOUR;
    // The default lead: 35 minutes ahead.
    assert_eq!(v.next_refresh_ms(), Some(NOW + 10 * HOUR - 35 * 60_000));
    v.refresh.lead_ms = 60 * 60_000;
    assert_eq!(v.next_refresh_ms(), Some(NOW + 9 * HOUR));
    // An hour-long token: half its life, not the lead.
    v.refresh.lifetime_ms = HOUR;
    assert_eq!(v.next_refresh_ms(), Some(NOW + 10 * HOUR - 30 * 60_000));
    v.refresh.retry_at_ms = Some(NOW + 10 * HOUR - 60_000);
    assert_eq!(v.next_refresh_ms(), Some(NOW + 10 * HOUR - 60_000));
    v.refresh.phase = Phase::OutcomeUnknown {
        refresh_used: Secret::from("r"),
        reason: String::new(),
    };
    assert_eq!(v.next_refresh_ms(), None);
}

#[test]
fn a_restored_old_file_never_brings_back_a_spent_token() {
    let mut v = codex(NOW + 120_000);
    v.refresh.spent.push(Secret::from("r0"));
    let old = Document::parse(
        br#"{"openai-codex":{"type":"oauth","access":"o.l.d","refresh":"r0","expires":5}}"#,
    )
    .unwrap();
    adopt_document(&mut v, &old, NOW);
    assert_eq!(
        v.codex().unwrap().refresh.expose(),
        "r",
        "the current token is kept"
    );
    assert!(v.refresh.unpersisted, "and will be written back");
}

/// `auth.json` holding a codex login whose token expires at `expires`.
fn codex_doc(expires: i64) -> Document {
    Document::parse(
        format!(
            r#"{{"openai-codex":{{"type":"oauth","access":"a.b.c","refresh":"r","expires":{expires}}}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn a_repaired_store_ends_the_backoff_its_corruption_caused() {
    let mut v = codex(NOW - 5_000);
    // A refresh found auth.json corrupt and backed off.
    v.health = StoreHealth::Corrupt;
    v.detail = "auth.json is not valid JSON".into();
    v.refresh.failures = 3;
    v.refresh.retry_at_ms = Some(NOW + 30_000);
    v.refresh.last_error = "auth.json is corrupt; not refreshing until it is fixed".into();
    assert!(matches!(
        decide(&v, 0, NOW),
        Decision::Fail(TokenError::Unavailable { .. })
    ));
    // The same login, readable again.
    adopt_document(&mut v, &codex_doc(NOW - 5_000), NOW);
    assert_eq!(v.health, StoreHealth::Ok);
    assert_eq!((v.refresh.failures, v.refresh.retry_at_ms), (0, None));
    assert!(v.refresh.last_error.is_empty(), "{}", v.refresh.last_error);
    assert!(
        matches!(decide(&v, 0, NOW), Decision::Refresh { .. }),
        "refreshed at once, not after the backoff"
    );

    // Unreadable is repaired the same way.
    v.health = StoreHealth::Unreadable;
    v.refresh.failures = 1;
    v.refresh.retry_at_ms = Some(NOW + 8_000);
    adopt_document(&mut v, &codex_doc(NOW - 5_000), NOW);
    assert_eq!((v.refresh.failures, v.refresh.retry_at_ms), (0, None));
}

#[test]
fn a_reload_of_a_store_that_read_fine_keeps_the_issuers_backoff() {
    let mut v = codex(NOW - 5_000);
    v.refresh.failures = 2;
    v.refresh.retry_at_ms = Some(NOW + 30_000);
    v.refresh.last_error = "the issuer answered 503".into();
    adopt_document(&mut v, &codex_doc(NOW - 5_000), NOW);
    assert_eq!(
        (v.refresh.failures, v.refresh.retry_at_ms),
        (2, Some(NOW + 30_000))
    );
    assert_eq!(v.refresh.last_error, "the issuer answered 503");
}

#[test]
fn a_repair_keeps_the_reason_of_a_stuck_phase() {
    let mut v = codex(NOW - 5_000);
    v.health = StoreHealth::Corrupt;
    v.refresh.phase = Phase::OutcomeUnknown {
        refresh_used: Secret::from("r"),
        reason: "no answer".into(),
    };
    v.refresh.last_error = "no answer".into();
    adopt_document(&mut v, &codex_doc(NOW - 5_000), NOW);
    assert!(matches!(v.refresh.phase, Phase::OutcomeUnknown { .. }));
    assert_eq!(v.refresh.last_error, "no answer");
}

#[test]
fn only_a_bad_store_that_cannot_serve_the_call_is_read_again() {
    let mut v = codex(NOW + 120_000);
    assert!(answers_from_snapshot(&v, DEFAULT_PROVIDER, 60, NOW));
    v.health = StoreHealth::Corrupt;
    // The token kept from the last good read still serves: no I/O.
    assert!(answers_from_snapshot(&v, DEFAULT_PROVIDER, 60, NOW));
    assert!(answers_from_snapshot(&v, "openai", 0, NOW));
    // Too short, or a provider the bad read did not have: read again.
    assert!(!answers_from_snapshot(&v, DEFAULT_PROVIDER, 600, NOW));
    assert!(!answers_from_snapshot(&v, "google", 0, NOW));
    v.health = StoreHealth::Unreadable;
    assert!(!answers_from_snapshot(&v, DEFAULT_PROVIDER, 600, NOW));
    // Missing is not "bad": a missing file is what there is.
    v.health = StoreHealth::Missing;
    assert!(answers_from_snapshot(&v, "google", 0, NOW));
}

/// GetToken on a store last read as corrupt reads it again before it
/// answers, so a repair the watcher has not reported yet (there is no
/// watcher here) is served at once.
#[tokio::test]
async fn get_token_reads_a_corrupt_store_again_before_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, b"{\"openai-codex\": ").unwrap();
    let issuer = Issuer::new("http://127.0.0.1:9").unwrap();
    let inflight = inflight::InFlight::new(dir.path(), &crate::paths::StoreId::named("test"));
    let broker = Broker::with_parts(
        CredentialStore::file(&auth),
        std::sync::Arc::new(issuer),
        DEFAULT_LEAD_MS,
        inflight,
        Clock::system(),
        Duties::default(),
    );
    broker.reload().await;
    assert_eq!(broker.view().health, StoreHealth::Corrupt);
    let e = broker.get_token(DEFAULT_PROVIDER, 60).await.unwrap_err();
    assert!(matches!(e, TokenError::StoreCorrupt { .. }), "{e:?}");

    let expires = clock::system_now_ms() + 3_600_000;
    std::fs::write(
        &auth,
        format!(
            r#"{{"openai-codex":{{"type":"oauth","access":"a.b.c","refresh":"r","expires":{expires}}}}}"#
        ),
    )
    .unwrap();
    let grant = broker.get_token(DEFAULT_PROVIDER, 60).await.unwrap();
    assert_eq!(grant.access.expose(), "a.b.c");
    assert_eq!(broker.view().health, StoreHealth::Ok);
}
