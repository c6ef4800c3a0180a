//! When to refresh, how long to back off, what a caller may demand: pure
//! functions of times and lifetimes, so every rule is unit-tested.
//!
//! The policy: refresh when a token has `min(lead, lifetime / 2)` left,
//! where the lead is configurable (`refresh_lead_secs`) and defaults to
//! [`DEFAULT_LEAD_MS`], 35 minutes.
//! * Real tokens live for days, so the daemon refreshes 35 minutes before
//!   expiry: before all of pi's own thresholds (at expiry for pi 0.73.1,
//!   five minutes before for pi 1.x, and 30 minutes before for pi 1.x's
//!   `pi auth print-bearer-token`), so pi never refreshes while the daemon
//!   runs, and no caller ever waits on a refresh in steady state.
//! * Test tokens live for seconds; half the lifetime keeps the schedule
//!   sane (a 4 s token refreshes every 2 s) instead of refreshing at once
//!   forever.
//! * Refreshes are never closer than [`MIN_GAP_MS`], whatever the issuer
//!   says, so a token issued already expired cannot cause a refresh loop.
//! * What a caller may demand (`min_valid_secs`) is capped at an hour and
//!   at half the lifetime. A demand above what is left triggers one early
//!   refresh; the fresh token then satisfies every such demand, so a
//!   large demand can never cause a refresh storm.

/// How far ahead of expiry a long-lived token is refreshed unless
/// configured otherwise: 5 minutes before pi 1.x's `print-bearer-token`
/// (30 minutes).
pub const DEFAULT_LEAD_MS: i64 = 35 * 60 * 1000;
/// Refreshes are at least this far apart.
pub const MIN_GAP_MS: i64 = 250;
/// The most a caller may ask a token to stay valid.
pub const MAX_MIN_VALID_MS: i64 = 3600 * 1000;
/// First retry delay after a transient failure; doubles per failure.
pub const BACKOFF_BASE_MS: i64 = 1000;
/// The longest delay between retries.
pub const BACKOFF_CAP_MS: i64 = 60 * 1000;
/// The longest `retry-after` honoured.
pub const RETRY_AFTER_CAP_MS: i64 = 5 * 60 * 1000;

/// The earliest any pi refreshes by itself: `pi auth print-bearer-token`
/// (pi 1.x), 30 minutes before expiry. pi 1.x's requests refresh at 5
/// minutes, pi 0.73.1 at expiry.
pub const PI_EARLIEST_REFRESH_MS: i64 = 30 * 60 * 1000;

/// Whether a refresh of a token with `remaining_ms` left may give pi's lock
/// back while it is on the wire (`round_trip_ms` bounds the request and the
/// wait to re-take the lock). Only when pi cannot decide to refresh before
/// the answer is stored: inside pi's thresholds, a pi process that found
/// the lock free would refresh with the same token, which is reuse.
pub fn may_release_pi_lock(remaining_ms: i64, round_trip_ms: i64) -> bool {
    remaining_ms.saturating_sub(round_trip_ms.max(0)) > PI_EARLIEST_REFRESH_MS
}

/// How far ahead of expiry to refresh a token with this lifetime, given the
/// configured lead: the lead, or half the lifetime if that is shorter.
pub fn margin_ms(lifetime_ms: i64, lead_ms: i64) -> i64 {
    (lifetime_ms.max(0) / 2).min(lead_ms.max(0))
}

/// When to refresh a token expiring at `expires_ms`; never sooner than
/// the minimum gap after this daemon's last refresh (`None`: none yet).
pub fn refresh_at(
    expires_ms: i64,
    lifetime_ms: i64,
    last_refresh_ms: Option<i64>,
    lead_ms: i64,
) -> i64 {
    let at = expires_ms - margin_ms(lifetime_ms, lead_ms);
    last_refresh_ms.map_or(at, |last| at.max(last + MIN_GAP_MS))
}

/// How long a caller's token must stay valid: what it asked, capped.
pub fn effective_min_valid_ms(asked_secs: u32, lifetime_ms: i64) -> i64 {
    (i64::from(asked_secs) * 1000)
        .min(MAX_MIN_VALID_MS)
        .min(lifetime_ms.max(0) / 2)
}

/// The lifetime of a token: `exp - iat` from its claims when both are
/// known, else what is left of it now (a fair guess for a token loaded from
/// disk).
pub fn lifetime_ms(
    exp_secs: Option<i64>,
    iat_secs: Option<i64>,
    expires_ms: i64,
    now_ms: i64,
) -> i64 {
    match (exp_secs, iat_secs) {
        (Some(exp), Some(iat)) if exp > iat => (exp - iat) * 1000,
        _ => (expires_ms - now_ms).max(0),
    }
}

/// Delay before retry number `failures` (1 for the first retry), with
/// `jitter` in `[0, 1)` taking off up to half, and a server's `retry-after`
/// honoured (capped).
pub fn backoff_ms(failures: u32, jitter: f64, retry_after_ms: Option<u64>) -> i64 {
    let ms = |v: i64| std::time::Duration::from_millis(v.unsigned_abs());
    let capped = crate::backoff::Backoff::nth(
        ms(BACKOFF_BASE_MS),
        ms(BACKOFF_CAP_MS),
        failures.saturating_sub(1),
    )
    .as_millis() as i64;
    let jittered = capped - (capped as f64 * 0.5 * jitter.clamp(0.0, 1.0)) as i64;
    let server = retry_after_ms.map_or(0, |ms| ms.min(RETRY_AFTER_CAP_MS as u64) as i64);
    jittered.max(server).max(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn pi_lock_is_given_back_only_outside_every_pi_threshold() {
        let round_trip = 4 * MIN;
        // The default schedule (35 min before expiry) leaves room for a
        // round trip of up to 5 minutes.
        assert!(may_release_pi_lock(DEFAULT_LEAD_MS, round_trip));
        assert!(!may_release_pi_lock(DEFAULT_LEAD_MS, 5 * MIN));
        // A forced refresh of a fresh hour-long token.
        assert!(may_release_pi_lock(60 * MIN, round_trip));
        // pi's own thresholds, and the boundary itself.
        assert!(!may_release_pi_lock(
            PI_EARLIEST_REFRESH_MS + round_trip,
            round_trip
        ));
        assert!(may_release_pi_lock(
            PI_EARLIEST_REFRESH_MS + round_trip + 1,
            round_trip
        ));
        assert!(!may_release_pi_lock(5 * MIN, round_trip));
        assert!(!may_release_pi_lock(-MIN, round_trip));
        assert!(!may_release_pi_lock(i64::MIN, round_trip));
        assert!(may_release_pi_lock(DAY, -1), "a negative bound counts as 0");
    }

    const MIN: i64 = 60_000;

    #[test]
    fn long_tokens_refresh_thirty_five_minutes_ahead_by_default() {
        assert_eq!(DEFAULT_LEAD_MS, 35 * MIN);
        assert_eq!(
            refresh_at(10 * DAY, 10 * DAY, None, DEFAULT_LEAD_MS),
            10 * DAY - 35 * MIN
        );
        // pi 1.x refreshes 5 minutes ahead, its print-bearer-token 30
        // minutes ahead; the default lead is before both.
        assert!(margin_ms(10 * DAY, DEFAULT_LEAD_MS) > 30 * MIN);
    }

    #[test]
    fn a_custom_lead_is_used_for_long_tokens() {
        assert_eq!(margin_ms(10 * DAY, 90 * MIN), 90 * MIN);
        assert_eq!(
            refresh_at(10 * DAY, 10 * DAY, None, 90 * MIN),
            10 * DAY - 90 * MIN
        );
        assert_eq!(margin_ms(10 * DAY, 1_000), 1_000);
    }

    #[test]
    fn short_tokens_refresh_at_half_life() {
        assert_eq!(refresh_at(10_000, 4_000, None, DEFAULT_LEAD_MS), 8_000);
        assert_eq!(margin_ms(4_000, DEFAULT_LEAD_MS), 2_000);
        // An hour-long token: half its life (30 min) beats the 35 min lead.
        assert_eq!(margin_ms(60 * MIN, DEFAULT_LEAD_MS), 30 * MIN);
        // The cap applies to a custom lead too.
        assert_eq!(margin_ms(60 * MIN, 50 * MIN), 30 * MIN);
        assert_eq!(margin_ms(60 * MIN, 10 * MIN), 10 * MIN);
    }

    #[test]
    fn refreshes_are_never_closer_than_the_gap() {
        // A token issued already expired: no loop.
        assert_eq!(
            refresh_at(5_000, 0, Some(5_000), DEFAULT_LEAD_MS),
            5_000 + MIN_GAP_MS
        );
    }

    #[test]
    fn demands_are_capped() {
        assert_eq!(effective_min_valid_ms(60, 10 * DAY), 60_000);
        assert_eq!(effective_min_valid_ms(u32::MAX, 10 * DAY), MAX_MIN_VALID_MS);
        assert_eq!(effective_min_valid_ms(7200, 10 * DAY), MAX_MIN_VALID_MS);
        assert_eq!(effective_min_valid_ms(60, 4_000), 2_000);
        assert_eq!(effective_min_valid_ms(0, 4_000), 0);
    }

    #[test]
    fn lifetime_from_claims_or_remaining() {
        assert_eq!(lifetime_ms(Some(100), Some(40), 0, 0), 60_000);
        assert_eq!(lifetime_ms(None, None, 50_000, 20_000), 30_000);
        assert_eq!(lifetime_ms(Some(1), Some(5), 10, 20), 0);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        assert_eq!(backoff_ms(1, 0.0, None), 1000);
        assert_eq!(backoff_ms(2, 0.0, None), 2000);
        assert_eq!(backoff_ms(3, 0.5, None), 3000);
        assert_eq!(backoff_ms(30, 0.0, None), BACKOFF_CAP_MS);
        assert_eq!(backoff_ms(1, 0.0, Some(30_000)), 30_000);
        assert_eq!(backoff_ms(1, 0.0, Some(u64::MAX)), RETRY_AFTER_CAP_MS);
    }
}
