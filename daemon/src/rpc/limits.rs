//! The numbers that bound the gRPC listener, and the small pure policies
//! that apply them: accept backoff, rate-limited logging, the descriptor
//! budget.
//!
//! The socket is private to the user, so whoever floods it is the user's own
//! process gone wrong (or a program running as the user). The daemon must
//! still not spin a core, grow without bound, or fill the disk with logs:
//! the user's other pi sessions depend on it.

use std::time::Duration;

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

/// The pause after the first failing `accept`, doubling up to
/// [`ACCEPT_PAUSE_MAX`]: EMFILE and ENFILE persist until something closes,
/// and retrying at once would spin a core.
pub const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(10);
/// The longest pause between failing accepts.
pub const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

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
