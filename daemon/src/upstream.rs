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

use url::Url;

use crate::oauth::{self, Failure, TokenResponse};
use crate::secret::Secret;
use crate::wire::{self, Loose, Number};

/// The OAuth client id of the Codex CLI and pi (docs/PROTOCOL.md §1).
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

/// Why an HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up the HTTP client: {}", crate::causes::line(.0))]
    Http(reqwest::Error),
    /// A base URL that cannot take a path: not one that
    /// [`crate::base_url::as_base`] makes.
    #[error("{base} cannot take the path {path}: {cause}")]
    Endpoint {
        base: String,
        path: &'static str,
        cause: url::ParseError,
    },
    #[error("{base:?} is not a URL: {cause}")]
    NotAUrl {
        base: String,
        cause: url::ParseError,
    },
}

/// `base` (a path ending in `/`) with the relative `path` below it.
pub fn endpoint(base: &Url, path: &'static str) -> Result<Url, ClientError> {
    base.join(path).map_err(|source| ClientError::Endpoint {
        base: base.to_string(),
        path,
        cause: source,
    })
}

/// A client for the issuer's token endpoint.
#[derive(Debug, Clone)]
pub struct Issuer {
    http: reqwest::Client,
    base: Url,
    token_url: Url,
    user_code_url: Url,
    device_token_url: Url,
}

impl Issuer {
    /// `base` is the issuer URL as text, e.g. `https://auth.openai.com`,
    /// for callers that hold no checked [`Url`] (tests); the daemon uses
    /// [`Issuer::at`].
    #[cfg(test)]
    pub fn new(base: &str) -> Result<Issuer, ClientError> {
        let url = Url::parse(base).map_err(|source| ClientError::NotAUrl {
            base: base.to_owned(),
            cause: source,
        })?;
        Issuer::at(crate::base_url::as_base(url))
    }

    /// `base` is the issuer's base URL as [`crate::base_url::as_base`]
    /// returns it (its path ends in `/`, so the endpoints go below it).
    pub fn at(base: Url) -> Result<Issuer, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REFRESH_BOUND)
            // A redirected POST would re-send the refresh token (or code)
            // elsewhere, or twice. The issuer never redirects this endpoint.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("piauthd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Http)?;
        Ok(Issuer {
            http,
            token_url: endpoint(&base, "oauth/token")?,
            user_code_url: endpoint(&base, "api/accounts/deviceauth/usercode")?,
            device_token_url: endpoint(&base, "api/accounts/deviceauth/token")?,
            base,
        })
    }

    /// POSTs a form to the token endpoint; returns the status, the
    /// `retry-after` (ms) and the whole body.
    async fn post_form(
        &self,
        form: &[(&str, &str)],
    ) -> Result<(u16, Option<u64>, Vec<u8>), reqwest::Error> {
        let response = self
            .http
            .post(self.token_url.clone())
            .form(form)
            .send()
            .await?;
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
        Ok((status, retry_after, response.bytes().await?.to_vec()))
    }

    /// Exchanges a refresh token for new tokens (form-encoded, as pi does).
    pub async fn refresh(&self, refresh: &Secret<String>) -> Result<TokenResponse, RefreshError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose().as_str()),
            ("client_id", CLIENT_ID),
        ];
        let (status, retry_after, body) = self.post_form(&form).await.map_err(sent_error)?;
        if (200..300).contains(&status) {
            oauth::parse_token_response(&body).map_err(|e| RefreshError::OutcomeUnknown {
                message: e.to_string(),
            })
        } else if outcome_unknown(status, &body) {
            Err(RefreshError::OutcomeUnknown {
                message: format!(
                    "HTTP {status} from a gateway, not the issuer's own answer; \
                     the issuer may have rotated the token behind it"
                ),
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

/// Whether an error answer to a refresh leaves its outcome unknown. A
/// gateway's answer (502, 504, and the 520-527 of a CDN in front of the
/// issuer), or any 5xx that is not the issuer's own JSON error, may come
/// after the issuer rotated the token: the request reached something, and
/// nothing proves the issuer refused it. Only the issuer's own JSON error
/// (with 5xx, 429 or 4xx) proves it did not act.
pub fn outcome_unknown(status: u16, body: &[u8]) -> bool {
    if matches!(status, 502 | 504 | 520..=527) {
        return true;
    }
    status >= 500 && !is_issuer_error(body)
}

/// The issuer's errors are JSON objects with an `error` member.
fn is_issuer_error(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Head {
        error: Option<serde::de::IgnoredAny>,
    }
    wire::object::<Head>(body).is_some_and(|h| h.error.is_some())
}

/// The answer to `deviceauth/usercode`.
#[derive(serde::Deserialize)]
struct UserCodeAnswer {
    device_auth_id: Option<Loose<String>>,
    user_code: Option<Loose<String>>,
    interval: Option<Number>,
}

/// The answer to `deviceauth/token` once the user approved.
#[derive(serde::Deserialize)]
struct ApprovedAnswer {
    authorization_code: Option<Loose<String>>,
    code_verifier: Option<Loose<String>>,
}

/// Sorts a transport error by whether the request may have been sent.
fn sent_error(e: reqwest::Error) -> RefreshError {
    let (connect, timeout) = (e.is_connect(), e.is_timeout());
    // Strip the URL (not secret, but noise) and keep the causes, which say
    // what actually happened ("connection refused", "connection reset").
    let message = crate::causes::line(&e.without_url());
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

/// Why a login request to the issuer failed. Never contains a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginHttpError {
    #[error("device-code login is not enabled for this issuer (404)")]
    DeviceLoginDisabled,
    #[error("the issuer refused: {0}")]
    Refused(String),
    #[error("the issuer's answer was unusable: {0}")]
    BadAnswer(String),
    #[error("could not reach the issuer: {0}")]
    Network(String),
}

/// A device code to show the user. `device_auth_id` is what polls for the
/// login's code, so it is a [`Secret`] and never printed; `user_code` is
/// shown to the user anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub device_auth_id: Secret<String>,
    pub user_code: String,
    pub interval_secs: u64,
}

/// One poll of a device login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    Pending,
    SlowDown,
    Approved {
        authorization_code: Secret<String>,
        code_verifier: Secret<String>,
    },
}

impl Issuer {
    /// Exchanges an authorization code (docs/PROTOCOL.md §1, "Code exchange").
    pub async fn exchange_code(
        &self,
        code: &Secret<String>,
        verifier: &Secret<String>,
        redirect_uri: &str,
    ) -> Result<TokenResponse, LoginHttpError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("code", code.expose().as_str()),
            ("code_verifier", verifier.expose().as_str()),
            ("redirect_uri", redirect_uri),
        ];
        let (status, _, body) = self.post_form(&form).await.map_err(network)?;
        if !(200..300).contains(&status) {
            return Err(refused(status, &body));
        }
        let tokens = oauth::parse_token_response(&body)
            .map_err(|e| LoginHttpError::BadAnswer(e.to_string()))?;
        if tokens.refresh_token.is_none() || tokens.expires_in.is_none() {
            return Err(LoginHttpError::BadAnswer(
                "the answer lacks refresh_token or expires_in".into(),
            ));
        }
        Ok(tokens)
    }

    /// Starts a device login: `POST /api/accounts/deviceauth/usercode`.
    pub async fn device_user_code(&self) -> Result<DeviceCode, LoginHttpError> {
        let response = self
            .http
            .post(self.user_code_url.clone())
            .json(&serde_json::json!({ "client_id": CLIENT_ID }))
            .send()
            .await
            .map_err(network)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(network)?;
        if status == 404 {
            return Err(LoginHttpError::DeviceLoginDisabled);
        }
        if !(200..300).contains(&status) {
            return Err(refused(status, &body));
        }
        let answer: UserCodeAnswer =
            wire::object(&body).ok_or_else(|| LoginHttpError::BadAnswer("not JSON".into()))?;
        let interval = answer
            .interval
            .and_then(|n| n.whole())
            .and_then(|n| u64::try_from(n).ok());
        match (
            answer.device_auth_id.and_then(Loose::text),
            answer.user_code.and_then(Loose::text),
        ) {
            (Some(device_auth_id), Some(user_code)) => Ok(DeviceCode {
                device_auth_id: Secret::new(device_auth_id),
                user_code,
                interval_secs: interval.unwrap_or(5),
            }),
            _ => Err(LoginHttpError::BadAnswer(
                "the answer lacks device_auth_id or user_code".into(),
            )),
        }
    }

    /// Polls a device login: `POST /api/accounts/deviceauth/token`.
    pub async fn device_poll(&self, code: &DeviceCode) -> Result<DevicePoll, LoginHttpError> {
        let response = self
            .http
            .post(self.device_token_url.clone())
            .json(&serde_json::json!({
                "device_auth_id": code.device_auth_id.expose(),
                "user_code": code.user_code,
            }))
            .send()
            .await
            .map_err(network)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(network)?;
        let (error, _) = oauth::error_fields(&body);
        match (status, error.as_deref()) {
            (403 | 404, _) | (_, Some("deviceauth_authorization_pending")) => {
                Ok(DevicePoll::Pending)
            }
            (_, Some("slow_down")) => Ok(DevicePoll::SlowDown),
            (200..=299, _) => {
                let answer: ApprovedAnswer = wire::object(&body)
                    .ok_or_else(|| LoginHttpError::BadAnswer("not JSON".into()))?;
                let text = |v: Option<Loose<String>>| v.and_then(Loose::text).map(Secret::new);
                match (text(answer.authorization_code), text(answer.code_verifier)) {
                    (Some(authorization_code), Some(code_verifier)) => Ok(DevicePoll::Approved {
                        authorization_code,
                        code_verifier,
                    }),
                    _ => Err(LoginHttpError::BadAnswer(
                        "the answer lacks authorization_code or code_verifier".into(),
                    )),
                }
            }
            _ => Err(refused(status, &body)),
        }
    }

    /// The issuer base URL (for the device verification page and the
    /// authorize URL), without a trailing `/`: callers append `/path`.
    pub fn base(&self) -> String {
        crate::base_url::shown(&self.base).to_owned()
    }
}

fn network(e: reqwest::Error) -> LoginHttpError {
    LoginHttpError::Network(e.without_url().to_string())
}

fn refused(status: u16, body: &[u8]) -> LoginHttpError {
    let (code, message) = oauth::error_fields(body);
    let text = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => format!("HTTP {status}"),
    };
    LoginHttpError::Refused(text.chars().filter(|c| !c.is_control()).take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::{DeviceCode, Issuer, outcome_unknown};
    use crate::secret::Secret;

    #[test]
    fn a_device_code_never_prints_its_device_auth_id() {
        let code = DeviceCode {
            device_auth_id: Secret::new("deviceauth_secret_123".to_owned()),
            user_code: "ABCD-1234".into(),
            interval_secs: 5,
        };
        let shown = format!("{code:?}");
        assert!(!shown.contains("deviceauth_secret_123"), "{shown}");
        assert!(shown.contains("ABCD-1234"), "{shown}");
    }

    #[test]
    fn endpoints_go_below_the_issuers_path() {
        for (base, root) in [
            ("https://auth.openai.com", "https://auth.openai.com/"),
            ("https://auth.openai.com/", "https://auth.openai.com/"),
            (
                "http://127.0.0.1:8787/prefix",
                "http://127.0.0.1:8787/prefix/",
            ),
            (
                "http://127.0.0.1:8787/prefix//",
                "http://127.0.0.1:8787/prefix/",
            ),
        ] {
            let issuer = Issuer::new(base).unwrap();
            assert_eq!(issuer.token_url.as_str(), format!("{root}oauth/token"));
            assert_eq!(
                issuer.user_code_url.as_str(),
                format!("{root}api/accounts/deviceauth/usercode")
            );
            assert_eq!(
                issuer.device_token_url.as_str(),
                format!("{root}api/accounts/deviceauth/token")
            );
            assert_eq!(issuer.base(), root.trim_end_matches('/'));
        }
        assert!(matches!(
            Issuer::new("not a url"),
            Err(super::ClientError::NotAUrl { .. })
        ));
        let cannot_be_a_base = url::Url::parse("data:text/plain,x").unwrap();
        assert!(matches!(
            super::endpoint(&cannot_be_a_base, "oauth/token"),
            Err(super::ClientError::Endpoint { .. })
        ));
    }

    const ISSUER_JSON: &[u8] =
        br#"{"error": {"code": "server_error", "message": "try again", "type": "server_error"}}"#;
    const HTML: &[u8] = b"<html><body><h1>504 Gateway Time-out</h1></body></html>";

    #[test]
    fn gateway_answers_leave_the_outcome_unknown_whatever_their_body() {
        for status in [502, 504, 520, 522, 524, 527] {
            assert!(outcome_unknown(status, HTML), "{status}");
            assert!(outcome_unknown(status, ISSUER_JSON), "{status}");
            assert!(outcome_unknown(status, b""), "{status}");
        }
    }

    #[test]
    fn a_5xx_proves_a_refusal_only_with_the_issuers_own_json_error() {
        for status in [500, 503, 599] {
            assert!(!outcome_unknown(status, ISSUER_JSON), "{status}");
            assert!(outcome_unknown(status, HTML), "{status}");
            assert!(outcome_unknown(status, b""), "{status}");
            assert!(outcome_unknown(status, br#"{"error": null}"#), "{status}");
            assert!(outcome_unknown(status, br#"{"detail": "x"}"#), "{status}");
        }
        assert!(!outcome_unknown(500, br#"{"error": "server_error"}"#));
    }

    #[test]
    fn client_errors_and_rate_limits_are_the_issuers_answers() {
        for status in [400, 401, 403, 429] {
            assert!(!outcome_unknown(status, ISSUER_JSON), "{status}");
            assert!(!outcome_unknown(status, HTML), "{status}");
        }
    }
}
