//! The plan's rate-limit windows: read from the backend's usage endpoint
//! (`GET {base}/wham/usage`, docs in PI.md "Usage") and from the
//! `x-codex-*` headers of every relayed response, kept per account.
//!
//! A window the backend does not report is `None`, never 0 %: OpenAI has
//! left out the 5-hour window for some plans at times, and "0 % used" would
//! tell the user something false. Parsing is pure; [`UsageBook`] is the
//! cache the relay and the Usage RPC share.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

use crate::wire::{Loose, Number};

/// How long a report read from the usage endpoint is served before it is
/// read again.
pub const FRESH_FOR_S: i64 = 60;

/// One rate-limit window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub used_percent: f64,
    pub window_minutes: u64,
    /// When it resets, in epoch seconds; `None` when not said.
    pub resets_at_s: Option<i64>,
}

/// Credits on the account, as the backend reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credits {
    pub has_credits: bool,
    pub unlimited: bool,
    pub balance: String,
}

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The usage endpoint.
    Endpoint,
    /// The headers of a relayed response.
    Headers,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Endpoint => "usage_endpoint",
            Source::Headers => "response_headers",
        }
    }
}

/// What is known of one account's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub plan: Option<String>,
    pub primary: Option<Window>,
    pub secondary: Option<Window>,
    pub limit_reached: bool,
    pub credits: Option<Credits>,
    /// Where the newest numbers came from.
    pub source: Source,
    /// When the newest numbers were learnt, epoch seconds.
    pub fetched_at_s: i64,
    /// When the usage endpoint was last read, epoch seconds.
    pub endpoint_read_at_s: Option<i64>,
    /// A limit answer said no request is served before this, epoch
    /// seconds.
    pub limited_until_s: Option<i64>,
}

impl Report {
    /// Nothing known yet, at `now_s`.
    fn empty(now_s: i64) -> Report {
        Report {
            plan: None,
            primary: None,
            secondary: None,
            limit_reached: false,
            credits: None,
            source: Source::Headers,
            fetched_at_s: now_s,
            endpoint_read_at_s: None,
            limited_until_s: None,
        }
    }

    /// Until when the account is limited at `now_s`: a limit answer's
    /// reset, or a full window's, whichever is later; `None` when it has
    /// room. A reset in the past has happened.
    pub fn limited_until(&self, now_s: i64) -> Option<i64> {
        let full = [self.primary, self.secondary]
            .into_iter()
            .flatten()
            .filter(|w| w.used_percent >= 100.0)
            .filter_map(|w| w.resets_at_s);
        self.limited_until_s
            .into_iter()
            .chain(full)
            .filter(|&t| t > now_s)
            .max()
    }

    /// How much of its fullest window the account has used, in percent;
    /// `None` when no window is known.
    pub fn used_percent(&self) -> Option<f64> {
        [self.primary, self.secondary]
            .into_iter()
            .flatten()
            .map(|w| w.used_percent)
            .reduce(f64::max)
    }
}

#[derive(Deserialize)]
struct Answer {
    plan_type: Option<Loose<String>>,
    rate_limit: Option<Loose<RateLimit>>,
    credits: Option<Loose<CreditsBody>>,
}

#[derive(Deserialize)]
struct RateLimit {
    limit_reached: Option<Loose<bool>>,
    primary_window: Option<Loose<WindowBody>>,
    secondary_window: Option<Loose<WindowBody>>,
}

#[derive(Deserialize)]
struct WindowBody {
    used_percent: Option<Loose<Number>>,
    limit_window_seconds: Option<Loose<Number>>,
    reset_after_seconds: Option<Loose<Number>>,
    reset_at: Option<Loose<Number>>,
}

#[derive(Deserialize)]
struct CreditsBody {
    has_credits: Option<Loose<bool>>,
    unlimited: Option<Loose<bool>>,
    balance: Option<Loose<Number>>,
}

fn number(v: Option<Loose<Number>>) -> Option<f64> {
    v.and_then(Loose::fit).and_then(|n| n.real())
}

fn window(body: WindowBody, now_s: i64) -> Option<Window> {
    let used_percent = number(body.used_percent)?;
    let window_minutes = number(body.limit_window_seconds).map_or(0, |s| (s / 60.0) as u64);
    let resets_at_s = number(body.reset_at)
        .map(|t| t as i64)
        .or_else(|| number(body.reset_after_seconds).map(|s| now_s + s as i64));
    Some(Window {
        used_percent,
        window_minutes,
        resets_at_s,
    })
}

/// The usage endpoint's answer, read at `now_s`; `None` when it is not the
/// JSON object the endpoint sends.
pub fn from_endpoint(body: &[u8], now_s: i64) -> Option<Report> {
    let answer: Answer = crate::wire::object(body)?;
    let rate = answer.rate_limit.and_then(Loose::fit);
    let (limit_reached, primary, secondary) = match rate {
        Some(r) => (
            r.limit_reached.and_then(Loose::fit).unwrap_or(false),
            r.primary_window
                .and_then(Loose::fit)
                .and_then(|w| window(w, now_s)),
            r.secondary_window
                .and_then(Loose::fit)
                .and_then(|w| window(w, now_s)),
        ),
        None => (false, None, None),
    };
    let credits = answer.credits.and_then(Loose::fit).map(|c| Credits {
        has_credits: c.has_credits.and_then(Loose::fit).unwrap_or(false),
        unlimited: c.unlimited.and_then(Loose::fit).unwrap_or(false),
        balance: number(c.balance).map_or_else(String::new, |b| b.to_string()),
    });
    Some(Report {
        plan: answer.plan_type.and_then(Loose::fit),
        primary,
        secondary,
        limit_reached,
        credits,
        source: Source::Endpoint,
        fetched_at_s: now_s,
        endpoint_read_at_s: Some(now_s),
        limited_until_s: None,
    })
}

#[derive(Deserialize)]
struct RateLimitsEvent {
    rate_limits: Option<Loose<EventLimits>>,
}

#[derive(Deserialize)]
struct EventLimits {
    primary: Option<Loose<EventWindow>>,
    secondary: Option<Loose<EventWindow>>,
}

#[derive(Deserialize)]
struct EventWindow {
    used_percent: Option<Loose<Number>>,
    window_minutes: Option<Loose<Number>>,
    reset_at: Option<Loose<Number>>,
}

/// The windows a stream's `codex.rate_limits` event carries
/// (`rate_limits{primary, secondary{used_percent, window_minutes,
/// reset_at}}`); both `None` when the payload is not such an event. Pure.
pub fn from_rate_limits_event(payload: &str) -> (Option<Window>, Option<Window>) {
    let limits = crate::wire::object::<RateLimitsEvent>(payload.as_bytes())
        .and_then(|e| e.rate_limits)
        .and_then(Loose::fit);
    let Some(limits) = limits else {
        return (None, None);
    };
    let side = |w: Option<Loose<EventWindow>>| {
        let w = w.and_then(Loose::fit)?;
        Some(Window {
            used_percent: number(w.used_percent)?,
            window_minutes: number(w.window_minutes).map_or(0, |m| m as u64),
            resets_at_s: number(w.reset_at).map(|t| t as i64),
        })
    };
    (side(limits.primary), side(limits.secondary))
}

/// The windows the `x-codex-{primary,secondary}-*` headers describe
/// (`used-percent`, `window-minutes`, `reset-at`), read with `get`.
pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> (Option<Window>, Option<Window>) {
    let side = |name: &str| {
        let field = |f: &str| {
            get(&format!("x-codex-{name}-{f}")).and_then(|v| v.trim().parse::<f64>().ok())
        };
        Some(Window {
            used_percent: field("used-percent")?,
            window_minutes: field("window-minutes").map_or(0, |m| m as u64),
            resets_at_s: field("reset-at").map(|t| t as i64),
        })
    };
    (side("primary"), side("secondary"))
}

/// "; it resets in 2h 5m" for a reset ahead of `now_s`; empty otherwise.
pub fn reset_words(resets_at: Option<i64>, now_s: i64) -> String {
    match resets_at {
        Some(at) if at > now_s => {
            let d = at - now_s;
            format!("; it resets in {}h {}m", d / 3600, d / 60 % 60)
        }
        _ => String::new(),
    }
}

/// Every account's last report, shared by the relay and the Usage RPC.
#[derive(Debug, Default)]
pub struct UsageBook {
    reports: Mutex<HashMap<String, Report>>,
}

impl UsageBook {
    /// The report for `account` while its last read of the endpoint is
    /// younger than [`FRESH_FOR_S`] at `now_s` (with any newer numbers the
    /// headers brought since).
    pub fn fresh(&self, account: &str, now_s: i64) -> Option<Report> {
        self.lock()
            .get(account)
            .filter(|r| {
                r.endpoint_read_at_s
                    .is_some_and(|t| now_s - t < FRESH_FOR_S)
            })
            .cloned()
    }

    /// Stores a read of the usage endpoint, keeping a limit answer's reset
    /// that is still ahead.
    pub fn store(&self, account: &str, mut report: Report) {
        let mut reports = self.lock();
        if let Some(old) = reports.get(account) {
            report.limited_until_s = report.limited_until_s.max(old.limited_until_s);
        }
        reports.insert(account.to_owned(), report);
    }

    /// A limit answer for `account` at `now_s`: nothing is sent to it
    /// before `until_s`.
    pub fn note_limit(&self, account: &str, until_s: i64, now_s: i64) {
        let mut reports = self.lock();
        let report = reports
            .entry(account.to_owned())
            .or_insert_with(|| Report::empty(now_s));
        report.limited_until_s = report.limited_until_s.max(Some(until_s));
        report.limit_reached = true;
    }

    /// Until when `account` is limited at `now_s`; `None` when it has room
    /// (or nothing is known of it).
    pub fn limited_until(&self, account: &str, now_s: i64) -> Option<i64> {
        self.lock().get(account)?.limited_until(now_s)
    }

    /// How much of its fullest window `account` has used; `None` unknown.
    pub fn used_percent(&self, account: &str) -> Option<f64> {
        self.lock().get(account)?.used_percent()
    }

    /// Folds the windows of a relayed response's headers into `account`'s
    /// report: newer numbers for the windows they name, the rest kept.
    pub fn fold_headers(
        &self,
        account: &str,
        windows: (Option<Window>, Option<Window>),
        now_s: i64,
    ) {
        let (primary, secondary) = windows;
        if primary.is_none() && secondary.is_none() {
            return;
        }
        let mut reports = self.lock();
        let report = reports
            .entry(account.to_owned())
            .or_insert_with(|| Report::empty(now_s));
        report.primary = primary.or(report.primary);
        report.secondary = secondary.or(report.secondary);
        report.limit_reached = [report.primary, report.secondary]
            .iter()
            .flatten()
            .any(|w| w.used_percent >= 100.0)
            || report.limited_until(now_s).is_some();
        report.source = Source::Headers;
        report.fetched_at_s = now_s;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Report>> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"{"plan_type":"plus","rate_limit":{"allowed":true,"limit_reached":false,
        "secondary_window":{"used_percent":42.5,"limit_window_seconds":604800,"reset_after_seconds":100,"reset_at":5100}},
        "credits":{"has_credits":true,"unlimited":false,"balance":"12.5"}}"#;

    #[test]
    fn a_limit_holds_until_its_reset_and_a_full_window_until_its_own() {
        let book = UsageBook::default();
        assert_eq!(book.limited_until("a", 100), None, "nothing known: room");
        book.note_limit("a", 500, 100);
        assert_eq!(book.limited_until("a", 100), Some(500));
        assert_eq!(book.limited_until("a", 499), Some(500));
        assert_eq!(book.limited_until("a", 500), None, "the reset has come");
        // A full window limits until its reset, even without an answer.
        let full = Window {
            used_percent: 100.0,
            window_minutes: 300,
            resets_at_s: Some(900),
        };
        book.fold_headers("b", (Some(full), None), 100);
        assert_eq!(book.limited_until("b", 100), Some(900));
        assert_eq!(book.used_percent("b"), Some(100.0));
        assert_eq!(book.limited_until("b", 900), None);
        // A read of the endpoint keeps a limit answer still ahead.
        let read = from_endpoint(ANSWER.as_bytes(), 100).expect("a report");
        book.store("a", read);
        assert_eq!(book.limited_until("a", 100), Some(500));
        assert_eq!(book.used_percent("a"), Some(42.5));
    }

    #[test]
    fn a_rate_limits_event_gives_its_windows_and_anything_else_none() {
        let (p, s) = from_rate_limits_event(
            r#"{"type":"codex.rate_limits","rate_limits":{"primary":{"used_percent":12.5,"window_minutes":300,"reset_at":900},"secondary":null}}"#,
        );
        assert_eq!(
            p,
            Some(Window {
                used_percent: 12.5,
                window_minutes: 300,
                resets_at_s: Some(900)
            })
        );
        assert_eq!(s, None, "a null window is missing, not 0 %");
        for other in [
            r#"{"type":"response.created"}"#,
            "[]",
            "{",
            r#"{"rate_limits":7}"#,
        ] {
            assert_eq!(from_rate_limits_event(other), (None, None), "{other}");
        }
    }

    #[test]
    fn a_missing_window_is_none_not_zero() {
        let r = from_endpoint(ANSWER.as_bytes(), 5000).expect("a report");
        assert_eq!(r.primary, None);
        let w = r.secondary.expect("the weekly window");
        assert_eq!(
            (w.used_percent, w.window_minutes, w.resets_at_s),
            (42.5, 10_080, Some(5100))
        );
        assert_eq!(r.plan.as_deref(), Some("plus"));
        assert!(!r.limit_reached);
        assert_eq!(r.credits.expect("credits").balance, "12.5");
        assert_eq!(r.source, Source::Endpoint);
    }

    #[test]
    fn reset_after_is_used_when_reset_at_is_missing_and_garbage_is_none() {
        let body =
            br#"{"rate_limit":{"primary_window":{"used_percent":"7","reset_after_seconds":60}}}"#;
        let r = from_endpoint(body, 1_000).expect("a report");
        assert_eq!(r.primary.and_then(|w| w.resets_at_s), Some(1_060));
        assert_eq!(from_endpoint(b"[1,2]", 0), None);
        assert_eq!(from_endpoint(b"not json", 0), None);
    }

    #[test]
    fn headers_fold_into_the_book_and_only_the_endpoint_is_fresh() {
        let headers = [
            ("x-codex-primary-used-percent", "100"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-at", "9000"),
        ];
        let get = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let windows = from_headers(get);
        assert_eq!(windows.1, None, "no secondary header, no window");
        let book = UsageBook::default();
        book.store(
            "acc",
            from_endpoint(ANSWER.as_bytes(), 5000).expect("report"),
        );
        assert!(book.fresh("acc", 5059).is_some());
        assert!(book.fresh("acc", 5060).is_none(), "60 s old is stale");
        book.fold_headers("acc", windows, 5010);
        let r = book.fresh("acc", 5010).expect("a report");
        assert_eq!(r.primary.map(|w| w.used_percent), Some(100.0));
        assert_eq!(r.secondary.map(|w| w.used_percent), Some(42.5), "kept");
        assert!(r.limit_reached);
        assert_eq!(r.source, Source::Headers);
        let served = book.fresh("acc", 5011).expect("the read is still fresh");
        assert_eq!(
            served.primary.map(|w| w.used_percent),
            Some(100.0),
            "with the headers"
        );
        assert!(
            book.fresh("acc", 5060).is_none(),
            "headers do not make a read younger"
        );
        let other = UsageBook::default();
        other.fold_headers("b", windows, 1);
        assert!(
            other.fresh("b", 2).is_none(),
            "headers alone are not a read"
        );
    }
}
