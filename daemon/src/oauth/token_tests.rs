use super::*;

#[test]
fn parses_a_full_response() {
    let r = parse_token_response(
        br#"{"access_token":"a","refresh_token":"r","id_token":"i","expires_in":3600,"token_type":"Bearer"}"#,
    )
    .unwrap();
    assert_eq!(r.access_token.expose(), "a");
    assert_eq!(r.refresh_token.unwrap().expose(), "r");
    assert_eq!(r.expires_in, Some(3600));
}

#[test]
fn only_access_token_is_required() {
    let r = parse_token_response(br#"{"access_token":"a"}"#).unwrap();
    assert_eq!(
        (r.refresh_token, r.id_token, r.expires_in),
        (None, None, None)
    );
    assert_eq!(
        parse_token_response(br#"{"refresh_token":"r"}"#),
        Err(ResponseError::NoAccessToken)
    );
    assert_eq!(parse_token_response(b"<html>"), Err(ResponseError::NotJson));
    assert_eq!(
        parse_token_response(br#"{"access_token":"a","expires_in":"soon"}"#),
        Err(ResponseError::BadExpiresIn)
    );
    let r = parse_token_response(br#"{"access_token":"a","expires_in":1e300}"#).unwrap();
    assert_eq!(r.expires_in, Some(MAX_EXPIRES_IN_SECS));
    let r = parse_token_response(br#"{"access_token":"a","expires_in":"60"}"#).unwrap();
    assert_eq!(r.expires_in, Some(60));
}

#[test]
fn the_real_reuse_answer_is_terminal() {
    let body = br#"{"error":{"message":"Your refresh token has already been used to generate a new access token. Please try signing in again.","type":"invalid_request_error","param":null,"code":"refresh_token_reused"}}"#;
    for status in [400, 401] {
        let f = classify(status, body, None);
        let Failure::Terminal { code, message } = f else {
            panic!("{f:?}")
        };
        assert_eq!(code, "refresh_token_reused");
        assert!(message.starts_with("Your refresh token has already been used"));
    }
}

#[test]
fn terminal_rules() {
    assert!(matches!(classify(401, b"", None), Failure::Terminal { .. }));
    assert!(matches!(
        classify(
            400,
            br#"{"error":"invalid_grant","error_description":"x"}"#,
            None
        ),
        Failure::Terminal { .. }
    ));
    assert!(matches!(
        classify(403, br#"{"code":"refresh_token_expired"}"#, None),
        Failure::Terminal { .. }
    ));
    assert!(matches!(
        classify(
            500,
            br#"{"error":{"code":"refresh_token_invalidated"}}"#,
            None
        ),
        Failure::Terminal { .. }
    ));
}

#[test]
fn transient_rules() {
    let f = classify(503, b"oops", Some(2000));
    assert_eq!(
        f,
        Failure::Transient {
            status: 503,
            message: "HTTP 503".into(),
            retry_after_ms: Some(2000)
        }
    );
    assert!(matches!(
        classify(429, br#"{"error":"rate_limited"}"#, None),
        Failure::Transient { .. }
    ));
    // invalid_grant is terminal only on a 400.
    assert!(matches!(
        classify(502, br#"{"error":"invalid_grant"}"#, None),
        Failure::Transient { .. }
    ));
    assert!(matches!(
        classify(400, br#"{"error":"invalid_request"}"#, None),
        Failure::Transient { .. }
    ));
}

#[test]
fn retry_after_headers() {
    assert_eq!(retry_after_ms(Some("2"), None), Some(2000));
    assert_eq!(retry_after_ms(Some("2"), Some("150")), Some(150));
    assert_eq!(
        retry_after_ms(Some("Wed, 21 Oct 2015 07:28:00 GMT"), None),
        None
    );
    assert_eq!(retry_after_ms(Some("-1"), None), None);
}
