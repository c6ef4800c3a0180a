//! The listener's limits: how long to pause after an accept error, and how
//! often a repeated problem may be logged. Pure, with the clock passed in.
//!
//! At the descriptor limit `accept` fails at once and keeps failing, so a
//! loop that retries immediately spins a core and writes a log line per
//! turn. The backoff grows from [`FIRST_PAUSE`] to [`LONGEST_PAUSE`] while
//! the failures last ([`crate::backoff`]); [`crate::throttle`] lets one log
//! line through per window and counts the rest.

use std::io;
use std::time::Duration;

use crate::backoff::Backoff;

/// The pause after the first resource error.
pub const FIRST_PAUSE: Duration = Duration::from_millis(20);
/// The longest pause: a freed descriptor is used within this.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// The pause after an error that concerns one connection only (it was
/// reset before we took it): short, but never a busy loop.
pub const CONNECTION_PAUSE: Duration = Duration::from_millis(1);

/// Whether an accept error means the process or system ran out of
/// something (descriptors, buffers, memory), which retrying will not fix.
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The growing pause between failing accepts: [`FIRST_PAUSE`] doubling to
/// [`LONGEST_PAUSE`] while resources run out, [`CONNECTION_PAUSE`] for an
/// error that concerns one connection.
#[derive(Debug, Clone)]
pub struct AcceptBackoff(Backoff);

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff(Backoff::new(FIRST_PAUSE, LONGEST_PAUSE))
    }
}

impl AcceptBackoff {
    /// The pause to take after `e`.
    pub fn after(&mut self, e: &io::Error) -> Duration {
        if is_exhaustion(e) {
            self.0.fail()
        } else {
            CONNECTION_PAUSE
        }
    }

    /// An accept succeeded: the next failure starts small again.
    pub fn reset(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn exhaustion_backs_off_up_to_a_second() {
        let mut b = AcceptBackoff::default();
        let pauses: Vec<u64> = (0..9)
            .map(|_| b.after(&os(libc::EMFILE)).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.after(&os(libc::ENFILE)), FIRST_PAUSE);
    }

    #[test]
    fn a_connection_error_pauses_briefly_and_keeps_the_backoff() {
        let mut b = AcceptBackoff::default();
        b.after(&os(libc::EMFILE));
        assert_eq!(b.after(&os(libc::ECONNABORTED)), CONNECTION_PAUSE);
        assert_eq!(b.after(&os(libc::EMFILE)), FIRST_PAUSE * 2);
        assert!(!is_exhaustion(&io::Error::other("x")));
        assert!(is_exhaustion(&os(libc::ENOBUFS)));
    }
}
