//! Minting the mock's JWTs, signed HS256 with a fixed test key.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

/// The key the mock signs with. Public on purpose: it is a test key.
pub const TEST_SIGNING_KEY: &[u8] = b"piauthd-mock-openai-test-signing-key";

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A short random string, so every token is unique and greppable.
pub fn nonce() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// Signs `claims` with HS256.
///
/// With `atob_safe`, the payload segment is standard base64 (`+`, `/`)
/// rather than base64url: pi 0.73.1 decodes the payload with JavaScript's
/// `atob`, which rejects `-` and `_`, so a spec-exact JWT makes pi's refresh
/// fail whenever those characters occur. piauthd accepts both alphabets.
///
/// pi 1.6.0 still decodes with a bare `atob(payload)`, both for the
/// `chatgpt-account-id` of every Codex request and in its OAuth code.
/// `atob` accepts a missing padding, so a base64url segment without `-` or
/// `_` decodes. In base64 of ASCII text those two characters come only from
/// `>`, `?` or `~` in certain positions, and the mock's claims hold none, so
/// its default (spec-exact) tokens decode in pi 1.6.0 as they are (checked
/// with Node 22 against 200 minted tokens; the test below pins it). Claims
/// with such characters would need `atob_safe` there too.
fn sign(claims: &serde_json::Value, atob_safe: bool) -> String {
    let key = EncodingKey::from_secret(TEST_SIGNING_KEY);
    if !atob_safe {
        return encode(&Header::default(), claims, &key)
            .expect("HS256 signing with a byte key cannot fail");
    }
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = STANDARD_NO_PAD.encode(claims.to_string());
    let message = format!("{header}.{payload}");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
        .expect("HS256 signing with a byte key cannot fail");
    format!("{message}.{sig}")
}

/// An access token with the claims of docs/PROTOCOL.md §1.
pub fn access_token(
    account: &str,
    email: &str,
    plan: &str,
    expires_in: u64,
    serial: u64,
    atob_safe: bool,
) -> String {
    let iat = now_secs();
    sign(
        &json!({
            "iss": "https://auth.openai.com",
            "aud": ["https://api.openai.com/v1"],
            "sub": format!("user-{account}"),
            "iat": iat,
            "exp": iat + expires_in,
            "jti": format!("at-{serial}-{}", nonce()),
            "https://api.openai.com/auth": {
                "chatgpt_account_id": account,
                "chatgpt_plan_type": plan,
            },
            "https://api.openai.com/profile": { "email": email },
        }),
        atob_safe,
    )
}

/// An id token (e-mail at top level, as the real one has).
pub fn id_token(account: &str, email: &str, plan: &str, serial: u64, atob_safe: bool) -> String {
    let iat = now_secs();
    sign(
        &json!({
            "iss": "https://auth.openai.com",
            "aud": [super::CLIENT_ID],
            "sub": format!("user-{account}"),
            "iat": iat,
            "exp": iat + 3600,
            "email": email,
            "jti": format!("id-{serial}-{}", nonce()),
            "https://api.openai.com/auth": {
                "chatgpt_account_id": account,
                "chatgpt_plan_type": plan,
            },
        }),
        atob_safe,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// What pi's `atob(payload)` needs: no `-` or `_`, and standard base64
    /// (padding optional) that decodes to the claims.
    #[test]
    fn default_tokens_decode_with_atob() {
        for serial in 0..200 {
            let account = format!("acc-{serial}");
            for token in [
                access_token(&account, "user@example.com", "plus", 3600, serial, false),
                id_token(&account, "user@example.com", "plus", serial, false),
            ] {
                let payload = token.split('.').nth(1).unwrap();
                assert!(!payload.contains(['-', '_']), "{payload}");
                let claims: serde_json::Value = serde_json::from_slice(
                    &base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(payload)
                        .unwrap(),
                )
                .unwrap();
                assert_eq!(
                    claims["https://api.openai.com/auth"]["chatgpt_account_id"],
                    account.as_str()
                );
            }
        }
    }
}
