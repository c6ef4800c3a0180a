//! What went wrong with a completion, sorted so the client gets a status
//! that says what to do (docs/PROTOCOL.md §3). Pure functions.

use serde::Deserialize;

use crate::wire::{Loose, Number};

/// A failed completion. Messages are for people and never hold a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodexError {
    /// The plan's usage limit (or its rate limit) is reached.
    #[error("{message}")]
    UsageLimit {
        message: String,
        plan: Option<String>,
        /// Epoch seconds.
        resets_at: Option<i64>,
        retry_after_secs: Option<u64>,
    },
    /// The plan does not include Codex.
    #[error("{message}")]
    PlanExcludesCodex {
        message: String,
        plan: Option<String>,
    },
    /// Still 401 after one forced refresh.
    #[error(
        "the Codex backend rejected the token even after a refresh ({message}): run `pi-authctl login`"
    )]
    Unauthorized { message: String },
    #[error("the conversation is longer than the model's context window: {message}")]
    ContextLength { message: String },
    #[error("the request was refused: {message}")]
    InvalidPrompt { message: String },
    #[error("the Codex backend is overloaded; try again shortly: {message}")]
    Overloaded { message: String },
    /// A 5xx, or another upstream failure before any event.
    #[error("the Codex backend failed (HTTP {status}): {message}")]
    Upstream { status: u16, message: String },
    /// A 4xx other than the above.
    #[error("the Codex backend refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the response stream ended after {events} events without completing")]
    Incomplete { events: u64 },
    #[error("no event from the Codex backend for {secs}s; gave up")]
    Idle { secs: u64 },
    #[error("the connection to the Codex backend failed{}: {message}", after(*.events))]
    Network { message: String, events: u64 },
    /// A `response.failed` or `error` event with an unknown code.
    #[error("the response failed ({code}): {message}")]
    Failed { code: String, message: String },
}

fn after(events: u64) -> String {
    if events == 0 {
        String::new()
    } else {
        format!(" after {events} events")
    }
}

/// An error object of the Codex backend, in HTTP bodies and in events.
#[derive(Debug, Default, Deserialize)]
struct ErrorObject {
    code: Option<Loose<Label>>,
    #[serde(rename = "type")]
    kind: Option<Loose<Label>>,
    message: Option<Loose<Label>>,
    plan_type: Option<Loose<Label>>,
    resets_at: Option<Number>,
}

/// A code or message: text, or a number some answers send as a code.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Label {
    Text(String),
    Int(i64),
}

/// An HTTP error body: `{"error": {...}}` or `{"error": "code"}`.
#[derive(Deserialize)]
struct HttpBody {
    error: Option<Loose<ErrorMember>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorMember {
    Object(ErrorObject),
    Code(String),
}

/// A `response.failed` event: the error sits under `response`.
#[derive(Deserialize)]
struct FailedEvent {
    response: Option<Loose<FailedResponse>>,
}

#[derive(Deserialize)]
struct FailedResponse {
    error: Option<Loose<ErrorObject>>,
}

/// An `error` event: the error under `error`, or the event itself.
#[derive(Deserialize)]
struct ErrorEvent {
    error: Option<Loose<ErrorObject>>,
    #[serde(flatten)]
    inline: ErrorObject,
}

/// Printable text for people, at most 500 characters.
fn text(v: Option<Loose<Label>>) -> Option<String> {
    let s = match v.and_then(Loose::fit)? {
        Label::Text(s) => s,
        Label::Int(n) => n.to_string(),
    };
    Some(s.chars().filter(|c| !c.is_control()).take(500).collect())
}

/// "resets in 2h 5m (at <epoch>)" for people.
/// Classifies a non-2xx answer to `POST /codex/responses`.
pub fn from_http(
    status: u16,
    body: &[u8],
    retry_after_secs: Option<u64>,
    now_secs: i64,
) -> CodexError {
    let member = crate::wire::object::<HttpBody>(body)
        .and_then(|b| b.error)
        .and_then(Loose::fit);
    let (err, bare_code) = match member {
        Some(ErrorMember::Object(err)) => (err, None),
        Some(ErrorMember::Code(code)) => (ErrorObject::default(), Some(code)),
        None => (ErrorObject::default(), None),
    };
    let code = text(err.code)
        .or_else(|| text(err.kind))
        .or(bare_code)
        .unwrap_or_default();
    let message = text(err.message).unwrap_or_else(|| format!("HTTP {status}"));
    let plan = text(err.plan_type);
    let resets_at = err.resets_at.and_then(|n| n.whole());
    match code.as_str() {
        "usage_not_included" => CodexError::PlanExcludesCodex {
            message: format!(
                "your ChatGPT plan{} does not include Codex: {message}",
                plan.as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ),
            plan,
        },
        "usage_limit_reached" | "rate_limit_exceeded" => CodexError::UsageLimit {
            message: format!(
                "the usage limit{} is reached{}: {message}",
                plan.as_deref()
                    .map(|p| format!(" of your {p} plan"))
                    .unwrap_or_default(),
                crate::usage::reset_words(resets_at, now_secs)
            ),
            plan,
            resets_at,
            retry_after_secs,
        },
        _ if status == 429 => CodexError::UsageLimit {
            message: format!(
                "rate limited{}: {message}",
                crate::usage::reset_words(resets_at, now_secs)
            ),
            plan,
            resets_at,
            retry_after_secs,
        },
        "context_length_exceeded" => CodexError::ContextLength { message },
        "invalid_prompt" => CodexError::InvalidPrompt { message },
        _ if status >= 500 => CodexError::Upstream { status, message },
        _ => CodexError::Refused { status, message },
    }
}

/// The error carried by a `response.failed` or `error` event (its JSON
/// `payload`), if the event is one.
pub fn from_event(event_type: &str, payload: &str) -> Option<CodexError> {
    let bytes = payload.as_bytes();
    let err = match event_type {
        "response.failed" => crate::wire::object::<FailedEvent>(bytes)
            .and_then(|e| e.response)
            .and_then(Loose::fit)
            .and_then(|r| r.error)
            .and_then(Loose::fit),
        "error" => crate::wire::object::<ErrorEvent>(bytes)
            .map(|e| e.error.and_then(Loose::fit).unwrap_or(e.inline)),
        _ => return None,
    }
    .unwrap_or_default();
    let code = text(err.code).unwrap_or_default();
    let message = text(err.message).unwrap_or_else(|| "no message".into());
    Some(match code.as_str() {
        "context_length_exceeded" => CodexError::ContextLength { message },
        "insufficient_quota" => CodexError::UsageLimit {
            message: format!("out of quota: {message}"),
            plan: None,
            resets_at: None,
            retry_after_secs: None,
        },
        "usage_not_included" => CodexError::PlanExcludesCodex {
            message: format!("your ChatGPT plan does not include Codex: {message}"),
            plan: None,
        },
        "invalid_prompt" => CodexError::InvalidPrompt { message },
        "server_is_overloaded" | "slow_down" => CodexError::Overloaded { message },
        "rate_limit_exceeded" => CodexError::UsageLimit {
            retry_after_secs: retry_in_secs(&message),
            message: format!("rate limited: {message}"),
            plan: None,
            resets_at: None,
        },
        _ => CodexError::Failed { code, message },
    })
}

/// Reads "try again in 12s" / "try again in 1.5 s" from a message.
pub fn retry_in_secs(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let rest = &lower[lower.find("try again in")? + "try again in".len()..];
    let num: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse::<f64>().ok().map(|s| s.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_limits_say_plan_and_reset() {
        let body = br#"{"error":{"type":"usage_limit_reached","code":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus","resets_at":7300}}"#;
        let e = from_http(429, body, None, 100);
        let CodexError::UsageLimit {
            message,
            plan,
            resets_at,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!((plan.as_deref(), *resets_at), (Some("plus"), Some(7300)));
        assert!(
            message.contains("plus plan") && message.contains("resets in 2h 0m"),
            "{message}"
        );
        assert!(matches!(
            from_http(429, b"", Some(3), 0),
            CodexError::UsageLimit {
                retry_after_secs: Some(3),
                ..
            }
        ));
        assert!(matches!(
            from_http(
                403,
                br#"{"error":{"code":"usage_not_included","plan_type":"free"}}"#,
                None,
                0
            ),
            CodexError::PlanExcludesCodex { .. }
        ));
    }

    #[test]
    fn statuses_sort_into_kinds() {
        assert!(matches!(
            from_http(503, b"{}", None, 0),
            CodexError::Upstream { status: 503, .. }
        ));
        assert!(matches!(
            from_http(
                400,
                br#"{"error":{"code":"invalid_prompt","message":"no"}}"#,
                None,
                0
            ),
            CodexError::InvalidPrompt { .. }
        ));
        assert!(matches!(
            from_http(
                400,
                br#"{"error":{"code":"context_length_exceeded"}}"#,
                None,
                0
            ),
            CodexError::ContextLength { .. }
        ));
        assert!(matches!(
            from_http(404, b"nope", None, 0),
            CodexError::Refused { status: 404, .. }
        ));
    }

    #[test]
    fn failed_events_map_to_distinct_errors() {
        let failed = |code: &str| {
            json!({"type":"response.failed","response":{"error":{"code":code,"message":"m, try again in 7 s"}}}).to_string()
        };
        assert!(matches!(
            from_event("response.failed", &failed("context_length_exceeded")),
            Some(CodexError::ContextLength { .. })
        ));
        assert!(matches!(
            from_event("response.failed", &failed("insufficient_quota")),
            Some(CodexError::UsageLimit { .. })
        ));
        assert!(matches!(
            from_event("response.failed", &failed("usage_not_included")),
            Some(CodexError::PlanExcludesCodex { .. })
        ));
        assert!(matches!(
            from_event("response.failed", &failed("invalid_prompt")),
            Some(CodexError::InvalidPrompt { .. })
        ));
        assert!(matches!(
            from_event("response.failed", &failed("server_is_overloaded")),
            Some(CodexError::Overloaded { .. })
        ));
        assert!(matches!(
            from_event("response.failed", &failed("slow_down")),
            Some(CodexError::Overloaded { .. })
        ));
        assert!(matches!(
            from_event("response.failed", &failed("rate_limit_exceeded")),
            Some(CodexError::UsageLimit {
                retry_after_secs: Some(7),
                ..
            })
        ));
        assert!(matches!(
            from_event(
                "error",
                &json!({"type":"error","code":"server_is_overloaded","message":"busy"}).to_string()
            ),
            Some(CodexError::Overloaded { .. })
        ));
        assert!(matches!(
            from_event(
                "error",
                &json!({"type":"error","error":{"code":"context_length_exceeded","message":"long"}}).to_string()
            ),
            Some(CodexError::ContextLength { .. })
        ));
        assert!(matches!(
            from_event("response.failed", "[1]"),
            Some(CodexError::Failed { .. })
        ));
        assert_eq!(from_event("response.output_text.delta", "{}"), None);
    }

    #[test]
    fn retry_hints() {
        assert_eq!(
            retry_in_secs("Rate limit reached. Please try again in 1.5s."),
            Some(2)
        );
        assert_eq!(retry_in_secs("try again in 20 seconds"), Some(20));
        assert_eq!(retry_in_secs("later"), None);
    }
}
