//! An error and every cause under it, on one line.
//!
//! The daemon's own error types print their cause in their message and do
//! not also expose it as `source()`, so a message is never said twice.
//! Errors from libraries (reqwest, tonic) do the opposite: their message is
//! short and the detail is in `source()`. Where one of them is wrapped, its
//! whole chain is printed with [`line`].

use std::error::Error;

/// `e`'s message, then each cause's, joined by `": "`; a cause whose text
/// the line already ends with is not repeated.
pub fn line(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out = format!("{out}: {text}");
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_said_in_order() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(line(&e), "outer: inner");
        assert_eq!(line(&std::io::Error::other("alone")), "alone");
    }
}
