//! The issuer's token responses and errors, as pure functions.
//!
//! Every field of a refresh response is optional except `access_token`;
//! missing ones keep their old values (docs/PROTOCOL.md §1). Errors are sorted
//! into terminal (log in again) and transient (back off and retry) by the
//! rules of docs/PROTOCOL.md §1, so the broker never guesses.

use serde::Deserialize;

use crate::wire::{Loose, Number};

use crate::secret::Secret;

/// A successful token response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: Secret<String>,
    pub refresh_token: Option<Secret<String>>,
    pub id_token: Option<Secret<String>>,
    /// Seconds until `access_token` expires.
    pub expires_in: Option<i64>,
}

/// Why a token response body is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the issuer's answer is not a JSON object")]
    NotJson,
    #[error("the issuer's answer has no access_token")]
    NoAccessToken,
    #[error("the issuer's answer has a non-numeric expires_in")]
    BadExpiresIn,
}

/// The longest lifetime believed: ten years.
pub const MAX_EXPIRES_IN_SECS: i64 = 10 * 365 * 86_400;

/// A 2xx token answer on the wire. Only `access_token` is required.
#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<Loose<String>>,
    refresh_token: Option<Loose<String>>,
    id_token: Option<Loose<String>>,
    expires_in: Option<Number>,
}

/// Parses a 2xx token response body.
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, ResponseError> {
    let b: TokenBody = crate::wire::object(body).ok_or(ResponseError::NotJson)?;
    let secret = |v: Option<Loose<String>>| v.and_then(Loose::text).map(Secret::new);
    let access_token = secret(b.access_token).ok_or(ResponseError::NoAccessToken)?;
    // Clamped to ten years: a wild value must not overflow time arithmetic,
    // and must not make a successful (token-rotating) answer unusable.
    let expires_in = match b.expires_in {
        None => None,
        Some(n) => Some(
            n.whole()
                .ok_or(ResponseError::BadExpiresIn)?
                .clamp(0, MAX_EXPIRES_IN_SECS),
        ),
    };
    Ok(TokenResponse {
        access_token,
        refresh_token: secret(b.refresh_token),
        id_token: secret(b.id_token),
        expires_in,
    })
}

/// How a failed token request should be treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The refresh token is dead: the user must log in again.
    Terminal { code: String, message: String },
    /// Worth retrying later with backoff.
    Transient {
        status: u16,
        message: String,
        /// The server's `retry-after`, in milliseconds.
        retry_after_ms: Option<u64>,
    },
}

/// An error answer on the wire, in any of its shapes:
/// `{"error": "...", "error_description": "..."}`,
/// `{"error": {"code", "message", "type"}}`, or a top-level `code`.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<Loose<ErrorMember>>,
    error_description: Option<Loose<String>>,
    code: Option<Loose<String>>,
    message: Option<Loose<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorMember {
    Code(String),
    Object {
        code: Option<Loose<String>>,
        message: Option<Loose<String>>,
    },
}

/// The error code and message of an error body (see [`ErrorBody`]).
pub fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let Some(b) = crate::wire::object::<ErrorBody>(body) else {
        return (None, None);
    };
    let s = |v: Option<Loose<String>>| v.and_then(Loose::fit);
    match b.error.and_then(Loose::fit) {
        Some(ErrorMember::Code(code)) => (Some(code), s(b.error_description)),
        Some(ErrorMember::Object { code, message }) => (s(code).or(s(b.code)), s(message)),
        None => (s(b.code), s(b.message)),
    }
}

const TERMINAL_CODES: [&str; 3] = [
    "refresh_token_expired",
    "refresh_token_reused",
    "refresh_token_invalidated",
];

/// Classifies a non-2xx answer to a refresh (docs/PROTOCOL.md §1): any 401, a
/// terminal code at any status, or a 400 `invalid_grant` is terminal; the
/// rest is transient.
pub fn classify(status: u16, body: &[u8], retry_after_ms: Option<u64>) -> Failure {
    let (code, message) = error_fields(body);
    let code_str = code.as_deref().unwrap_or("");
    let message = message
        .map(|m| sanitize(&m))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let terminal = status == 401
        || TERMINAL_CODES.contains(&code_str)
        || (status == 400 && code_str == "invalid_grant");
    if terminal {
        Failure::Terminal {
            code: if code_str.is_empty() {
                format!("http_{status}")
            } else {
                sanitize(code_str)
            },
            message,
        }
    } else {
        Failure::Transient {
            status,
            message: if code_str.is_empty() {
                message
            } else {
                format!("{}: {message}", sanitize(code_str))
            },
            retry_after_ms,
        }
    }
}

/// Upstream text is shown to people: keep it short and printable.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// Parses `retry-after` (seconds) or `retry-after-ms`.
pub fn retry_after_ms(retry_after: Option<&str>, retry_after_ms: Option<&str>) -> Option<u64> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then_some(ms as u64);
    }
    retry_after
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1000.0) as u64)
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
