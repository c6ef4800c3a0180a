//! `pi-authctl accounts`: the ChatGPT accounts the daemon keeps. Pure.

use piauth_client::proto::v1 as pb;
use serde_json::{Value, json};

use crate::state::state_name;

/// The `accounts --json` output.
pub fn accounts_json(r: &pb::AccountsResponse) -> Value {
    let accounts: Vec<Value> = r
        .accounts
        .iter()
        .map(|a| {
            json!({
                "account_id": a.account_id,
                "email": a.email,
                "plan": a.plan,
                "active": a.active,
                "state": state_name(a.state).replace(' ', "_"),
            })
        })
        .collect();
    json!({ "accounts": accounts })
}

/// The human-readable `accounts` output: one line each, the active one
/// marked.
pub fn accounts_text(r: &pb::AccountsResponse) -> String {
    if r.accounts.is_empty() {
        return "No ChatGPT account yet: run `pi-authctl login`.\n".into();
    }
    let mut out = String::new();
    for a in &r.accounts {
        let mark = if a.active { "*" } else { " " };
        let who = if a.email.is_empty() {
            String::new()
        } else {
            format!("  {}", a.email)
        };
        let plan = if a.plan.is_empty() {
            String::new()
        } else {
            format!("  {}", a.plan)
        };
        out += &format!(
            "{mark} {}{who}{plan}  {}\n",
            a.account_id,
            state_name(a.state)
        );
    }
    if r.accounts.len() > 1 {
        out += "\n* active (in pi's auth.json). Switch with `pi-authctl accounts use ID`.\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> pb::AccountsResponse {
        pb::AccountsResponse {
            accounts: vec![
                pb::Account {
                    account_id: "acc-b".into(),
                    email: "b@example.com".into(),
                    plan: "pro".into(),
                    active: true,
                    state: pb::ProviderState::Valid as i32,
                },
                pb::Account {
                    account_id: "acc-a".into(),
                    email: String::new(),
                    plan: "plus".into(),
                    active: false,
                    state: pb::ProviderState::NeedsLogin as i32,
                },
            ],
        }
    }

    #[test]
    fn json_names_every_field_and_state() {
        let j = accounts_json(&two());
        assert_eq!(j["accounts"][0]["account_id"], "acc-b");
        assert_eq!(j["accounts"][0]["active"], true);
        assert_eq!(j["accounts"][0]["state"], "valid");
        assert_eq!(j["accounts"][1]["state"], "needs_login");
        assert_eq!(j["accounts"][1]["email"], "");
    }

    #[test]
    fn text_marks_the_active_one_and_says_how_to_switch() {
        let t = accounts_text(&two());
        assert!(t.contains("* acc-b  b@example.com  pro  valid"), "{t}");
        assert!(t.contains("  acc-a  plus  needs login"), "{t}");
        assert!(t.contains("pi-authctl accounts use ID"), "{t}");
        let none = accounts_text(&pb::AccountsResponse::default());
        assert!(none.contains("pi-authctl login"), "{none}");
    }
}
