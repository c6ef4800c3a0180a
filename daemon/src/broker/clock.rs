//! The broker's time, from one place.
//!
//! Expiry is wall-clock time (`expires` in `auth.json` is epoch ms), so the
//! broker reads the system clock. Tests need more: a clock that only moves
//! when told, so that refresh-ahead, backoff and a laptop's suspend run in
//! microseconds under `tokio::time::pause()`. [`Clock::paused_at`] is that:
//! wall time follows tokio's (virtual) monotonic clock from a fixed epoch,
//! and [`Clock::jump`] moves wall time alone, as a suspend does.
//!
//! Sleeps toward a wall-clock deadline never trust the monotonic clock for
//! long: it stops during a suspend (Linux `CLOCK_MONOTONIC`), so a single
//! long sleep would wake late by the length of the suspend. [`Clock::sleep_until_ms`]
//! wakes at least every [`RECHECK`] and compares with the wall clock again.

#[cfg(test)]
use std::sync::Arc;
#[cfg(test)]
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest a sleep toward a wall-clock deadline goes without looking at
/// the wall clock again.
pub const RECHECK: Duration = Duration::from_secs(60);

/// Where the broker's time comes from.
#[derive(Debug, Clone, Default)]
pub struct Clock(Source);

#[derive(Debug, Clone, Default)]
enum Source {
    #[default]
    System,
    #[cfg(test)]
    Paused(Arc<Paused>),
}

#[cfg(test)]
#[derive(Debug)]
struct Paused {
    epoch_ms: i64,
    origin: tokio::time::Instant,
    jumped_ms: AtomicI64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    #[cfg(test)]
    /// A clock that reads `epoch_ms` now and then moves with tokio's clock
    /// (virtual under `tokio::time::pause()`), plus any [`Clock::jump`].
    pub fn paused_at(epoch_ms: i64) -> Clock {
        Clock(Source::Paused(Arc::new(Paused {
            epoch_ms,
            origin: tokio::time::Instant::now(),
            jumped_ms: AtomicI64::new(0),
        })))
    }

    #[cfg(test)]
    /// Moves wall time forward by `ms` without moving the monotonic clock:
    /// what a suspend and resume looks like to the process. A no-op on the
    /// system clock.
    pub fn jump(&self, ms: i64) {
        match &self.0 {
            Source::System => {}
            Source::Paused(p) => {
                p.jumped_ms.fetch_add(ms, Ordering::SeqCst);
            }
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => system_now_ms(),
            #[cfg(test)]
            Source::Paused(p) => {
                let moved = i64::try_from(p.origin.elapsed().as_millis()).unwrap_or(i64::MAX);
                p.epoch_ms
                    .saturating_add(moved)
                    .saturating_add(p.jumped_ms.load(Ordering::SeqCst))
            }
        }
    }

    /// Sleeps until the wall clock reads `at_ms`, checking it at least every
    /// [`RECHECK`].
    pub async fn sleep_until_ms(&self, at_ms: i64) {
        loop {
            let left = at_ms.saturating_sub(self.now_ms());
            if left <= 0 {
                return;
            }
            let step = Duration::from_millis(u64::try_from(left).unwrap_or(0)).min(RECHECK);
            tokio::time::sleep(step).await;
        }
    }
}

/// The system clock in ms since the epoch; 0 before 1970.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: i64 = 1_800_000_000_000;

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_moves_only_when_told() {
        let clock = Clock::paused_at(EPOCH);
        assert_eq!(clock.now_ms(), EPOCH);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.now_ms(), EPOCH + 5_000);
        clock.jump(3_600_000);
        assert_eq!(clock.now_ms(), EPOCH + 5_000 + 3_600_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_sees_a_suspend_within_a_minute() {
        let clock = Clock::paused_at(EPOCH);
        let due = EPOCH + 3 * 3_600_000;
        let started = tokio::time::Instant::now();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until_ms(due).await }
        });
        // Ten minutes pass, then the laptop sleeps through the deadline.
        tokio::time::sleep(Duration::from_secs(600)).await;
        clock.jump(3 * 3_600_000);
        sleeper.await.unwrap();
        let waited = started.elapsed();
        // Ten minutes, then at most one minute to notice.
        assert!(
            waited <= Duration::from_secs(660),
            "woke {waited:?} after the start, not at the old monotonic deadline"
        );
        assert!(clock.now_ms() >= due);
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_deadline_returns_at_once() {
        let clock = Clock::paused_at(EPOCH);
        let started = tokio::time::Instant::now();
        clock.sleep_until_ms(EPOCH - 1).await;
        clock.sleep_until_ms(i64::MIN).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::system().now_ms() > 1_577_836_800_000);
        Clock::system().jump(5);
    }
}
