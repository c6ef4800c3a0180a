//! `GET /backend-api/wham/usage`: each account's rate-limit windows, as the
//! real backend answers them (PI.md, "Usage"), and `POST /_mock/usage` to
//! set them. A window set to `null` is missing from the answer, as OpenAI
//! has left out the 5-hour window for some plans at times.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::MockState;

/// One window: how much of it is used, and when it resets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub used_percent: f64,
    pub window_minutes: u64,
    /// When it resets, in epoch seconds.
    pub reset_at: i64,
}

/// An account's windows; `None` is a window the backend does not report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AccountUsage {
    pub primary: Option<Window>,
    pub secondary: Option<Window>,
}

impl AccountUsage {
    /// A fresh account: both windows at 0 %, the 5-hour one resetting in
    /// 5 hours and the weekly one in a week.
    pub fn fresh(now_s: i64) -> AccountUsage {
        AccountUsage {
            primary: Some(Window {
                used_percent: 0.0,
                window_minutes: 300,
                reset_at: now_s + 5 * 3600,
            }),
            secondary: Some(Window {
                used_percent: 0.0,
                window_minutes: 10_080,
                reset_at: now_s + 7 * 86_400,
            }),
        }
    }
}

/// Every account's usage, by account id, and what it was charged.
#[derive(Debug, Default)]
pub struct UsageBook {
    usage: HashMap<String, AccountUsage>,
    charged: HashMap<String, Charged>,
}

/// The responses an account was charged for, and the ones its limit
/// refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    pub served: u64,
    pub refused: u64,
}

impl UsageBook {
    pub fn get(&self, account: &str, now_s: i64) -> AccountUsage {
        self.usage
            .get(account)
            .copied()
            .unwrap_or_else(|| AccountUsage::fresh(now_s))
    }

    pub fn set(&mut self, account: &str, usage: AccountUsage) {
        self.usage.insert(account.to_owned(), usage);
    }

    /// What `account` was charged so far.
    pub fn charged(&self, account: &str) -> Charged {
        self.charged.get(account).copied().unwrap_or_default()
    }

    /// Charges one response to `account` at `now_s`, as the backend counts
    /// it: a window past its reset starts over at 0 %; a full window
    /// refuses the response (`Err` with the latest reset of a full
    /// window); otherwise the 5-hour window grows by `step` percent and a
    /// longer one by the same work over its length. The response that
    /// fills a window is still served; the next one is refused.
    pub fn charge(&mut self, account: &str, step: f64, now_s: i64) -> Result<AccountUsage, i64> {
        let mut usage = self.get(account, now_s);
        for w in [&mut usage.primary, &mut usage.secondary]
            .into_iter()
            .flatten()
        {
            if w.reset_at <= now_s {
                w.used_percent = 0.0;
                w.reset_at = now_s + window_secs(w);
            }
        }
        let full = [usage.primary, usage.secondary]
            .into_iter()
            .flatten()
            .filter(|w| w.used_percent >= 100.0)
            .map(|w| w.reset_at)
            .max();
        if let Some(resets_at) = full {
            self.set(account, usage);
            self.charged.entry(account.to_owned()).or_default().refused += 1;
            return Err(resets_at);
        }
        for w in [&mut usage.primary, &mut usage.secondary]
            .into_iter()
            .flatten()
        {
            let share = FIVE_HOURS_MIN / w.window_minutes.max(1) as f64;
            w.used_percent = (w.used_percent + step * share).min(100.0);
        }
        self.set(account, usage);
        self.charged.entry(account.to_owned()).or_default().served += 1;
        Ok(usage)
    }
}

/// The 5-hour window, in minutes.
const FIVE_HOURS_MIN: f64 = 300.0;

fn window_secs(w: &Window) -> i64 {
    i64::try_from(w.window_minutes.saturating_mul(60)).unwrap_or(i64::MAX)
}

/// A stream's `codex.rate_limits` event for `usage` (a missing window is
/// `null`).
pub fn rate_limits_event(usage: &AccountUsage) -> Value {
    let window = |w: &Option<Window>| match w {
        Some(w) => json!({
            "used_percent": w.used_percent,
            "window_minutes": w.window_minutes,
            "reset_at": w.reset_at,
        }),
        None => Value::Null,
    };
    json!({
        "type": "codex.rate_limits",
        "rate_limits": {"primary": window(&usage.primary), "secondary": window(&usage.secondary)},
    })
}

/// The backend's 429 for an account whose window is full until
/// `resets_at`, with the limit headers it sends.
pub fn limit_answer(plan: &str, resets_at: i64, now_s: i64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            ("x-codex-primary-used-percent", "100".to_owned()),
            ("x-codex-active-limit", "primary".to_owned()),
            ("retry-after", (resets_at - now_s).max(0).to_string()),
        ],
        Json(json!({"error": {
            "type": "usage_limit_reached",
            "code": "usage_limit_reached",
            "message": "The usage limit has been reached",
            "plan_type": plan,
            "resets_at": resets_at,
            "resets_in_seconds": (resets_at - now_s).max(0),
        }})),
    )
        .into_response()
}

pub(super) fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A window as the backend writes it.
fn window_json(w: &Window, now_s: i64) -> Value {
    json!({
        "used_percent": w.used_percent,
        "limit_window_seconds": w.window_minutes * 60,
        "reset_after_seconds": (w.reset_at - now_s).max(0),
        "reset_at": w.reset_at,
    })
}

/// The backend's answer for `account` on `plan`.
pub fn answer(usage: &AccountUsage, plan: &str, now_s: i64) -> Value {
    let reached = [usage.primary, usage.secondary]
        .iter()
        .flatten()
        .any(|w| w.used_percent >= 100.0);
    let mut rate_limit = json!({ "allowed": !reached, "limit_reached": reached });
    if let Some(w) = &usage.primary {
        rate_limit["primary_window"] = window_json(w, now_s);
    }
    if let Some(w) = &usage.secondary {
        rate_limit["secondary_window"] = window_json(w, now_s);
    }
    json!({
        "plan_type": plan,
        "rate_limit": rate_limit,
        "credits": { "has_credits": false, "unlimited": false, "balance": "0" },
    })
}

/// `GET /backend-api/wham/usage`, with the bearer token and the
/// `chatgpt-account-id` of one account.
pub async fn usage(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    state.note_usage_request();
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(token) = header("authorization").strip_prefix("Bearer ") else {
        return refuse(StatusCode::UNAUTHORIZED, "missing bearer token");
    };
    let now = now_s();
    let Some((account, plan)) = state.account_and_plan_of_valid_token(token, now * 1000) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the access token is invalid or expired",
        );
    };
    if header("chatgpt-account-id") != account {
        return refuse(
            StatusCode::FORBIDDEN,
            "chatgpt-account-id does not match the token",
        );
    }
    let usage = state.usage_of(&account, now);
    Json(answer(&usage, &plan, now)).into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"detail": message}))).into_response()
}

/// What `POST /_mock/usage` takes.
#[derive(Debug, Deserialize)]
pub struct SetUsage {
    pub account_id: String,
    pub primary: Option<Window>,
    pub secondary: Option<Window>,
}

/// `POST /_mock/usage`: sets an account's windows (`null`: missing).
pub async fn set_usage(
    State(state): State<Arc<MockState>>,
    Json(body): Json<SetUsage>,
) -> Response {
    state.set_usage(
        &body.account_id,
        AccountUsage {
            primary: body.primary,
            secondary: body.secondary,
        },
    );
    Json(json!({"set": body.account_id})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_grows_per_response_refuses_when_full_and_resets_on_time() {
        let mut book = UsageBook::default();
        let t0 = 1_000_000;
        let mut usage = AccountUsage::fresh(t0);
        usage.primary.as_mut().unwrap().used_percent = 98.0;
        book.set("a", usage);
        let after = book.charge("a", 1.5, t0).expect("served");
        assert_eq!(after.primary.unwrap().used_percent, 99.5);
        let weekly = after.secondary.unwrap().used_percent;
        assert!((weekly - 1.5 * 300.0 / 10_080.0).abs() < 1e-9, "{weekly}");
        let full = book
            .charge("a", 1.5, t0 + 1)
            .expect("the filling one is served");
        assert_eq!(full.primary.unwrap().used_percent, 100.0);
        let reset = t0 + 5 * 3600;
        assert_eq!(book.charge("a", 1.5, t0 + 2), Err(reset));
        assert_eq!(book.charge("a", 1.5, reset - 1), Err(reset));
        let fresh = book
            .charge("a", 1.5, reset)
            .expect("served after the reset");
        assert_eq!(fresh.primary.unwrap().used_percent, 1.5);
        assert_eq!(fresh.primary.unwrap().reset_at, reset + 5 * 3600);
        // Other accounts are their own.
        assert_eq!(
            book.charge("b", 1.5, t0)
                .unwrap()
                .primary
                .unwrap()
                .used_percent,
            1.5
        );
        assert_eq!(
            book.charged("a"),
            Charged {
                served: 3,
                refused: 2
            }
        );
        assert_eq!(
            book.charged("b"),
            Charged {
                served: 1,
                refused: 0
            }
        );
    }

    #[test]
    fn a_missing_window_is_left_out_and_a_full_one_is_reached() {
        let usage = AccountUsage {
            primary: None,
            secondary: Some(Window {
                used_percent: 100.0,
                window_minutes: 10_080,
                reset_at: 2_000,
            }),
        };
        let v = answer(&usage, "plus", 1_000);
        assert!(v["rate_limit"].get("primary_window").is_none());
        assert_eq!(
            v["rate_limit"]["secondary_window"]["reset_after_seconds"],
            1_000
        );
        assert_eq!(
            v["rate_limit"]["secondary_window"]["limit_window_seconds"],
            604_800
        );
        assert_eq!(v["rate_limit"]["limit_reached"], true);
        assert_eq!(v["plan_type"], "plus");
    }
}
