//! The mock Codex backend takes what pi 1.6.0 sends, over real HTTP:
//! zstd-compressed bodies, the system prompt as a leading `developer` item,
//! `max_output_tokens`, the `session-id` header, and a WebSocket upgrade
//! first (refused, so pi falls back to SSE).

use base64::Engine;
use piauth_tests::mock::{MockConfig, MockOpenAi, Stats, TokenSet, WebsocketMode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A pi-1.6.0-shaped body (developer item first, `max_output_tokens`,
/// `prompt_cache_key`, seven tools), compressed by Node 22's
/// `zlib.zstdCompressSync` at level 3, as pi 1.6.0 sends it: a frame from
/// the reference zstd, not from the decoder's own encoder.
const PI16_BODY_ZSTD_B64: &str = "KLUv/WANCvURAEbjYiFAbdt4cKYzOZRURsnacklqeFUfbyQdJWeMi1s3xyiKrglTAF8AWgD4bhtFhD3cxdyxV3yn\
    78xdsXFsscLvfROLTnFbEWKGTPlu37FKJHsft43YlSm3ceejIeVDz7FEFupP+ej2elMm5Ta/J5KNPWEoCpJ/TaZs\
    u/jJR8xBogLKINmAxSBhKIKlBwGLfVDWUaqUfw/3S6ShrP3naOVW0Tjm2HU7G1LugpqKUoJbpnQ8c156I/LRiBpR\
    Kri1ddChCpkSyZ/YV57j89HgEBKlglnWC24CKtzXtToBzRY2jj00S+A6j46hb2MM+j5rCVxO0RMu3cZ1FjI91sp3\
    JZIr5T7qEknH7JWDGF8sFgyBlO72gR9iZUIfb02Vtq1p60sk+SFVjB2lNGaGYAeWgGIsAUqQLBYBUeRofR7IE8kH\
    YmufZoZZpOHN23KMeduN47o8W9sa5FK+YlEj1zaDILYTiSJ+3Aj22rYRERrH+t15fcu+n1qHhVN67++j4IXemJNv\
    DFrQAdhDV0Qcza82QqhRDTTOGKEJpiItSQsHUCJBiE7nEoAmFSWdMUZghM5EavL/+/qS5KaSB8iYu8l5UIrflnau\
    /O5UrGA4Bq/gWHOtOCF860liBWrXwlNakA/Cu1OWmlxnyFodb9GIv4dtSjOxfuF81tzLPGvyQ3gXAHkJvpt+3lRy\
    17My5/ACf8GkVxdA46YyueP0kawAp3ZNTf0dA9o60/QLXSURUeoZU2rzzU6/35fzCcS6uDJugQo=";

const SESSION: &str = "019ad5c2-7b1e-7c3a-9f00-5a1b2c3d4e5f";

async fn mock() -> (MockOpenAi, TokenSet) {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let set = mock
        .state
        .seed_login("acc-pi16", "pi16@example.com", "plus");
    (mock, set)
}

fn responses_url(mock: &MockOpenAi) -> String {
    format!("{}/codex/responses", mock.codex_base())
}

/// A POST with the headers pi 1.6.0 sends over SSE.
fn pi16_post(mock: &MockOpenAi, set: &TokenSet, body: Vec<u8>) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(responses_url(mock))
        .bearer_auth(&set.access_token)
        .header("chatgpt-account-id", &set.account_id)
        .header("OpenAI-Beta", "responses=experimental")
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .header("originator", "pi")
        .header("User-Agent", "pi (linux 6.1; x64)")
        .header("session-id", SESSION)
        .header("x-client-request-id", SESSION)
        .body(body)
}

fn pi16_body_zstd() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(PI16_BODY_ZSTD_B64)
        .unwrap()
}

async fn stats_json(mock: &MockOpenAi) -> Value {
    reqwest::get(format!("{}/_mock/stats", mock.issuer()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The SSE answer's event types, in order.
fn event_types(sse: &str) -> Vec<String> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_zstd_pi16_body_gets_a_real_sse_answer_and_is_counted() {
    let (mock, set) = mock().await;
    let resp = pi16_post(&mock, &set, pi16_body_zstd())
        .header("content-encoding", "zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(types.first().map(String::as_str), Some("response.created"));
    assert!(
        types.iter().any(|t| t == "response.output_text.delta"),
        "{text}"
    );
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));

    let stats = mock.stats();
    assert_eq!(
        (
            stats.zstd_bodies,
            stats.developer_first,
            stats.max_output_tokens_seen
        ),
        (1, 1, 1),
        "{stats:?}"
    );
    let seen = mock.state.responses_seen();
    let last = seen.last().unwrap();
    assert!(last.zstd && !last.has_instructions, "{last:?}");
    assert_eq!(last.first_input_role.as_deref(), Some("developer"));
    assert_eq!(last.max_output_tokens, Some(32000));
    assert_eq!(last.prompt_cache_key.as_deref(), Some(SESSION));
    assert_eq!(last.session_id_dash.as_deref(), Some(SESSION));
    assert!(last.body_bytes > last.wire_bytes, "{last:?}");

    // The same counters over HTTP, for clients that are not Rust.
    let json = stats_json(&mock).await;
    for key in ["zstd_bodies", "developer_first", "max_output_tokens_seen"] {
        assert_eq!(json[key], 1, "{key}: {json}");
    }
    assert_eq!(json["websocket_upgrades_refused"], 0, "{json}");
    let back: Stats = serde_json::from_value(json).unwrap();
    assert_eq!(back.zstd_bodies, 1);
}

#[tokio::test]
async fn a_large_body_in_several_zstd_blocks_decodes() {
    let (mock, set) = mock().await;
    let filler: Vec<Value> = (0..2000)
        .map(|i| json!({"role": "user", "content": [{"type": "input_text", "text": format!("line {i} of a long transcript")}]}))
        .collect();
    let mut input = vec![json!({"role": "developer", "content": "Be brief."})];
    input.extend(filler);
    let body = json!({"model": "gpt-6.2-sol", "store": false, "stream": true, "input": input,
                      "max_output_tokens": 16, "prompt_cache_key": SESSION});
    let plain = serde_json::to_vec(&body).unwrap();
    assert!(plain.len() > 128 * 1024, "more than one zstd block");
    let compressed =
        ruzstd::encoding::compress_to_vec(&plain[..], ruzstd::encoding::CompressionLevel::Fastest);
    let resp = pi16_post(&mock, &set, compressed)
        .header("content-encoding", "zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let _ = resp.text().await;
    let last = mock.state.responses_seen().pop().unwrap();
    assert_eq!((last.body_bytes, last.input_items), (plain.len(), 2001));
    assert_eq!(mock.stats().zstd_bodies, 1);
}

#[tokio::test]
async fn a_body_that_is_not_zstd_gets_a_400_naming_the_problem() {
    let (mock, set) = mock().await;
    let whole = pi16_body_zstd();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"this is not a zstd frame at all".to_vec()),
        ("truncated", whole[..whole.len() / 2].to_vec()),
        // Plain JSON that claims to be zstd.
        (
            "plain",
            br#"{"model":"m","stream":true,"store":false}"#.to_vec(),
        ),
    ];
    for (what, body) in cases {
        let resp = pi16_post(&mock, &set, body)
            .header("content-encoding", "zstd")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{what}");
        let err: Value = resp.json().await.unwrap();
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains("zstd"), "{what}: {message}");
        assert_eq!(err["error"]["code"], "invalid_request", "{what}");
    }
    // An encoding the backend does not take.
    let resp = pi16_post(&mock, &set, whole)
        .header("content-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let stats = mock.stats();
    assert_eq!(stats.zstd_bodies, 0, "{stats:?}");
    assert_eq!(stats.events_sent, 0, "nothing was streamed: {stats:?}");
}

#[tokio::test]
async fn max_output_tokens_below_16_is_refused_as_by_the_real_api() {
    let (mock, set) = mock().await;
    let body = json!({"model": "gpt-6.2-sol", "store": false, "stream": true,
                      "input": [{"role": "developer", "content": "x"}], "max_output_tokens": 8});
    let resp = pi16_post(&mock, &set, serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_output_tokens")
    );
}

/// The daemon's and pi 0.73.1's shape (plain JSON, top-level
/// `instructions`, a user item first, `session_id`) is still taken, and
/// counts as none of pi 1.6.0's.
#[tokio::test]
async fn the_older_plain_shape_is_still_taken() {
    let (mock, set) = mock().await;
    let body = json!({"model": "gpt-5.1-codex-mini", "store": false, "stream": true,
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "text": {"verbosity": "low"}, "include": ["reasoning.encrypted_content"],
        "tool_choice": "auto", "parallel_tool_calls": true, "prompt_cache_key": SESSION});
    let resp = reqwest::Client::new()
        .post(responses_url(&mock))
        .bearer_auth(&set.access_token)
        .header("chatgpt-account-id", &set.account_id)
        .header("OpenAI-Beta", "responses=experimental")
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .header("originator", "pi")
        .header("User-Agent", "pi (linux; x64)")
        .header("session_id", SESSION)
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let types = event_types(&resp.text().await.unwrap());
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));
    let stats = mock.stats();
    assert_eq!(
        (
            stats.zstd_bodies,
            stats.developer_first,
            stats.max_output_tokens_seen
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    let last = mock.state.responses_seen().pop().unwrap();
    assert!(last.has_instructions && !last.zstd, "{last:?}");
    assert_eq!(last.session_id_underscore.as_deref(), Some(SESSION));
}

/// Sends `request` on a fresh connection and returns the answer's status
/// line and the whole answer.
async fn raw_http(mock: &MockOpenAi, request: &str) -> (String, String) {
    let mut conn = tokio::net::TcpStream::connect(mock.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the end of the headers and the (small) body, or the close.
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("the mock answers")
            .unwrap();
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if n == 0 || text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    (text.lines().next().unwrap_or("").to_owned(), text)
}

/// pi 1.6.0 first opens `ws://…/backend-api/codex/responses` (the base URL
/// with `http` turned into `ws`). Told to refuse, the mock answers the
/// handshake with a plain HTTP error (426 Upgrade Required), never `101`,
/// and counts it; by default it switches protocols.
#[tokio::test]
async fn a_websocket_upgrade_is_refused_when_told_and_counted() {
    let (mock, set) = mock().await;
    mock.state
        .configure(|c| c.websocket = WebsocketMode::Refuse { status: 426 });
    let path = "/backend-api/codex/responses";
    let upgrade = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\nchatgpt-account-id: {}\r\n\
         OpenAI-Beta: responses_websockets=2026-02-06\r\noriginator: pi\r\nsession-id: {SESSION}\r\n\r\n",
        mock.addr, set.access_token, set.account_id
    );
    for round in 1..=2 {
        let (status, answer) = raw_http(&mock, &upgrade).await;
        assert!(status.starts_with("HTTP/1.1 426"), "{answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("sec-websocket-accept"),
            "{answer}"
        );
        assert!(answer.contains("websocket_not_supported"), "{answer}");
        assert_eq!(mock.stats().websocket_upgrades_refused, round);
    }
    // A plain GET is no upgrade attempt: 405, not counted.
    let (status, answer) = raw_http(
        &mock,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            mock.addr
        ),
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 405"), "{answer}");
    let stats = stats_json(&mock).await;
    assert_eq!(stats["websocket_upgrades_refused"], 2, "{stats}");
    assert_eq!(mock.stats().responses_requests, 0, "no POST was made");

    // After the refusal pi posts the same request over SSE, and it is served.
    let resp = pi16_post(&mock, &set, pi16_body_zstd())
        .header("content-encoding", "zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Served again, the same upgrade switches protocols.
    mock.state.configure(|c| c.websocket = WebsocketMode::Serve);
    let mut conn = tokio::net::TcpStream::connect(mock.addr).await.unwrap();
    conn.write_all(upgrade.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("the mock answers")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 101"), "{answer}");
    assert!(answer.contains("sec-websocket-accept"), "{answer}");
    assert_eq!(mock.stats().websocket_connections, 1);
}
