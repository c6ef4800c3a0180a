//! The numbers that bound the gRPC listener, and the small pure policies
//! that apply them: accept backoff, rate-limited logging, the descriptor
//! budget.
//!
//! The socket is private to the user, so whoever floods it is the user's own
//! process gone wrong (or a program running as the user). The daemon must
//! still not spin a core, grow without bound, or fill the disk with logs:
//! the user's other pi sessions depend on it.

use std::time::{Duration, Instant};

/// Most connections served at once. Each is a descriptor and a little
/// memory. A few hundred pi sessions and tools at once do happen on a big
/// machine (the suite's load test runs 280 clients), so the cap is 1,024,
/// within the descriptor limit.
pub const MAX_CONNECTIONS: usize = 1024;
/// Fewest connections served, however low the descriptor limit.
pub const MIN_CONNECTIONS: usize = 8;
/// Descriptors kept for everything but gRPC connections: the store, the
/// watch, the callback listener, upstream HTTPS connections.
pub const RESERVED_DESCRIPTORS: u64 = 128;
/// HTTP/2 streams one connection may have open (SETTINGS_MAX_CONCURRENT_
/// STREAMS). A WatchToken stream counts until it ends.
pub const STREAMS_PER_CONNECTION: u32 = 64;
/// WatchToken streams open at once over all connections.
pub const MAX_WATCHERS: usize = 1024;
/// Completions relayed upstream at once.
pub const MAX_COMPLETIONS: usize = 32;
/// HTTP/2 PING interval: finds peers that vanished without closing.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// How long a PING may go unanswered before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Repeated errors of one kind are logged at most once per this period.
pub const LOG_PERIOD: Duration = Duration::from_secs(10);

/// The soft descriptor limit to ask for: the hard limit, bounded where the
/// platform refuses more (macOS takes at most `OPEN_MAX`).
pub fn nofile_target(soft: u64, hard: u64) -> u64 {
    #[cfg(target_os = "macos")]
    let hard = hard.min(10_240);
    soft.max(hard)
}

/// How many connections fit in the descriptor limit `nofile`, leaving
/// [`RESERVED_DESCRIPTORS`] for the rest of the daemon.
pub fn connection_cap(nofile: u64) -> usize {
    let spare = usize::try_from(nofile.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
    spare.clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// The current soft descriptor limit (Linux and macOS); `None` if unknown.
pub fn current_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// Exponential backoff for a failing `accept`: EMFILE and ENFILE persist
/// until something closes, and retrying at once would spin a core.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The pause before the next attempt; each failure doubles it.
    pub fn fail(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    /// A success: the next failure starts over.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Lets one line through per period and counts the rest, so that an error
/// repeated a million times costs one line every [`LOG_PERIOD`].
#[derive(Debug, Clone)]
pub struct RateLimit {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(period: Duration) -> RateLimit {
        RateLimit {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// Records one occurrence at `now`. `Some(n)` means log now, saying
    /// that `n` more happened since the last line; `None` means stay quiet.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_10_ms_to_1_s_and_resets() {
        let mut b = Backoff::new();
        let steps: Vec<u128> = (0..9).map(|_| b.fail().as_millis()).collect();
        assert_eq!(steps, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.fail(), Duration::from_millis(10));
    }

    #[test]
    fn rate_limit_lets_one_line_per_period_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Duration::from_secs(10));
        assert_eq!(r.note(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(r.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(r.note(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(r.note(t0 + Duration::from_secs(11)), None);
        assert_eq!(r.note(t0 + Duration::from_secs(25)), Some(1));
    }

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        assert_eq!(connection_cap(1024), 896);
        assert_eq!(connection_cap(4096), MAX_CONNECTIONS);
        assert_eq!(connection_cap(300), 172);
        assert_eq!(connection_cap(64), MIN_CONNECTIONS);
        assert_eq!(connection_cap(u64::MAX), MAX_CONNECTIONS);
    }

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_one_never_down() {
        assert_eq!(nofile_target(1024, 4096), 4096);
        assert_eq!(nofile_target(1024, 1024), 1024);
        assert_eq!(nofile_target(2048, 1024), 2048);
    }
}
