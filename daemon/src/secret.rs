//! A wrapper that keeps secrets out of logs and out of freed memory.
//!
//! Access tokens, refresh tokens, codes and verifiers are all `Secret`s. Its
//! `Debug` and `Display` print a fixed placeholder, so a secret cannot reach a
//! log line, an error message or a panic through formatting. The only way to
//! the text is [`Secret::expose`], which is easy to grep for in review.
//!
//! Dropping a `Secret` overwrites its bytes (`zeroize`), so a spent refresh
//! token does not linger in freed heap memory where a core dump or a later
//! allocation could find it.

use std::fmt;

use zeroize::Zeroize;

/// A value whose formatting never reveals it, wiped when dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret, consumed. Same rule as [`Secret::expose`]. The value
    /// leaves this wrapper unwiped: the caller now owns it.
    pub fn into_exposed(mut self) -> T
    where
        T: Default,
    {
        std::mem::take(&mut self.0)
    }

    /// The secret itself. Call this only where the value leaves the process
    /// on purpose: an RPC reply, an upstream request, the credential store.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl From<String> for Secret<String> {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether a library's log event at `level` from `target` would print a
/// secret whatever its text: the WebSocket library traces the whole upgrade
/// request, `Authorization` header included. The daemon's logging drops
/// these whatever `RUST_LOG` asks for.
pub fn library_event_leaks(target: &str, level: tracing::Level) -> bool {
    level == tracing::Level::TRACE && target.starts_with("tungstenite::handshake")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_websocket_handshake_trace_is_dropped_and_nothing_else() {
        use tracing::Level;
        assert!(library_event_leaks(
            "tungstenite::handshake::client",
            Level::TRACE
        ));
        assert!(!library_event_leaks(
            "tungstenite::handshake::client",
            Level::DEBUG
        ));
        assert!(!library_event_leaks("piauthd::codex::relay", Level::TRACE));
    }

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::from("eyJhbGciOi.secret-token");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s:#?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", Some(&s)).contains("secret-token"));
        assert_eq!(s.expose(), "eyJhbGciOi.secret-token");
    }

    /// Records whether it was wiped, so the test sees what Drop did.
    #[derive(Default)]
    struct Probe(std::sync::Arc<std::sync::atomic::AtomicBool>);

    impl Zeroize for Probe {
        fn zeroize(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn dropping_wipes_the_value() {
        let wiped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        drop(Secret::new(Probe(wiped.clone())));
        assert!(wiped.load(std::sync::atomic::Ordering::SeqCst));
        // And a String is emptied by the same call Drop makes.
        let mut s = String::from("rt-spent-0123456789");
        s.zeroize();
        assert!(s.is_empty());
    }

    #[test]
    fn into_exposed_hands_over_the_value() {
        let s = Secret::from("abc");
        assert_eq!(s.into_exposed(), "abc");
    }
}
