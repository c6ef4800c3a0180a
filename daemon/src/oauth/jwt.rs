//! Reads the claims of an access token without checking its signature.
//!
//! The daemon never decides trust from these claims: the issuer and the Codex
//! backend do. It only needs the account id, plan, e-mail and expiry to label
//! the credential and to schedule refreshes, so a lenient decoder is right
//! here (docs/PROTOCOL.md §1: padding optional, standard base64 accepted).

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

/// The claims piauthd reads from an OpenAI access token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `https://api.openai.com/auth`.`chatgpt_account_id`.
    pub account_id: Option<String>,
    /// `https://api.openai.com/auth`.`chatgpt_plan_type`.
    pub plan: Option<String>,
    /// `email`, or `https://api.openai.com/profile`.`email`.
    pub email: Option<String>,
    /// `exp`, in seconds since the epoch.
    pub exp_secs: Option<i64>,
    /// `iat`, in seconds since the epoch.
    pub iat_secs: Option<i64>,
}

/// Why a token's claims could not be read. Never includes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the token is not a JWT (expected three dot-separated parts)")]
    NotAJwt,
    #[error("the token's payload is not valid base64")]
    BadBase64,
    #[error("the token's payload is not a JSON object")]
    BadJson,
}

const AUTH_CLAIM: &str = "https://api.openai.com/auth";
const PROFILE_CLAIM: &str = "https://api.openai.com/profile";

/// Reads the claims of a JWT access token. The signature is not checked.
pub fn read_claims(token: &str) -> Result<Claims, ClaimsError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimsError::NotAJwt);
    };
    let bytes = decode_lenient(payload).ok_or(ClaimsError::BadBase64)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| ClaimsError::BadJson)?;
    let obj = value.as_object().ok_or(ClaimsError::BadJson)?;

    let auth = obj.get(AUTH_CLAIM);
    let text = |v: Option<&Value>, key: &str| {
        v.and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let email = obj
        .get("email")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| text(obj.get(PROFILE_CLAIM), "email"));
    // Seconds since the epoch, up to year 5138; anything else is ignored.
    let secs = |key: &str| {
        obj.get(key)
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            })
            .filter(|s| (0..=100_000_000_000).contains(s))
    };
    Ok(Claims {
        account_id: text(auth, "chatgpt_account_id"),
        plan: text(auth, "chatgpt_plan_type"),
        email,
        exp_secs: secs("exp"),
        iat_secs: secs("iat"),
    })
}

/// Decodes base64url or standard base64, with or without padding.
fn decode_lenient(input: &str) -> Option<Vec<u8>> {
    const INDIFFERENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);
    const STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
    URL.decode(input).ok().or_else(|| STD.decode(input).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};

    fn jwt_with(payload: &str, engine: &GeneralPurpose) -> String {
        format!("eyJhbGciOiJub25lIn0.{}.sig", engine.encode(payload))
    }

    #[test]
    fn reads_account_plan_email_and_expiry() {
        let p = r#"{"exp":1767225600,"email":"a@b.c","https://api.openai.com/auth":{"chatgpt_account_id":"acc-1","chatgpt_plan_type":"plus"}}"#;
        let c = read_claims(&jwt_with(p, &URL_SAFE_NO_PAD)).unwrap();
        assert_eq!(c.account_id.as_deref(), Some("acc-1"));
        assert_eq!(c.plan.as_deref(), Some("plus"));
        assert_eq!(c.email.as_deref(), Some("a@b.c"));
        assert_eq!(c.exp_secs, Some(1_767_225_600));
    }

    #[test]
    fn email_may_sit_under_the_profile_claim() {
        let p = r#"{"https://api.openai.com/profile":{"email":"p@q.r"}}"#;
        let c = read_claims(&jwt_with(p, &URL_SAFE_NO_PAD)).unwrap();
        assert_eq!(c.email.as_deref(), Some("p@q.r"));
        assert_eq!(c.account_id, None);
    }

    #[test]
    fn decodes_padded_and_standard_base64() {
        // '?' and '>' produce '/' and '+' in standard base64, '_' and '-' in url-safe.
        let p = r#"{"email":"??>>@x.y","exp":5}"#;
        for engine in [&STANDARD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let c = read_claims(&jwt_with(p, engine)).unwrap();
            assert_eq!(c.email.as_deref(), Some("??>>@x.y"));
        }
    }

    #[test]
    fn rejects_what_is_not_a_jwt() {
        assert_eq!(read_claims("abc"), Err(ClaimsError::NotAJwt));
        assert_eq!(read_claims("a.b.c.d"), Err(ClaimsError::NotAJwt));
        assert_eq!(read_claims("a.!!!.c"), Err(ClaimsError::BadBase64));
        let not_json = format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1,2]"));
        assert_eq!(read_claims(&not_json), Err(ClaimsError::BadJson));
    }

    #[test]
    fn errors_never_contain_the_token() {
        let err = read_claims("secret-token-text").unwrap_err();
        assert!(!err.to_string().contains("secret-token-text"));
    }
}
