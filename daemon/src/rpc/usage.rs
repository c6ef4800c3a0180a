//! `Auth.Usage`: the plan's rate-limit windows per account, proto out.

use std::sync::Arc;

use piauth_proto::v1 as pb;
use tonic::Status;

use super::completions::relay_status;
use crate::accounts::Accounts;
use crate::broker::{Broker, report};
use crate::codex::Codex;
use crate::usage::{Report, Window};

/// The answer to `Auth.Usage`: every account, the active one first. One
/// account's failure fails the call only when it is the only account.
pub async fn usage(
    accounts: &Accounts,
    codex: &Codex,
    fresh: bool,
) -> Result<pb::UsageResponse, Status> {
    let keepers = accounts.keepers();
    if keepers.is_empty() {
        // Not logged in: the relay says so in its own words.
        let active = accounts.active();
        codex.usage(active, fresh).await.map_err(relay_status)?;
    }
    let mut out = Vec::new();
    let mut first_error = None;
    for (_, keeper) in &keepers {
        match one(keeper, codex, fresh).await {
            Ok(a) => out.push(a),
            Err(e) => {
                tracing::warn!(error = %e.message(), "cannot read an account's usage");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(pb::UsageResponse { accounts: out }),
    }
}

/// One account's usage.
async fn one(keeper: &Arc<Broker>, codex: &Codex, fresh: bool) -> Result<pb::AccountUsage, Status> {
    let (account_id, usage) = codex.usage(keeper, fresh).await.map_err(relay_status)?;
    let now = keeper.now_ms();
    let who = report(&keeper.view(), now)
        .into_iter()
        .find(|r| r.account_id == account_id);
    let email = who.as_ref().map(|r| r.email.clone()).unwrap_or_default();
    let claimed_plan = who.map(|r| r.plan).unwrap_or_default();
    Ok(account_usage(account_id, email, claimed_plan, usage))
}

/// One account's report as the wire says it. The plan the backend reports
/// wins over the one in the token's claims.
fn account_usage(
    account_id: String,
    email: String,
    claimed_plan: String,
    usage: Report,
) -> pb::AccountUsage {
    pb::AccountUsage {
        account_id,
        email,
        plan: usage.plan.unwrap_or(claimed_plan),
        primary: usage.primary.map(window),
        secondary: usage.secondary.map(window),
        limit_reached: usage.limit_reached,
        source: usage.source.as_str().to_owned(),
        fetched_at: usage.fetched_at_s,
        credits: usage.credits.map(|c| pb::UsageCredits {
            has_credits: c.has_credits,
            unlimited: c.unlimited,
            balance: c.balance,
        }),
    }
}

fn window(w: Window) -> pb::UsageWindow {
    pb::UsageWindow {
        used_percent: w.used_percent,
        window_minutes: w.window_minutes,
        resets_at: w.resets_at_s.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Source;

    #[test]
    fn a_missing_window_stays_missing_on_the_wire() {
        let report = Report {
            plan: None,
            primary: None,
            secondary: Some(Window {
                used_percent: 12.0,
                window_minutes: 10_080,
                resets_at_s: Some(99),
            }),
            limit_reached: false,
            credits: None,
            source: Source::Endpoint,
            fetched_at_s: 7,
            endpoint_read_at_s: Some(7),
            limited_until_s: None,
        };
        let wire = account_usage("acc".into(), "a@b.c".into(), "plus".into(), report);
        assert_eq!(wire.primary, None);
        assert_eq!(wire.secondary.map(|w| w.resets_at), Some(99));
        assert_eq!(
            wire.plan, "plus",
            "the token's plan when the backend said none"
        );
        assert_eq!(
            (wire.source.as_str(), wire.fetched_at),
            ("usage_endpoint", 7)
        );
    }
}
