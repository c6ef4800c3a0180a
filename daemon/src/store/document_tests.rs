use super::*;

const PI_FIXTURE: &str = r#"{
  "anthropic": {
    "type": "oauth",
    "refresh": "sk-ant-ort01-r",
    "access": "sk-ant-oat01-a",
    "expires": 1767225600000
  },
  "openai-codex": {
    "type": "oauth",
    "access": "eyJ.a.b",
    "refresh": "rt_1",
    "expires": 1767225600000,
    "accountId": "acc-1",
    "futureField": {
      "nested": [
        1,
        2.5,
        "x"
      ]
    }
  },
  "openai": {
    "type": "api_key",
    "key": "sk-test"
  },
  "github-copilot": {
    "type": "oauth",
    "refresh": "ghu_r",
    "access": "tid=a",
    "expires": 1767225600000,
    "enterpriseUrl": "ghe.example.com"
  }
}"#;

#[test]
fn round_trips_pi_output_byte_for_byte() {
    let doc = Document::parse(PI_FIXTURE.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(doc.to_bytes()).unwrap(), PI_FIXTURE);
}

#[test]
fn strips_a_byte_order_mark() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(PI_FIXTURE.as_bytes());
    let doc = Document::parse(&bytes).unwrap();
    assert_eq!(doc.to_bytes(), PI_FIXTURE.as_bytes());
}

#[test]
fn reads_each_kind_of_entry() {
    let doc = Document::parse(PI_FIXTURE.as_bytes()).unwrap();
    let Some(Credential::OAuth(c)) = doc.credential("openai-codex") else {
        panic!("expected oauth");
    };
    assert_eq!(c.access.expose(), "eyJ.a.b");
    assert_eq!(c.refresh.expose(), "rt_1");
    assert_eq!(c.expires_ms, 1_767_225_600_000);
    assert_eq!(c.account_id.as_deref(), Some("acc-1"));
    assert!(matches!(
        doc.credential("openai"),
        Some(Credential::ApiKey(_))
    ));
    assert_eq!(doc.credential("nope"), None);
    let providers: Vec<_> = doc.providers().collect();
    assert_eq!(
        providers,
        ["anthropic", "openai-codex", "openai", "github-copilot"]
    );
}

#[test]
fn set_oauth_changes_only_owned_fields_of_one_provider() {
    let mut doc = Document::parse(PI_FIXTURE.as_bytes()).unwrap();
    doc.set_oauth(
        "openai-codex",
        &OAuthCredential {
            access: Secret::from("eyJ.new.tok"),
            refresh: Secret::from("rt_2"),
            expires_ms: 1_800_000_000_000,
            account_id: Some("acc-1".into()),
        },
    );
    let expected = PI_FIXTURE
        .replace("\"eyJ.a.b\"", "\"eyJ.new.tok\"")
        .replace("\"rt_1\"", "\"rt_2\"")
        .replacen(
            "\"expires\": 1767225600000,\n    \"accountId\"",
            "\"expires\": 1800000000000,\n    \"accountId\"",
            1,
        );
    assert_eq!(String::from_utf8(doc.to_bytes()).unwrap(), expected);
}

#[test]
fn set_oauth_creates_a_missing_provider() {
    let mut doc = Document::parse(b"{}").unwrap();
    doc.set_oauth(
        "openai-codex",
        &OAuthCredential {
            access: Secret::from("a"),
            refresh: Secret::from("r"),
            expires_ms: 5,
            account_id: Some("id".into()),
        },
    );
    assert_eq!(
        String::from_utf8(doc.to_bytes()).unwrap(),
        "{\n  \"openai-codex\": {\n    \"type\": \"oauth\",\n    \"access\": \"a\",\n    \"refresh\": \"r\",\n    \"expires\": 5,\n    \"accountId\": \"id\"\n  }\n}"
    );
}

#[test]
fn remove_keeps_the_others_in_order() {
    let mut doc = Document::parse(PI_FIXTURE.as_bytes()).unwrap();
    assert!(doc.remove("openai-codex"));
    assert!(!doc.remove("openai-codex"));
    let providers: Vec<_> = doc.providers().collect();
    assert_eq!(providers, ["anthropic", "openai", "github-copilot"]);
}

#[test]
fn rejects_what_is_not_a_document() {
    assert_eq!(Document::parse(b""), Err(ParseError::Empty));
    assert_eq!(Document::parse(b" \n"), Err(ParseError::Empty));
    assert_eq!(Document::parse(b"[1]"), Err(ParseError::NotAnObject));
    assert!(matches!(
        Document::parse(b"{\"openai-codex\": {\"type\": \"oa"),
        Err(ParseError::Syntax { line: 1, .. })
    ));
}

#[test]
fn parse_errors_never_quote_the_file() {
    let err = Document::parse(b"{\"openai-codex\": {\"access\": \"secret-tok\" oops").unwrap_err();
    assert!(!err.to_string().contains("secret-tok"));
}

#[test]
fn unusable_entries_say_why() {
    let doc = Document::parse(br#"{"a":{"type":"oauth","access":"x"},"b":3,"c":{"type":"weird"},"d":{"type":"oauth","access":"x","refresh":"y","expires":1.7e12}}"#).unwrap();
    assert!(matches!(
        doc.credential("a"),
        Some(Credential::Unusable { .. })
    ));
    assert!(matches!(
        doc.credential("b"),
        Some(Credential::Unusable { .. })
    ));
    let Some(Credential::Unusable { reason }) = doc.credential("c") else {
        panic!()
    };
    assert!(reason.contains("weird"));
    let Some(Credential::OAuth(d)) = doc.credential("d") else {
        panic!()
    };
    assert_eq!(d.expires_ms, 1_700_000_000_000);
    let wild = Document::parse(
        br#"{"e":{"type":"oauth","access":"x","refresh":"y","expires":-9223372036854775808}}"#,
    )
    .unwrap();
    assert!(matches!(
        wild.credential("e"),
        Some(Credential::Unusable { .. })
    ));
}

#[test]
fn debug_lists_providers_but_no_tokens() {
    let doc = Document::parse(PI_FIXTURE.as_bytes()).unwrap();
    let dbg = format!("{doc:?} {:?}", doc.credential("openai-codex"));
    assert!(dbg.contains("openai-codex"));
    assert!(!dbg.contains("rt_1") && !dbg.contains("eyJ.a.b"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic the parser, and never produce a token in
    /// an error message.
    #[test]
    fn arbitrary_bytes_are_refused_or_parsed(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        if let Err(e) = Document::parse(&bytes) {
            let _ = e.to_string();
        }
    }

    /// Any document that parses survives a write and a re-read unchanged.
    #[test]
    fn parsed_documents_round_trip(
        providers in proptest::collection::vec(("[a-z-]{1,12}", "[ -~]{0,20}", 0i64..4_000_000_000_000), 0..5),
    ) {
        let mut json = serde_json::Map::new();
        for (name, token, expires) in &providers {
            json.insert(name.clone(), serde_json::json!({"type": "oauth", "access": token, "refresh": token, "expires": expires, "extra": [1, {"x": null}]}));
        }
        let text = serde_json::to_string_pretty(&json).unwrap();
        let doc = Document::parse(text.as_bytes()).unwrap();
        let again = Document::parse(&doc.to_bytes()).unwrap();
        proptest::prop_assert_eq!(&again, &doc);
        proptest::prop_assert_eq!(doc.to_bytes(), text.into_bytes());
    }
}
