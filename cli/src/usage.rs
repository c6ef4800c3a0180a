//! `pi-authctl usage`: each account's plan, its rate-limit windows as bars
//! with the percent used and the time to reset, and its credits. Pure.

use piauth_client::proto::v1 as pb;
use serde_json::{Value, json};

/// The `usage --json` output. A window the backend does not report is
/// `null`, never 0 %.
pub fn usage_json(r: &pb::UsageResponse) -> Value {
    let window = |w: &Option<pb::UsageWindow>| match w {
        Some(w) => json!({
            "used_percent": w.used_percent,
            "window_minutes": w.window_minutes,
            "resets_at": (w.resets_at != 0).then_some(w.resets_at),
        }),
        None => Value::Null,
    };
    let accounts: Vec<Value> = r
        .accounts
        .iter()
        .map(|a| {
            json!({
                "account_id": a.account_id,
                "email": a.email,
                "plan": a.plan,
                "primary": window(&a.primary),
                "secondary": window(&a.secondary),
                "limit_reached": a.limit_reached,
                "source": a.source,
                "fetched_at": a.fetched_at,
                "credits": a.credits.as_ref().map(|c| json!({
                    "has_credits": c.has_credits,
                    "unlimited": c.unlimited,
                    "balance": c.balance,
                })),
            })
        })
        .collect();
    json!({ "accounts": accounts })
}

/// The human-readable `usage` output, with times relative to `now_s`.
pub fn usage_text(r: &pb::UsageResponse, now_s: i64) -> String {
    let mut out = String::new();
    for a in &r.accounts {
        let who = if a.email.is_empty() {
            &a.account_id
        } else {
            &a.email
        };
        let plan = if a.plan.is_empty() {
            "plan unknown"
        } else {
            &a.plan
        };
        out += &format!("{who} ({plan})\n");
        out += &window_line("5-hour", a.primary.as_ref(), now_s);
        out += &window_line("weekly", a.secondary.as_ref(), now_s);
        if let Some(c) = &a.credits {
            let credits = match (c.unlimited, c.has_credits) {
                (true, _) => "unlimited".to_owned(),
                (false, true) => format!("balance {}", c.balance),
                (false, false) => "none".to_owned(),
            };
            out += &format!("  credits  {credits}\n");
        }
        if a.limit_reached {
            out += "  the usage limit is reached: requests fail until a window resets\n";
        }
    }
    if r.accounts.is_empty() {
        out += "no account: run `pi-authctl login`\n";
    }
    out
}

fn window_line(name: &str, w: Option<&pb::UsageWindow>, now_s: i64) -> String {
    let Some(w) = w else {
        return format!("  {name:<7}  not reported by the backend\n");
    };
    let reset = if w.resets_at == 0 {
        String::new()
    } else {
        format!(", resets in {}", span((w.resets_at - now_s).max(0)))
    };
    format!(
        "  {name:<7}  {} {:>5.1}% used{reset}\n",
        bar(w.used_percent),
        w.used_percent
    )
}

/// A 20-cell bar for a percentage (clamped to 0-100).
pub fn bar(percent: f64) -> String {
    let cells = 20;
    let full = ((percent.clamp(0.0, 100.0) / 100.0) * cells as f64).round() as usize;
    format!("[{}{}]", "#".repeat(full), ".".repeat(cells - full))
}

/// "2d 3h", "4h 10m", "12m", "40s": the two largest units.
fn span(secs: i64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut left = secs;
    for (size, unit) in units {
        if left >= size && parts.len() < 2 {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        } else if !parts.is_empty() {
            break;
        }
    }
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> pb::UsageResponse {
        pb::UsageResponse {
            accounts: vec![pb::AccountUsage {
                account_id: "acc-1".into(),
                email: "u@example.com".into(),
                plan: "plus".into(),
                primary: None,
                secondary: Some(pb::UsageWindow {
                    used_percent: 50.0,
                    window_minutes: 10_080,
                    resets_at: 1_000 + 2 * 86_400 + 3 * 3_600,
                }),
                limit_reached: false,
                source: "usage_endpoint".into(),
                fetched_at: 990,
                credits: None,
            }],
        }
    }

    #[test]
    fn json_says_a_missing_window_is_null() {
        let v = usage_json(&response());
        let a = &v["accounts"][0];
        assert!(a["primary"].is_null());
        assert_eq!(a["secondary"]["used_percent"], 50.0);
        assert_eq!(a["secondary"]["resets_at"], 1_000 + 2 * 86_400 + 3 * 3_600);
        assert_eq!(a["fetched_at"], 990);
        assert_eq!(a["source"], "usage_endpoint");
    }

    #[test]
    fn text_shows_bars_and_time_to_reset() {
        let text = usage_text(&response(), 1_000);
        assert!(text.contains("u@example.com (plus)"), "{text}");
        assert!(
            text.contains("5-hour   not reported by the backend"),
            "{text}"
        );
        assert!(
            text.contains("[##########..........]  50.0% used, resets in 2d 3h"),
            "{text}"
        );
        assert_eq!(bar(150.0), format!("[{}]", "#".repeat(20)));
        assert_eq!(span(59), "59s");
        assert_eq!(span(3_660), "1h 1m");
    }
}
