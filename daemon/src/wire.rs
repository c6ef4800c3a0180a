//! Leniency shared by the JSON the daemon reads from its peers (the issuer,
//! the Codex backend, tokens' claims, pi's `auth.json`).
//!
//! Each wire shape is a serde struct next to the code that reads it; these
//! are the two field types they share. Peers are not always strict: numbers
//! arrive as floats or strings, and an unexpected shape in one field must
//! not make the whole answer unusable (a rotated token would be lost).

use serde::Deserialize;
use serde::de::IgnoredAny;

/// A field taken when it has the expected shape and ignored otherwise.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Loose<T> {
    Fit(T),
    Other(IgnoredAny),
}

impl<T> Loose<T> {
    /// The value, when it had the expected shape.
    pub fn fit(self) -> Option<T> {
        match self {
            Loose::Fit(v) => Some(v),
            Loose::Other(_) => None,
        }
    }
}

impl Loose<String> {
    /// A non-empty string, or nothing.
    pub fn text(self) -> Option<String> {
        self.fit().filter(|s| !s.is_empty())
    }
}

/// A whole number sent as an integer, a float or a numeric string: the one
/// lenient number of every wire shape.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Number {
    Int(i64),
    Float(f64),
    Text(String),
    Other(IgnoredAny),
}

impl Number {
    /// The value, truncated toward zero (saturating), or `None` for a
    /// non-finite float, a non-numeric string or another type.
    pub fn whole(&self) -> Option<i64> {
        match self {
            Number::Int(n) => Some(*n),
            // `as` saturates: a huge float becomes i64::MAX, not UB.
            Number::Float(f) => f.is_finite().then_some(*f as i64),
            Number::Text(s) => {
                let s = s.trim();
                s.parse::<i64>()
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().and_then(|f| Number::Float(f).whole()))
            }
            Number::Other(_) => None,
        }
    }

    /// The value as a float (a percentage), or `None` for a non-finite
    /// one, a non-numeric string or another type.
    pub fn real(&self) -> Option<f64> {
        let v = match self {
            Number::Int(n) => *n as f64,
            Number::Float(f) => *f,
            Number::Text(s) => s.trim().parse::<f64>().ok()?,
            Number::Other(_) => return None,
        };
        v.is_finite().then_some(v)
    }
}

/// Reads `T` from JSON bytes that hold an object. serde would also fill a
/// struct from an array, positionally; no peer means that.
pub fn object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Shape {
        n: Option<Number>,
        s: Option<Loose<String>>,
    }

    fn shape(json: &str) -> Shape {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn numbers_come_as_integers_floats_or_text() {
        let cases = [
            (r#"{"n": 60}"#, Some(60)),
            (r#"{"n": -3}"#, Some(-3)),
            (r#"{"n": 60.9}"#, Some(60)),
            (r#"{"n": 1e300}"#, Some(i64::MAX)),
            (r#"{"n": " 42 "}"#, Some(42)),
            (r#"{"n": "7.5"}"#, Some(7)),
            (r#"{"n": "soon"}"#, None),
            (r#"{"n": "NaN"}"#, None),
            (r#"{"n": true}"#, None),
            (r#"{"n": {"a": 1}}"#, None),
            (r#"{"n": null}"#, None),
        ];
        for (json, want) in cases {
            assert_eq!(shape(json).n.and_then(|n| n.whole()), want, "{json}");
        }
        assert!(shape("{}").n.is_none());
    }

    #[test]
    fn only_objects_fill_a_struct() {
        assert!(object::<Shape>(br#" {"n": 1}"#).is_some());
        assert!(object::<Shape>(br#"[1, "x"]"#).is_none());
        assert!(object::<Shape>(b"").is_none());
        assert!(object::<Shape>(b"{").is_none());
    }

    #[test]
    fn an_unexpected_shape_is_ignored_not_fatal() {
        assert_eq!(
            shape(r#"{"s": "x"}"#).s.and_then(Loose::text).as_deref(),
            Some("x")
        );
        assert_eq!(shape(r#"{"s": ""}"#).s.and_then(Loose::text), None);
        assert_eq!(shape(r#"{"s": 5}"#).s.and_then(Loose::text), None);
        assert_eq!(shape(r#"{"s": [1]}"#).s.and_then(Loose::fit), None);
    }
}
