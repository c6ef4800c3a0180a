//! The one log throttle: a line repeated a million times (an accept loop at
//! the descriptor limit, a flood of refused connections) costs one line per
//! window, which says how many were held back. Pure: the caller passes the
//! time in.

use std::time::{Duration, Instant};

/// Lets a repeated log line through once per window.
#[derive(Debug, Clone)]
pub struct Throttle {
    window: Duration,
    open_at: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub fn new(window: Duration) -> Throttle {
        Throttle {
            window,
            open_at: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be written at `now`, `n` being how many
    /// were held back since the last one; `None` to stay quiet.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.open_at.is_some_and(|t| now < t) {
            self.suppressed += 1;
            return None;
        }
        self.open_at = Some(now + self.window);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_and_the_rest_counted() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(t.admit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.admit(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(t.admit(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.admit(t0 + Duration::from_secs(30)), Some(1));
    }
}
