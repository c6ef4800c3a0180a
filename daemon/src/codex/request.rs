//! Building a Codex Responses request (docs/PROTOCOL.md §3): the body and the
//! headers, as pure functions.
//!
//! A client's whole body (`body_json`, pi 1.6.0's shape) passes through as
//! it is, in its own key order: only `stream` and `store` are the daemon's.
//! The typed fields build the body `pi-authctl complete` sends.

use std::sync::Arc;

use serde_json::{Map, Value, json};

/// What a client asked for (from `CompletionRequest`).
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub model: String,
    pub instructions: String,
    /// The Responses `input` array, as JSON text.
    pub input_json: String,
    pub reasoning_effort: String,
    pub session_id: String,
    /// A whole body built by the client; wins over the fields above.
    pub body_json: String,
}

/// Why a request cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    #[error("model is required")]
    NoModel,
    #[error("input_json must be a JSON array of Responses input items: {0}")]
    BadInput(String),
    #[error("body_json must be a JSON object: {0}")]
    BadBody(String),
    #[error("reasoning_effort must be one of minimal, low, medium, high, xhigh (got {0:?})")]
    BadEffort(String),
    #[error("session_id must be at most 128 printable ASCII characters")]
    BadSession,
}

const EFFORTS: [&str; 5] = ["minimal", "low", "medium", "high", "xhigh"];

/// Builds the JSON body. `stream: true` and `store: false` are always
/// forced; everything else in a client's body is sent as it came.
pub fn build_body(ask: &Ask) -> Result<Value, AskError> {
    if !ask.session_id.is_empty()
        && (ask.session_id.len() > 128 || !ask.session_id.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(AskError::BadSession);
    }
    let mut body: Map<String, Value> = if !ask.body_json.trim().is_empty() {
        match serde_json::from_str::<Value>(&ask.body_json) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(AskError::BadBody("not an object".into())),
            Err(e) => return Err(AskError::BadBody(e.to_string())),
        }
    } else {
        if ask.model.trim().is_empty() {
            return Err(AskError::NoModel);
        }
        let input = match serde_json::from_str::<Value>(if ask.input_json.trim().is_empty() {
            "[]"
        } else {
            &ask.input_json
        }) {
            Ok(v @ Value::Array(_)) => v,
            Ok(_) => return Err(AskError::BadInput("not an array".into())),
            Err(e) => return Err(AskError::BadInput(e.to_string())),
        };
        let mut m = Map::new();
        m.insert("model".into(), ask.model.trim().into());
        m.insert("instructions".into(), ask.instructions.clone().into());
        m.insert("input".into(), input);
        m.insert("text".into(), json!({ "verbosity": "low" }));
        m.insert("include".into(), json!(["reasoning.encrypted_content"]));
        m.insert("tool_choice".into(), "auto".into());
        m.insert("parallel_tool_calls".into(), true.into());
        if !ask.session_id.is_empty() {
            m.insert("prompt_cache_key".into(), ask.session_id.clone().into());
        }
        if !ask.reasoning_effort.is_empty() {
            if !EFFORTS.contains(&ask.reasoning_effort.as_str()) {
                return Err(AskError::BadEffort(ask.reasoning_effort.clone()));
            }
            m.insert(
                "reasoning".into(),
                json!({ "effort": ask.reasoning_effort, "summary": "auto" }),
            );
        }
        m
    };
    body.insert("stream".into(), true.into());
    body.insert("store".into(), false.into());
    Ok(Value::Object(body))
}

/// A request ready to send: the body (kept whole for the WebSocket's
/// continuation), its JSON, and its session id.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Shared with the connection's record of the turn, uncopied.
    pub body: Arc<Map<String, Value>>,
    pub json: Vec<u8>,
    pub session_id: String,
}

/// Builds and serializes the body once, before anything goes upstream.
pub fn prepare(ask: &Ask) -> Result<Prepared, AskError> {
    let Value::Object(body) = build_body(ask)? else {
        return Err(AskError::BadBody("not an object".into()));
    };
    Ok(Prepared {
        json: serde_json::to_vec(&body).map_err(|e| AskError::BadBody(e.to_string()))?,
        body: Arc::new(body),
        session_id: ask.session_id.clone(),
    })
}

/// The SSE body, as pi 1.6.0 sends it: zstd (`Content-Encoding: zstd`).
/// pi compresses at level 3; this encoder's "fastest" is level 1, whose
/// output is a few percent larger on JSON.
pub fn compress(json: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(json, ruzstd::encoding::CompressionLevel::Fastest)
}

/// The `OpenAI-Beta` value of the WebSocket transport.
pub const WEBSOCKET_BETA: &str = "responses_websockets=2026-02-06";

/// The headers of an SSE Responses request, except `Authorization`, which
/// the relay adds from the broker's token. They are pi 1.6.0's: the session
/// goes as `session-id` and `x-client-request-id`, and the body is zstd.
pub fn headers(
    account_id: &str,
    originator: &str,
    session_id: &str,
) -> Vec<(&'static str, String)> {
    let mut h = identity_headers(account_id, originator);
    h.extend([
        ("OpenAI-Beta", "responses=experimental".to_owned()),
        ("accept", "text/event-stream".to_owned()),
        ("content-type", "application/json".to_owned()),
        ("content-encoding", "zstd".to_owned()),
    ]);
    if !session_id.is_empty() {
        h.push(("session-id", session_id.to_owned()));
        h.push(("x-client-request-id", session_id.to_owned()));
    }
    h
}

/// The headers of the WebSocket upgrade, except `Authorization`: no
/// `accept` or `content-type`, the WebSocket beta, and the session (pi 1.6.0
/// names a session-less request with a fresh id; the relay leaves it out).
pub fn websocket_headers(
    account_id: &str,
    originator: &str,
    session_id: &str,
) -> Vec<(&'static str, String)> {
    let mut h = identity_headers(account_id, originator);
    h.push(("OpenAI-Beta", WEBSOCKET_BETA.to_owned()));
    if !session_id.is_empty() {
        h.push(("session-id", session_id.to_owned()));
        h.push(("x-client-request-id", session_id.to_owned()));
    }
    h
}

/// The headers that say who asks, for a request that is not a completion
/// (the usage endpoint): the account, the originator, the User-Agent.
pub fn identity_headers(account_id: &str, originator: &str) -> Vec<(&'static str, String)> {
    vec![
        ("chatgpt-account-id", account_id.to_owned()),
        ("originator", originator.to_owned()),
        ("User-Agent", user_agent()),
    ]
}

/// `piauthd/<version> (<os>; <arch>)`.
pub fn user_agent() -> String {
    format!(
        "piauthd/{} ({}; {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask() -> Ask {
        Ask {
            model: "gpt-5.1-codex".into(),
            instructions: "be brief".into(),
            input_json: r#"[{"role":"user","content":[{"type":"input_text","text":"hi"}]}]"#.into(),
            reasoning_effort: "high".into(),
            session_id: "0d9b7a2e-5a1f-4c8e-9f00-1234567890ab".into(),
            body_json: String::new(),
        }
    }

    #[test]
    fn builds_the_documented_body() {
        let b = build_body(&ask()).unwrap();
        assert_eq!(b["model"], "gpt-5.1-codex");
        assert_eq!(
            (b["stream"].clone(), b["store"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(b["instructions"], "be brief");
        assert_eq!(b["input"][0]["content"][0]["text"], "hi");
        assert_eq!(b["text"], json!({"verbosity": "low"}));
        assert_eq!(b["include"], json!(["reasoning.encrypted_content"]));
        assert_eq!(
            (b["tool_choice"].clone(), b["parallel_tool_calls"].clone()),
            (json!("auto"), json!(true))
        );
        assert_eq!(b["reasoning"], json!({"effort": "high", "summary": "auto"}));
        assert_eq!(
            b["prompt_cache_key"],
            "0d9b7a2e-5a1f-4c8e-9f00-1234567890ab"
        );
        assert!(b.get("max_output_tokens").is_none());
    }

    #[test]
    fn a_clients_body_is_kept_but_forced() {
        let a = Ask {
            body_json:
                r#"{"model":"m","stream":false,"store":true,"max_output_tokens":5,"tools":[]}"#
                    .into(),
            session_id: "s".into(),
            ..Ask::default()
        };
        let b = build_body(&a).unwrap();
        assert_eq!(
            b,
            json!({"model":"m","stream":true,"store":false,"max_output_tokens":5,"tools":[]}),
            "only stream and store are the daemon's; no prompt_cache_key is added"
        );
    }

    #[test]
    fn pi_s_body_passes_through_in_its_own_order() {
        let pi = r#"{"model":"gpt-6.2-sol","store":false,"stream":true,"input":[{"role":"developer","content":"sys"},{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"text":{"verbosity":"low"},"include":["reasoning.encrypted_content"],"prompt_cache_key":"k","tool_choice":"auto","parallel_tool_calls":true,"max_output_tokens":32000,"tools":[{"type":"function","name":"read","parameters":{}}],"reasoning":{"effort":"medium","summary":"auto"}}"#;
        let p = prepare(&Ask {
            body_json: pi.into(),
            session_id: "k".into(),
            ..Ask::default()
        })
        .unwrap();
        assert_eq!(String::from_utf8(p.json).unwrap(), pi);
    }

    #[test]
    fn the_sse_body_is_zstd_that_decodes_to_the_json() {
        let json = br#"{"model":"m","input":[]}"#.repeat(50);
        let z = compress(&json);
        assert!(z.len() < json.len() / 4, "{} of {}", z.len(), json.len());
        let mut out = Vec::new();
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(z.as_slice()).unwrap();
        std::io::Read::read_to_end(&mut decoder, &mut out).unwrap();
        assert_eq!(out, json);
    }

    #[test]
    fn bad_asks_are_refused() {
        assert_eq!(
            build_body(&Ask {
                model: String::new(),
                ..ask()
            }),
            Err(AskError::NoModel)
        );
        assert!(matches!(
            build_body(&Ask {
                input_json: "{}".into(),
                ..ask()
            }),
            Err(AskError::BadInput(_))
        ));
        assert!(matches!(
            build_body(&Ask {
                input_json: "[".into(),
                ..ask()
            }),
            Err(AskError::BadInput(_))
        ));
        assert!(matches!(
            build_body(&Ask {
                reasoning_effort: "max".into(),
                ..ask()
            }),
            Err(AskError::BadEffort(_))
        ));
        assert!(matches!(
            build_body(&Ask {
                body_json: "[1]".into(),
                ..ask()
            }),
            Err(AskError::BadBody(_))
        ));
        assert_eq!(
            build_body(&Ask {
                session_id: "a b".into(),
                ..ask()
            }),
            Err(AskError::BadSession)
        );
    }

    #[test]
    fn headers_carry_account_originator_and_session() {
        let h = headers("acc", "pi", "sess");
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("chatgpt-account-id"), Some("acc"));
        assert_eq!(get("OpenAI-Beta"), Some("responses=experimental"));
        assert_eq!(get("originator"), Some("pi"));
        assert_eq!(get("accept"), Some("text/event-stream"));
        assert_eq!(get("session-id"), Some("sess"));
        assert_eq!(get("x-client-request-id"), Some("sess"));
        assert_eq!(get("content-encoding"), Some("zstd"));
        assert!(get("User-Agent").unwrap().starts_with("piauthd/"));
        assert!(
            headers("acc", "pi", "")
                .iter()
                .all(|(n, _)| *n != "session-id")
        );
        let w = websocket_headers("acc", "pi", "sess");
        let get = |k: &str| w.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("OpenAI-Beta"), Some(WEBSOCKET_BETA));
        assert_eq!(get("session-id"), Some("sess"));
        assert_eq!((get("accept"), get("content-type")), (None, None));
    }
}
