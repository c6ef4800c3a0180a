//! The one backoff every retry in the daemon uses: a pause that starts at
//! `first`, doubles with each failure, and stops growing at `max`.
//!
//! The accept loops (gRPC and the login callback), pi's lock, the Codex
//! relay and the refresh broker each choose their own `first` and `max`;
//! the rule is this one. Pure: nothing here sleeps or reads a clock.

use std::time::Duration;

/// A pause that doubles from `first` up to `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The pause to take now; the next one is twice as long, up to `max`.
    pub fn fail(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        now
    }

    /// A success: the next failure starts from `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The pause after `failures` earlier failures (0: the first pause),
    /// for callers that count their attempts instead of keeping a
    /// [`Backoff`].
    pub fn nth(first: Duration, max: Duration, failures: u32) -> Duration {
        first.saturating_mul(1u32 << failures.min(31)).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn it_doubles_up_to_the_max_and_starts_over_after_a_reset() {
        let mut b = Backoff::new(10 * MS, 1000 * MS);
        let steps: Vec<u128> = (0..9).map(|_| b.fail().as_millis()).collect();
        assert_eq!(steps, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.fail(), 10 * MS);
    }

    #[test]
    fn nth_is_the_same_rule_counted() {
        let mut b = Backoff::new(250 * MS, 4000 * MS);
        for n in 0..40 {
            assert_eq!(Backoff::nth(250 * MS, 4000 * MS, n), b.fail(), "{n}");
        }
        assert_eq!(Backoff::nth(MS, Duration::MAX, u32::MAX), MS * (1 << 31));
    }
}
