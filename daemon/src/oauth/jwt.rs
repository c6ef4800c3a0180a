//! Reads the claims of an access token without checking its signature.
//!
//! The daemon never decides trust from these claims: the issuer and the Codex
//! backend do. It only needs the account id, plan, e-mail and expiry to label
//! the credential and to schedule refreshes, so a lenient decoder is right
//! here (docs/PROTOCOL.md §1: padding optional, standard base64 accepted).

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use crate::wire::{Loose, Number};

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

/// A token's payload, as far as piauthd reads it. Every field is
/// [`Loose`]: a claim of an unexpected shape is ignored, not fatal.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "https://api.openai.com/auth")]
    auth: Option<Loose<AuthClaim>>,
    #[serde(rename = "https://api.openai.com/profile")]
    profile: Option<Loose<ProfileClaim>>,
    email: Option<Loose<String>>,
    exp: Option<Number>,
    iat: Option<Number>,
}

#[derive(Deserialize)]
struct AuthClaim {
    chatgpt_account_id: Option<Loose<String>>,
    chatgpt_plan_type: Option<Loose<String>>,
}

#[derive(Deserialize)]
struct ProfileClaim {
    email: Option<Loose<String>>,
}

/// Seconds since the epoch, up to year 5138; anything else is ignored.
fn epoch_secs(n: Option<Number>) -> Option<i64> {
    n.and_then(|n| n.whole())
        .filter(|s| (0..=100_000_000_000).contains(s))
}

/// Reads the claims of a JWT access token. The signature is not checked.
pub fn read_claims(token: &str) -> Result<Claims, ClaimsError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimsError::NotAJwt);
    };
    let bytes = decode_lenient(payload).ok_or(ClaimsError::BadBase64)?;
    let p: Payload = crate::wire::object(&bytes).ok_or(ClaimsError::BadJson)?;
    let auth = p.auth.and_then(Loose::fit);
    let text = |v: Option<Loose<String>>| v.and_then(Loose::text);
    let profile_email = p.profile.and_then(Loose::fit).and_then(|c| text(c.email));
    let (account_id, plan) = match auth {
        Some(a) => (text(a.chatgpt_account_id), text(a.chatgpt_plan_type)),
        None => (None, None),
    };
    Ok(Claims {
        account_id,
        plan,
        email: text(p.email).or(profile_email),
        exp_secs: epoch_secs(p.exp),
        iat_secs: epoch_secs(p.iat),
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
        let not_json = format!("a.{}.c", URL_SAFE_NO_PAD.encode("{\"exp\":"));
        assert_eq!(read_claims(&not_json), Err(ClaimsError::BadJson));
    }

    #[test]
    fn claims_of_an_unexpected_shape_are_ignored() {
        let p = r#"{"email":5,"exp":"1767225600","iat":1.5e9,"https://api.openai.com/auth":"x","https://api.openai.com/profile":{"email":"p@q.r"}}"#;
        let c = read_claims(&jwt_with(p, &URL_SAFE_NO_PAD)).unwrap();
        assert_eq!(c.email.as_deref(), Some("p@q.r"));
        assert_eq!(c.account_id, None);
        assert_eq!(c.exp_secs, Some(1_767_225_600));
        assert_eq!(c.iat_secs, Some(1_500_000_000));
        let p = r#"{"exp":-5,"iat":1e30,"https://api.openai.com/auth":{"chatgpt_account_id":7,"chatgpt_plan_type":"pro"}}"#;
        let c = read_claims(&jwt_with(p, &URL_SAFE_NO_PAD)).unwrap();
        assert_eq!((c.exp_secs, c.iat_secs), (None, None));
        assert_eq!((c.account_id, c.plan.as_deref()), (None, Some("pro")));
    }

    #[test]
    fn errors_never_contain_the_token() {
        let err = read_claims("secret-token-text").unwrap_err();
        assert!(!err.to_string().contains("secret-token-text"));
    }
}
