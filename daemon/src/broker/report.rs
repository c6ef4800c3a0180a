//! What Status says about each provider: a pure summary of a snapshot.

use super::{DEFAULT_PROVIDER, View};
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
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{StoreHealth, view_of};
    use crate::store::Document;
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
        let view = view_of(
            &Document::parse(json.as_bytes()).unwrap(),
            StoreHealth::Ok,
            String::new(),
        );
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
