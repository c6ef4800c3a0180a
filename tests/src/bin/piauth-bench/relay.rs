//! The streaming relay over each transport: a paced reply and a flood of
//! 10,000 events straight from the mock (the way pi's direct path reads
//! them) against the same stream through piauthd; and the bytes a 20-turn
//! session sends upstream with continuation, against the full body.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockOpenAi, ReplyShape};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::figures::{Figures, percentile, us};
use crate::process::{Daemon, start_daemon_with};

/// Rounds per figure; the p50 (or median) is reported.
const ROUNDS: usize = 15;
const SESSION: &str = "0199a1b2-bench-relay";

/// A pi 1.6.0-shaped body: the developer item, the tools, `max_output_tokens`.
fn body(input: &[Value]) -> Value {
    let tool = |name: &str| {
        json!({"type": "function", "name": name, "description": format!("The {name} tool. ").repeat(20),
               "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}, "strict": null})
    };
    let tools = ["read", "bash", "edit", "write"].map(tool);
    json!({
        "model": "gpt-6.2-sol", "store": false, "stream": true, "input": input,
        "text": {"verbosity": "low"}, "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": SESSION, "tool_choice": "auto", "parallel_tool_calls": true,
        "max_output_tokens": 32000, "tools": tools,
        "reasoning": {"effort": "medium", "summary": "auto"},
    })
}

fn developer() -> Value {
    json!({"role": "developer", "content": "You are an expert coding assistant. ".repeat(300)})
}

fn user(turn: usize) -> Value {
    let file = format!("fn line_{turn}() {{}}\n").repeat(100);
    json!({"role": "user", "content": [{"type": "input_text", "text": format!("turn {turn}\n{file}")}]})
}

/// A WebSocket turn opens with the account's windows; the response's first
/// event is the one after (pi reads the windows, it streams nothing for
/// them), so both ways time that one.
const RATE_LIMITS: &str = "codex.rate_limits";

/// What a client does with each event it reads, whichever way it came: pi
/// `JSON.parse`s it. Every stream here is read the same way, so the rates
/// compare what a client gets, not how little a bare loop can do.
fn consume(event: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(event)?)
}

/// First event and events per second of one stream.
struct Timing {
    first: Duration,
    rate: f64,
}

impl Timing {
    /// A stream that began at `t`, had its first event at `first` and `n`
    /// events in all. The rate runs from the first event to the end: the
    /// wait for the first is its own figure.
    fn of(t: Instant, first: Option<Duration>, n: usize) -> Timing {
        let first = first.unwrap_or_default();
        let flowing = t.elapsed().saturating_sub(first).as_secs_f64();
        Timing {
            first,
            rate: n.saturating_sub(1) as f64 / flowing.max(f64::EPSILON),
        }
    }
}

/// pi's direct SSE path: the zstd body, read with an SSE parser.
async fn direct_sse(mock: &MockOpenAi, token: &pb::Token, body: &[u8]) -> anyhow::Result<Timing> {
    let t = Instant::now();
    let zstd = ruzstd::encoding::compress_to_vec(body, ruzstd::encoding::CompressionLevel::Fastest);
    let mut resp = reqwest::Client::new()
        .post(format!("{}/codex/responses", mock.codex_base()))
        .bearer_auth(&token.access_token)
        .header("chatgpt-account-id", &token.account_id)
        .header("OpenAI-Beta", "responses=experimental")
        .header("originator", "pi")
        .header("User-Agent", "bench")
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .header("content-encoding", "zstd")
        .header("session-id", SESSION)
        .body(zstd)
        .send()
        .await?;
    let mut parser = piauthd::SseParser::new();
    let (mut first, mut n) = (None, 0usize);
    while let Some(chunk) = resp.chunk().await? {
        let got = parser.push(&chunk)?;
        for payload in &got {
            consume(payload)?;
        }
        if !got.is_empty() && first.is_none() {
            first = Some(t.elapsed());
        }
        n += got.len();
    }
    for payload in parser.finish()? {
        consume(&payload)?;
        n += 1;
    }
    Ok(Timing::of(t, first, n))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// pi's direct WebSocket path: one cached connection, a frame per turn.
async fn ws_connect(mock: &MockOpenAi, token: &pb::Token) -> anyhow::Result<Ws> {
    let url = format!("{}/codex/responses", mock.codex_base()).replacen("http", "ws", 1);
    let mut req = url.into_client_request()?;
    let h = req.headers_mut();
    h.insert(
        "authorization",
        format!("Bearer {}", token.access_token).parse()?,
    );
    h.insert("chatgpt-account-id", token.account_id.parse()?);
    h.insert("openai-beta", "responses_websockets=2026-02-06".parse()?);
    h.insert("originator", "pi".parse()?);
    h.insert("session-id", SESSION.parse()?);
    Ok(
        tokio_tungstenite::connect_async_with_config(req, None, true)
            .await?
            .0,
    )
}

async fn direct_ws(ws: &mut Ws, body: &Value) -> anyhow::Result<Timing> {
    let mut frame = json!({"type": "response.create"});
    if let (Some(f), Some(b)) = (frame.as_object_mut(), body.as_object()) {
        f.extend(b.clone());
    }
    let t = Instant::now();
    ws.send(Message::text(frame.to_string())).await?;
    let (mut first, mut n) = (None, 0usize);
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else { continue };
        let event = consume(&text)?;
        if event["type"] != RATE_LIMITS {
            first.get_or_insert_with(|| t.elapsed());
        }
        n += 1;
        if event["type"] == "response.completed" {
            break;
        }
    }
    Ok(Timing::of(t, first, n))
}

/// The same turn through the daemon on `socket`.
async fn through(socket: &Path, body: &Value) -> anyhow::Result<Timing> {
    let mut c = Client::connect(socket).await?;
    let t = Instant::now();
    let mut stream = c
        .complete(pb::CompletionRequest {
            body_json: body.to_string(),
            session_id: SESSION.into(),
            ..Default::default()
        })
        .await?;
    let (mut first, mut n) = (None, 0usize);
    while let Some(e) = stream.next().await? {
        consume(&e.data_json)?;
        if e.r#type != RATE_LIMITS {
            first.get_or_insert_with(|| t.elapsed());
        }
        n += 1;
    }
    Ok(Timing::of(t, first, n))
}

/// Adds one transport's figures: first event p50 each way and what the
/// relay adds (from the paced rounds, the first half), events/s each way
/// and their ratio (from the flood, the second half).
fn add(figs: &mut Figures, tag: &str, direct: &mut [Timing], daemon: &mut [Timing]) {
    let first = |v: &mut [Timing]| {
        let mut f: Vec<Duration> = v[..ROUNDS].iter().map(|t| t.first).collect();
        f.sort_unstable();
        us(percentile(&f, 0.5)) / 1000.0
    };
    let rate = |v: &mut [Timing]| {
        let flood = &mut v[ROUNDS..];
        flood.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        flood[flood.len() / 2].rate
    };
    let (df, pf) = (first(direct), first(daemon));
    let (dr, pr) = (rate(direct), rate(daemon));
    figs.add(
        &format!("stream_{tag}_first_event_direct_p50"),
        df,
        "ms",
        json!({}),
    );
    figs.add(
        &format!("stream_{tag}_first_event_daemon_p50"),
        pf,
        "ms",
        json!({}),
    );
    figs.add(
        &format!("stream_{tag}_first_event_added_p50"),
        pf - df,
        "ms",
        json!({"target_max_ms": 1.0}),
    );
    figs.add(
        &format!("stream_{tag}_events_per_sec_direct"),
        dr,
        "events/s",
        json!({}),
    );
    figs.add(
        &format!("stream_{tag}_events_per_sec_daemon"),
        pr,
        "events/s",
        json!({}),
    );
    figs.add(
        &format!("stream_{tag}_throughput_ratio"),
        pr / dr,
        "x",
        json!({"target_min": 0.9}),
    );
}

/// A daemon of its own (its own agent dir and login) using SSE only.
fn sse_daemon(dir: &Path, mock: &MockOpenAi) -> anyhow::Result<Daemon> {
    let home = dir.join("sse");
    std::fs::create_dir_all(home.join("agent"))?;
    let set = mock.state.seed_login("acc-sse", "sse@example.com", "pro");
    write_codex_login(&home.join("agent").join("auth.json"), &set)?;
    let env = [("PIAUTHD_CODEX_TRANSPORT", "sse")];
    Ok(start_daemon_with(&home, "sse", &mock.issuer(), &mock.codex_base(), &env)?.0)
}

pub async fn run(
    mock: &MockOpenAi,
    daemon: &Daemon,
    dir: &Path,
    figs: &mut Figures,
) -> anyhow::Result<()> {
    let sse = sse_daemon(dir, mock)?;
    let token = Client::connect(&daemon.socket)
        .await?
        .get_token("", 60)
        .await?;
    let turn = body(&[developer(), user(1)]);
    let json = turn.to_string().into_bytes();
    let mut ws = ws_connect(mock, &token).await?;
    // Two shapes of reply: a paced one (events 2 ms apart, as a model
    // streams them) for the first event, so that it is not timed while the
    // same two cores are busy with the events behind it; and a flood of
    // 10,000 events for the rate, where the relay's own cost per event shows.
    let paced = ReplyShape {
        deltas: Some(5),
        delta_bytes: 32,
        delay: Duration::from_millis(2),
        ..ReplyShape::default()
    };
    let flood = ReplyShape {
        deltas: Some(10_000),
        delta_bytes: 32,
        ..ReplyShape::default()
    };
    let mut all: [Vec<Timing>; 4] = Default::default();
    for shape in [paced, flood] {
        mock.state.set_reply(shape);
        for _ in 0..ROUNDS {
            all[0].push(direct_sse(mock, &token, &json).await?);
            all[1].push(through(&sse.socket, &turn).await?);
            all[2].push(direct_ws(&mut ws, &turn).await?);
            all[3].push(through(&daemon.socket, &turn).await?);
        }
    }
    let [mut d_sse, mut p_sse, mut d_ws, mut p_ws] = all;
    add(figs, "sse", &mut d_sse, &mut p_sse);
    add(figs, "ws", &mut d_ws, &mut p_ws);
    mock.state.set_reply(ReplyShape::default());
    continuation(mock, &daemon.socket, "ws", figs).await?;
    continuation(mock, &sse.socket, "sse_zstd", figs).await
}

/// A 20-turn session through the daemon on `socket`: the bytes each turn
/// sent upstream against the full body's (over the WebSocket, with
/// continuation; over SSE, the whole body zstd-compressed).
async fn continuation(
    mock: &MockOpenAi,
    socket: &Path,
    tag: &str,
    figs: &mut Figures,
) -> anyhow::Result<()> {
    let mut input = vec![developer()];
    let mut shares = Vec::new();
    for t in 1..=20 {
        input.push(user(t));
        let turn = body(&input);
        let full = turn.to_string().len();
        let mut c = Client::connect(socket).await?;
        let mut stream = c
            .complete(pb::CompletionRequest {
                body_json: turn.to_string(),
                session_id: format!("{SESSION}-20"),
                ..Default::default()
            })
            .await?;
        while let Some(e) = stream.next().await? {
            if e.r#type == "response.output_item.done" {
                let v: Value = serde_json::from_str(&e.data_json)?;
                input.push(v["item"].clone());
            }
        }
        let seen = mock.state.responses_seen();
        let sent = seen.last().map_or(0, |s| s.wire_bytes);
        shares.push(sent as f64 / full as f64);
    }
    let target = if tag == "ws" {
        json!({"target_max": 0.2})
    } else {
        json!({})
    };
    figs.add(
        &format!("upstream_bytes_{tag}_turn2_share"),
        shares[1],
        "x",
        json!({}),
    );
    figs.add(
        &format!("upstream_bytes_{tag}_turn10_share"),
        shares[9],
        "x",
        target,
    );
    figs.add(
        &format!("upstream_bytes_{tag}_turn20_share"),
        shares[19],
        "x",
        json!({}),
    );
    Ok(())
}
