//! The streaming relay: 2,000 events straight from the mock against the
//! same stream through piauthd.

use std::time::Instant;

use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_tests::mock::{MockOpenAi, ReplyShape};
use serde_json::json;

use crate::figures::{Figures, percentile, us};
use crate::process::Daemon;

pub async fn run(mock: &MockOpenAi, daemon: &Daemon, figs: &mut Figures) -> anyhow::Result<()> {
    // Streaming relay: 2,000 events, direct from the mock vs through piauthd.
    mock.state.set_reply(ReplyShape {
        deltas: Some(2000),
        delta_bytes: 32,
        ..ReplyShape::default()
    });
    let body = json!({"model": "gpt-5.1-codex-mini", "instructions": "", "input": [], "stream": true, "store": false});
    let http = reqwest::Client::new();
    let token = Client::connect(&daemon.socket)
        .await?
        .get_token("", 60)
        .await?;
    let (mut d_first, mut d_rate, mut p_first, mut p_rate) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        let t = Instant::now();
        let mut resp = http
            .post(format!("{}/codex/responses", mock.codex_base()))
            .bearer_auth(&token.access_token)
            .header("chatgpt-account-id", &token.account_id)
            .header("OpenAI-Beta", "responses=experimental")
            .header("originator", "pi")
            .header("User-Agent", "bench")
            .header("accept", "text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let mut parser = piauthd::SseParser::new();
        let (mut first, mut n) = (None, 0usize);
        while let Some(chunk) = resp.chunk().await? {
            let got = parser.push(&chunk)?.len();
            if got > 0 && first.is_none() {
                first = Some(t.elapsed());
            }
            n += got;
        }
        n += parser.finish()?.len();
        d_first.push(first.unwrap_or_default());
        d_rate.push(n as f64 / t.elapsed().as_secs_f64());

        let mut c = Client::connect(&daemon.socket).await?;
        let t = Instant::now();
        let mut stream = c
            .complete(pb::CompletionRequest {
                model: "gpt-5.1-codex-mini".into(),
                input_json: "[]".into(),
                ..Default::default()
            })
            .await?;
        let (mut first, mut n) = (None, 0usize);
        while let Some(_e) = stream.next().await? {
            if first.is_none() {
                first = Some(t.elapsed());
            }
            n += 1;
        }
        p_first.push(first.unwrap_or_default());
        p_rate.push(n as f64 / t.elapsed().as_secs_f64());
    }
    d_first.sort_unstable();
    p_first.sort_unstable();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (dr, pr) = (median(&mut d_rate), median(&mut p_rate));
    figs.add(
        "stream_first_event_direct_p50",
        us(percentile(&d_first, 0.5)) / 1000.0,
        "ms",
        json!({}),
    );
    figs.add(
        "stream_first_event_daemon_p50",
        us(percentile(&p_first, 0.5)) / 1000.0,
        "ms",
        json!({}),
    );
    figs.add(
        "stream_first_event_added_p50",
        (us(percentile(&p_first, 0.5)) - us(percentile(&d_first, 0.5))) / 1000.0,
        "ms",
        json!({"target_max_ms": 1.0}),
    );
    figs.add("stream_events_per_sec_direct", dr, "events/s", json!({}));
    figs.add("stream_events_per_sec_daemon", pr, "events/s", json!({}));
    figs.add(
        "stream_throughput_ratio",
        pr / dr,
        "x",
        json!({"target_min": 0.9}),
    );
    Ok(())
}
