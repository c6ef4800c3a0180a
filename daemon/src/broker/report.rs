//! What Status says about each provider: a pure summary of a snapshot.

use super::{DEFAULT_PROVIDER, Phase, View};
use crate::store::Credential;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    OAuth,
    ApiKey,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderState {
    NotLoggedIn,
    Valid,
    Expired,
    /// An API key: served as stored.
    Static,
    /// The entry exists but cannot be used.
    Unusable,
    Refreshing,
    /// The issuer rejected the refresh token, or a refresh's outcome is
    /// unknown: log in again.
    NeedsLogin,
    /// Serving a token that could not be written to the store yet.
    Degraded,
}

/// Status of one provider, for people and programs. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReport {
    pub provider: String,
    pub kind: CredentialKind,
    pub state: ProviderState,
    pub account_id: String,
    pub email: String,
    pub plan: String,
    pub expires_at_ms: i64,
    /// What to do next; empty when nothing is needed.
    pub hint: String,
    /// `None`: this daemon has not refreshed it.
    pub last_refresh_ms: Option<i64>,
    pub refresh_count: u32,
    /// `None`: no refresh is scheduled.
    pub next_refresh_ms: Option<i64>,
    pub last_error: String,
}

/// Reports every provider in the snapshot, plus the default provider when
/// it is absent, so `status` always says whether the user is logged in.
pub fn report(view: &View, now_ms: i64) -> Vec<ProviderReport> {
    let mut out: Vec<ProviderReport> = view
        .entries
        .iter()
        .map(|(provider, entry)| {
            let claims = entry.claims.clone().unwrap_or_default();
            let mut r = ProviderReport {
                provider: provider.clone(),
                kind: CredentialKind::Other,
                state: ProviderState::Unusable,
                account_id: String::new(),
                email: claims.email.unwrap_or_default(),
                plan: claims.plan.unwrap_or_default(),
                expires_at_ms: 0,
                hint: String::new(),
                last_refresh_ms: None,
                refresh_count: 0,
                next_refresh_ms: None,
                last_error: String::new(),
            };
            match &entry.credential {
                Credential::OAuth(c) => {
                    r.kind = CredentialKind::OAuth;
                    r.account_id = c
                        .account_id
                        .clone()
                        .or(claims.account_id)
                        .unwrap_or_default();
                    r.expires_at_ms = c.expires_ms;
                    if c.expires_ms > now_ms {
                        r.state = ProviderState::Valid;
                    } else {
                        r.state = ProviderState::Expired;
                        r.hint =
                            "the access token has expired; run pi or `pi-authctl login`".into();
                    }
                    if provider == DEFAULT_PROVIDER {
                        refresh_fields(&mut r, view);
                    }
                }
                Credential::ApiKey(_) => {
                    r.kind = CredentialKind::ApiKey;
                    r.state = ProviderState::Static;
                }
                Credential::Unusable { reason } => {
                    r.hint = format!("{reason}; run `pi-authctl login` to replace it");
                }
            }
            r
        })
        .collect();
    if !out.iter().any(|r| r.provider == DEFAULT_PROVIDER) {
        out.insert(
            0,
            ProviderReport {
                provider: DEFAULT_PROVIDER.into(),
                kind: CredentialKind::OAuth,
                state: ProviderState::NotLoggedIn,
                account_id: String::new(),
                email: String::new(),
                plan: String::new(),
                expires_at_ms: 0,
                hint: "run `pi-authctl login`".into(),
                last_refresh_ms: None,
                refresh_count: 0,
                next_refresh_ms: None,
                last_error: String::new(),
            },
        );
    }
    out
}

/// Adds the refresh bookkeeping of the default provider.
fn refresh_fields(r: &mut ProviderReport, view: &View) {
    let rs = &view.refresh;
    r.last_refresh_ms = rs.last_refresh_ms;
    r.refresh_count = rs.refresh_count;
    r.next_refresh_ms = view.next_refresh_ms();
    r.last_error = rs.last_error.clone();
    match &rs.phase {
        Phase::Idle => {
            if rs.unpersisted {
                r.state = ProviderState::Degraded;
                r.hint = "the current token is not saved to disk yet; the write is retried".into();
            } else if r.state == ProviderState::Expired && rs.retry_at_ms.is_some() {
                r.hint = "refreshing is failing; retrying with backoff".into();
            } else if r.state == ProviderState::Expired {
                r.hint.clear();
            }
        }
        Phase::Refreshing => r.state = ProviderState::Refreshing,
        Phase::NeedsLogin { .. } => {
            r.state = ProviderState::NeedsLogin;
            r.hint = "the issuer rejected the refresh token: run `pi-authctl login`".into();
        }
        Phase::OutcomeUnknown { .. } => {
            r.state = ProviderState::NeedsLogin;
            r.hint = "a refresh got no answer, so the token may be spent; the current access token \
                      is served until it expires. Run `pi-authctl refresh` to retry, or `pi-authctl login`"
                .into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::tests::view_from;
    use base64::Engine;

    fn jwt(payload: &str) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
        format!("h.{b}.s")
    }

    #[test]
    fn reports_claims_state_and_absent_default() {
        let access = jwt(
            r#"{"email":"u@x.y","https://api.openai.com/auth":{"chatgpt_account_id":"acc","chatgpt_plan_type":"pro"}}"#,
        );
        let json = format!(
            r#"{{"anthropic":{{"type":"oauth","access":"{access}","refresh":"r","expires":10}},"openai":{{"type":"api_key","key":"k"}}}}"#
        );
        let view = view_from(&json);
        let r = report(&view, 20);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].provider, "openai-codex");
        assert_eq!(r[0].state, ProviderState::NotLoggedIn);
        assert_eq!(r[1].state, ProviderState::Expired);
        assert_eq!(r[1].account_id, "acc");
        assert_eq!(r[1].email, "u@x.y");
        assert_eq!(r[1].plan, "pro");
        assert_eq!(r[2].state, ProviderState::Static);
        assert!(!format!("{r:?}").contains(&access));
    }
}
