//! PKCE, `state`, and the authorize URL (docs/PROTOCOL.md §1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// The scope every login asks for.
pub const SCOPE: &str = "openid profile email offline_access";

/// A PKCE pair: the verifier stays here, the challenge goes to the browser.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: Secret<String>,
    pub challenge: String,
}

impl Pkce {
    /// 32 random bytes, base64url without padding (43 characters).
    pub fn generate() -> Pkce {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Pkce::from_verifier(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The S256 challenge of a given verifier.
    pub fn from_verifier(verifier: String) -> Pkce {
        let challenge = challenge_of(&verifier);
        Pkce {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

/// base64url(SHA-256(verifier)) without padding.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// 16 random bytes, hex: independent of the verifier.
pub fn new_state() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The callback URL sent to the issuer for a listener on `port`. It names
/// `localhost` literally: the issuer's allow-list holds exactly that.
pub fn redirect_uri(port: u16) -> String {
    format!("http://localhost:{port}/auth/callback")
}

/// The one-time local URL the browser opens first, on the callback listener
/// (see `callback::rules`). Also `localhost`, so the cookie it sets is sent
/// back with the issuer's redirect to [`redirect_uri`].
pub fn start_uri(port: u16, nonce: &str) -> String {
    format!("http://localhost:{port}/start/{nonce}")
}

/// The authorize URL, with the query in the order docs/PROTOCOL.md §1 gives.
pub fn authorize_url(
    issuer: &str,
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
    state: &str,
    originator: &str,
) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", SCOPE)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .append_pair("id_token_add_organizations", "true")
        .append_pair("codex_cli_simplified_flow", "true")
        .append_pair("originator", originator)
        .finish();
    format!("{}/oauth/authorize?{query}", issuer.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_and_challenge_have_the_right_shape() {
        let p = Pkce::generate();
        assert_eq!(p.verifier.expose().len(), 43);
        assert!(
            p.verifier
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(p.challenge.len(), 43);
        assert_ne!(Pkce::generate().verifier, p.verifier);
    }

    #[test]
    fn challenge_matches_rfc7636_appendix_b() {
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn state_is_32_hex_characters() {
        let s = new_state();
        assert_eq!(s.len(), 32);
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(s, new_state());
    }

    #[test]
    fn authorize_url_lists_the_query_in_order() {
        let url = authorize_url(
            "https://auth.openai.com/",
            "app_X",
            &redirect_uri(1455),
            "CH",
            "ST",
            "pi",
        );
        assert_eq!(
            url,
            "https://auth.openai.com/oauth/authorize?response_type=code&client_id=app_X\
             &redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback\
             &scope=openid+profile+email+offline_access&code_challenge=CH\
             &code_challenge_method=S256&state=ST&id_token_add_organizations=true\
             &codex_cli_simplified_flow=true&originator=pi"
        );
    }
}
