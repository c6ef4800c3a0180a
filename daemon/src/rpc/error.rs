//! Domain errors to gRPC statuses.
//!
//! The code says what the client should do (UNAUTHENTICATED: log in again;
//! UNAVAILABLE: retry; FAILED_PRECONDITION: fix the state first), the
//! message says it to a person, and an ErrorInfo detail carries a stable
//! machine-readable reason. No message ever contains a token.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::broker::TokenError;

pub use piauth_proto::v1::ErrorReason as Reason;

/// A status with an ErrorInfo detail in domain `piauth.v1`.
pub fn status(code: Code, reason: Reason, message: impl Into<String>) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(
            reason.as_str_name(),
            piauth_proto::ERROR_DOMAIN,
            std::collections::HashMap::new(),
        ),
    )
}

impl From<TokenError> for Status {
    fn from(e: TokenError) -> Status {
        let (code, reason) = match &e {
            TokenError::NotLoggedIn { .. } => (Code::Unauthenticated, Reason::NotLoggedIn),
            TokenError::NeedsLogin { .. } => (Code::Unauthenticated, Reason::NeedsLogin),
            TokenError::Unavailable { .. } => (Code::Unavailable, Reason::UpstreamUnavailable),
            TokenError::StoreCorrupt { .. } => (Code::FailedPrecondition, Reason::StoreCorrupt),
            TokenError::StoreUnavailable { .. } => (Code::Unavailable, Reason::StoreUnavailable),
            TokenError::Expiring { .. } => (Code::FailedPrecondition, Reason::TokenExpiring),
            TokenError::Unusable { .. } => (Code::FailedPrecondition, Reason::NotOauth),
            TokenError::AllLimited { resets_at, .. } => {
                let meta: std::collections::HashMap<String, String> = resets_at
                    .map(|r| ("resets_at".to_owned(), r.to_string()))
                    .into_iter()
                    .collect();
                return Status::with_error_details(
                    Code::ResourceExhausted,
                    e.to_string(),
                    ErrorDetails::with_error_info(
                        Reason::UsageLimit.as_str_name(),
                        piauth_proto::ERROR_DOMAIN,
                        meta,
                    ),
                );
            }
        };
        status(code, reason, e.to_string())
    }
}

/// Validates a session id from a request: printable ASCII, at most 128
/// bytes (pi's are UUIDs); empty means none.
pub fn session_arg(session: &str) -> Result<&str, Status> {
    let ok = session.len() <= 128 && session.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(status(
            Code::InvalidArgument,
            Reason::InvalidArgument,
            "session_id must be printable ASCII of at most 128 bytes (pi's session id)",
        ));
    }
    Ok(session)
}

/// Validates a provider id from a request; empty means the default.
pub fn provider_arg(provider: &str) -> Result<&str, Status> {
    if provider.is_empty() {
        return Ok(piauth_proto::DEFAULT_PROVIDER);
    }
    let ok = provider.len() <= 64
        && provider
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(provider)
    } else {
        Err(status(
            Code::InvalidArgument,
            Reason::InvalidArgument,
            "provider must be 1-64 characters of letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Refuses providers other than the one piauthd manages, for operations
/// only it supports (`what` reads "piauthd refreshes", ...).
pub fn only_default(provider: &str, what: &str) -> Result<(), Status> {
    if provider == piauth_proto::DEFAULT_PROVIDER {
        return Ok(());
    }
    Err(status(
        Code::InvalidArgument,
        Reason::UnsupportedProvider,
        format!(
            "{what} {} only; pi handles {provider} itself",
            piauth_proto::DEFAULT_PROVIDER
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_code_and_reason() {
        let st: Status = TokenError::NotLoggedIn {
            provider: "openai-codex".into(),
        }
        .into();
        assert_eq!(st.code(), Code::Unauthenticated);
        assert!(st.message().contains("pi-authctl login"));
        let info = st.get_details_error_info().unwrap();
        assert_eq!(info.reason, "ERROR_REASON_NOT_LOGGED_IN");
        assert_eq!(info.domain, "piauth.v1");
    }

    #[test]
    fn provider_argument_is_validated() {
        assert_eq!(provider_arg("").unwrap(), "openai-codex");
        assert_eq!(provider_arg("anthropic").unwrap(), "anthropic");
        assert!(provider_arg("../../etc").is_err());
        assert!(provider_arg(&"x".repeat(65)).is_err());
    }
}
