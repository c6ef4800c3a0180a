//! HTTP to the OpenAI issuer.
//!
//! The one rule that shapes this module: a refresh request that may have
//! reached the issuer is never re-sent with the same refresh token, because
//! the issuer may already have spent it, and a second use revokes the whole
//! login. So failures are reported by *when* they happened: before the
//! request left ([`RefreshError::NotSent`], safe to retry), after the issuer
//! answered ([`RefreshError::Rejected`]), or somewhere in between
//! ([`RefreshError::OutcomeUnknown`], never retried automatically).

use std::time::Duration;

use crate::oauth::{self, Failure, TokenResponse};
use crate::secret::Secret;

/// The OAuth client id of the Codex CLI and pi (PROTOCOL.md §1).
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// How long to wait for a TCP/TLS connection. Short: nothing was sent yet,
/// so a retry is safe and cheap.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a sent refresh may take. Generous: abandoning a refresh the
/// issuer may have completed loses the rotated token.
pub const REFRESH_BOUND: Duration = Duration::from_secs(60);

/// Why a refresh did not produce tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The issuer answered with an error.
    #[error("the issuer refused the refresh: {}", describe(.0))]
    Rejected(Failure),
    /// The request never left this machine; retrying is safe.
    #[error("could not reach the issuer: {message}")]
    NotSent { message: String },
    /// The request was sent but no usable answer came back. The issuer may
    /// have rotated the token; it must not be re-sent.
    #[error("the refresh's outcome is unknown ({message})")]
    OutcomeUnknown { message: String },
}

fn describe(f: &Failure) -> String {
    match f {
        Failure::Terminal { code, message } => format!("{code}: {message}"),
        Failure::Transient {
            status, message, ..
        } => format!("HTTP {status}: {message}"),
    }
}

/// A client for the issuer's token endpoint.
#[derive(Debug, Clone)]
pub struct Issuer {
    http: reqwest::Client,
    token_url: String,
}

impl Issuer {
    /// `base` is the issuer URL, e.g. `https://auth.openai.com`.
    pub fn new(base: &str) -> Result<Issuer, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REFRESH_BOUND)
            .user_agent(concat!("piauthd/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Issuer {
            http,
            token_url: format!("{}/oauth/token", base.trim_end_matches('/')),
        })
    }

    /// Exchanges a refresh token for new tokens (form-encoded, as pi does).
    pub async fn refresh(&self, refresh: &Secret<String>) -> Result<TokenResponse, RefreshError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose().as_str()),
            ("client_id", CLIENT_ID),
        ];
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(sent_error)?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = oauth::retry_after_ms(
            header("retry-after").as_deref(),
            header("retry-after-ms").as_deref(),
        );
        let body = response.bytes().await.map_err(sent_error)?;
        if (200..300).contains(&status) {
            oauth::parse_token_response(&body).map_err(|e| RefreshError::OutcomeUnknown {
                message: e.to_string(),
            })
        } else {
            Err(RefreshError::Rejected(oauth::classify(
                status,
                &body,
                retry_after,
            )))
        }
    }
}

/// Sorts a transport error by whether the request may have been sent.
fn sent_error(e: reqwest::Error) -> RefreshError {
    let (connect, timeout) = (e.is_connect(), e.is_timeout());
    // Strip the URL (not secret, but noise) and keep the causes, which say
    // what actually happened ("connection refused", "connection reset").
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    if connect {
        RefreshError::NotSent { message }
    } else if timeout {
        RefreshError::OutcomeUnknown {
            message: format!("no answer within {}s", REFRESH_BOUND.as_secs()),
        }
    } else {
        RefreshError::OutcomeUnknown { message }
    }
}
