//! Reading the events of a Responses stream (docs/PROTOCOL.md §3), as pure
//! functions: the type of each, the usage of the terminal one, and which
//! headers carry the limits. The same events come over SSE and WebSocket.

use std::borrow::Cow;

use serde::Deserialize;

use crate::wire::Loose;

/// How a response began: its status and the limits its headers carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseInfo {
    /// The HTTP status; 200 for a WebSocket response, whose upgrade's 101
    /// is the transport's.
    pub http_status: u16,
    /// Rate-limit headers, lower-cased names.
    pub rate_limits: Vec<(String, String)>,
}

impl ResponseInfo {
    pub fn of(http_status: u16, headers: &http::HeaderMap) -> ResponseInfo {
        ResponseInfo {
            http_status,
            rate_limits: headers
                .iter()
                .filter(|(n, _)| is_rate_limit_header(n.as_str()))
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
}

/// Whether a header is one clients should see (docs/PROTOCOL.md §3).
pub fn is_rate_limit_header(name: &str) -> bool {
    name.starts_with("x-codex-")
        || name == "retry-after"
        || name == "retry-after-ms"
        || (name.starts_with("x-") && (name.contains("-primary-") || name.contains("-secondary-")))
}

/// The one field read from every event; the rest is decoded only for the
/// few events that need it (terminal and failed ones).
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Loose<Cow<'a, str>>>,
}

/// The type of an event (its JSON `payload`): `Some("")` when it has none,
/// `None` when the payload is not a JSON object.
pub fn event_type(payload: &str) -> Option<String> {
    let head: Head<'_> = crate::wire::object(payload.as_bytes())?;
    Some(
        head.kind
            .and_then(Loose::fit)
            .map(Cow::into_owned)
            .unwrap_or_default(),
    )
}

/// A terminal event, as far as its usage goes.
#[derive(Deserialize)]
struct TerminalEvent {
    response: Option<Loose<TerminalResponse>>,
}

#[derive(Deserialize)]
struct TerminalResponse {
    usage: Option<Loose<UsageBody>>,
}

#[derive(Deserialize)]
struct UsageBody {
    input_tokens: Option<Loose<u64>>,
    output_tokens: Option<Loose<u64>>,
    input_tokens_details: Option<Loose<UsageDetails>>,
}

#[derive(Deserialize)]
struct UsageDetails {
    cached_tokens: Option<Loose<u64>>,
}

/// Usage of a terminal event (its JSON `payload`): `response.usage`.
pub fn usage_of(payload: &str) -> Option<Usage> {
    let event: TerminalEvent = crate::wire::object(payload.as_bytes())?;
    let u = event.response?.fit()?.usage?.fit()?;
    let n = |v: Option<Loose<u64>>| v.and_then(Loose::fit).unwrap_or(0);
    Some(Usage {
        input_tokens: n(u.input_tokens),
        output_tokens: n(u.output_tokens),
        cached_input_tokens: n(u
            .input_tokens_details
            .and_then(Loose::fit)
            .and_then(|d| d.cached_tokens)),
    })
}

/// Whether an event type ends a response successfully.
pub fn is_terminal(event_type: &str) -> bool {
    matches!(
        event_type,
        "response.completed" | "response.done" | "response.incomplete"
    )
}

/// The stream event that carries the account's rate-limit windows.
pub const RATE_LIMITS_EVENT: &str = "codex.rate_limits";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rate_limit_headers_are_recognised() {
        for h in [
            "x-codex-primary-used-percent",
            "x-codex-credits-balance",
            "retry-after",
            "retry-after-ms",
            "x-foo-primary-used-percent",
            "x-foo-secondary-reset-at",
        ] {
            assert!(is_rate_limit_header(h), "{h}");
        }
        for h in ["content-type", "x-request-id", "authorization"] {
            assert!(!is_rate_limit_header(h), "{h}");
        }
    }

    #[test]
    fn usage_comes_from_the_terminal_event() {
        let data = json!({"type":"response.completed","response":{"usage":{"input_tokens":10,"output_tokens":3,"input_tokens_details":{"cached_tokens":4}}}});
        assert_eq!(
            usage_of(&data.to_string()),
            Some(Usage {
                input_tokens: 10,
                output_tokens: 3,
                cached_input_tokens: 4
            })
        );
        // A usage of an odd shape counts as zeros, not as a broken event.
        let odd = r#"{"type":"response.completed","response":{"usage":{"input_tokens":"10","output_tokens":2}}}"#;
        assert_eq!(
            usage_of(odd).map(|u| (u.input_tokens, u.output_tokens)),
            Some((0, 2))
        );
        assert_eq!(usage_of(r#"{"type":"response.completed"}"#), None);
    }

    #[test]
    fn the_event_type_is_read_without_decoding_the_rest() {
        assert_eq!(
            event_type(r#"{"type":"response.output_text.delta","delta":"h\u00e9"}"#).as_deref(),
            Some("response.output_text.delta")
        );
        assert_eq!(
            event_type(r#"{"type":"resp\u006fnse.done"}"#).as_deref(),
            Some("response.done"),
            "an escaped type is decoded"
        );
        assert_eq!(event_type(r#"{"delta":"x"}"#).as_deref(), Some(""));
        assert_eq!(event_type(r#"{"type":7}"#).as_deref(), Some(""));
        assert_eq!(event_type("[DONE]"), None);
        assert_eq!(event_type(r#"{"type":"x""#), None, "truncated JSON");
        assert!(
            is_terminal("response.completed")
                && is_terminal("response.done")
                && is_terminal("response.incomplete")
        );
        assert!(!is_terminal("response.output_text.delta"));
    }
}
