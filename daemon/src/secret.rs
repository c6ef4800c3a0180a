//! A wrapper that keeps secrets out of logs.
//!
//! Access tokens, refresh tokens, codes and verifiers are all `Secret`s. Its
//! `Debug` and `Display` print a fixed placeholder, so a secret cannot reach a
//! log line, an error message or a panic through formatting. The only way to
//! the text is [`Secret::expose`], which is easy to grep for in review.

use std::fmt;

/// A value whose formatting never reveals it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret, consumed. Same rule as [`Secret::expose`].
    pub fn into_exposed(self) -> T {
        self.0
    }

    /// The secret itself. Call this only where the value leaves the process
    /// on purpose: an RPC reply, an upstream request, the credential store.
    pub fn expose(&self) -> &T {
        &self.0
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

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::from("eyJhbGciOi.secret-token");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s:#?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", Some(&s)).contains("secret-token"));
        assert_eq!(s.expose(), "eyJhbGciOi.secret-token");
    }
}
