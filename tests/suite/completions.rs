//! Completions relayed through the daemon from the mock Codex backend.

use std::time::{Duration, Instant};

use piauth_client::proto::v1 as pb;
use piauth_client::{Error, Reason, text_delta};
use piauth_tests::mock::{ReplyShape, ResponsesFault};
use piauth_tests::wait::wait_until;

use crate::completion_rig::{Upstream, ask, rig, rig_on, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_streams_in_order_as_it_arrives_over_sse() {
    streams_in_order(Upstream::Sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_streams_in_order_as_it_arrives_over_a_websocket() {
    streams_in_order(Upstream::WebSocket).await;
}

async fn streams_in_order(upstream: Upstream) {
    let mut r = rig_on(300, upstream).await;
    r.mock.state.set_reply(ReplyShape {
        text: "one two three four five".into(),
        delay: Duration::from_millis(150),
        ..ReplyShape::default()
    });
    let total_events = 2 + 5 + 2 + u64::from(upstream == Upstream::WebSocket);
    let started = Instant::now();
    let mut stream = r.client.complete(ask("count to five")).await.unwrap();
    let mut events = Vec::new();
    let mut sent_at_first_delta = None;
    while let Some(e) = stream.next().await.unwrap() {
        if sent_at_first_delta.is_none() && text_delta(&e).is_some() {
            sent_at_first_delta = Some((r.mock.stats().events_sent, started.elapsed()));
        }
        events.push(e);
    }
    let mut types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    if upstream == Upstream::WebSocket {
        // A WebSocket turn opens with the account's windows.
        assert_eq!(types.remove(0), "codex.rate_limits");
    }
    assert_eq!(
        types,
        [
            "response.created",
            "response.output_item.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let text: String = events.iter().filter_map(text_delta).collect();
    assert_eq!(text, "one two three four five");
    let (sent, at) = sent_at_first_delta.unwrap();
    assert!(
        sent < total_events,
        "the first delta arrived while the mock was still sending ({sent} of {total_events} sent)"
    );
    assert!(at < Duration::from_millis(900), "first delta after {at:?}");

    let first = events[0]
        .response
        .clone()
        .expect("the first event carries the response info");
    assert_eq!(first.http_status, 200);
    // A fresh account in the mock: this first response used 1 % of its
    // 5-hour window (the mock's default step). A WebSocket's headers are its
    // upgrade's, from before the turn.
    let used = match upstream {
        Upstream::Sse => "1",
        Upstream::WebSocket => "0",
    };
    assert_eq!(
        first.rate_limit_headers["x-codex-primary-used-percent"],
        used
    );
    let ws_turns = u64::from(upstream == Upstream::WebSocket);
    assert_eq!(r.mock.stats().websocket_requests, ws_turns);
    assert_eq!(
        first.rate_limit_headers["x-codex-primary-window-minutes"],
        "300"
    );
    assert!(!first.rate_limit_headers.contains_key("x-request-id"));
    let usage = events
        .last()
        .unwrap()
        .usage
        .expect("the terminal event carries usage");
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens
        ),
        (12, 5, 4)
    );
    assert_eq!(r.mock.stats().responses_requests, 1);
}

/// Faults to inject, the expected error (code and reason; `None` for
/// success), the upstream requests made, and the refreshes made.
type Case = (Vec<ResponsesFault>, Option<(tonic::Code, Reason)>, u64, u64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_gives_its_status_and_request_count_over_sse() {
    fault_matrix(Upstream::Sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_gives_its_status_and_request_count_over_a_websocket() {
    fault_matrix(Upstream::WebSocket).await;
}

async fn fault_matrix(upstream: Upstream) {
    let mut r = rig_on(1, upstream).await;
    let failed = |code: &str| ResponsesFault::FailedEvent {
        code: code.into(),
        message: format!("{code} happened"),
    };
    // (faults, expected error (code, reason) or None for success, upstream requests, refreshes)
    let cases: Vec<Case> = vec![
        (vec![ResponsesFault::Revoked], None, 2, 1),
        (
            vec![ResponsesFault::Revoked, ResponsesFault::Revoked],
            Some((tonic::Code::Unauthenticated, Reason::NeedsLogin)),
            2,
            1,
        ),
        (
            vec![ResponsesFault::UsageLimit {
                plan: "plus".into(),
                resets_at: 4_102_444_800,
            }],
            Some((tonic::Code::ResourceExhausted, Reason::UsageLimit)),
            1,
            0,
        ),
        (vec![ResponsesFault::Status { code: 503 }], None, 2, 0),
        (
            vec![ResponsesFault::Status { code: 502 }; 3],
            Some((tonic::Code::Unavailable, Reason::UpstreamUnavailable)),
            3,
            0,
        ),
        (
            vec![failed("context_length_exceeded")],
            Some((tonic::Code::OutOfRange, Reason::ContextLengthExceeded)),
            1,
            0,
        ),
        (
            vec![failed("insufficient_quota")],
            Some((tonic::Code::ResourceExhausted, Reason::UsageLimit)),
            1,
            0,
        ),
        (
            vec![failed("invalid_prompt")],
            Some((tonic::Code::InvalidArgument, Reason::InvalidPrompt)),
            1,
            0,
        ),
        (
            vec![failed("server_is_overloaded")],
            Some((tonic::Code::Unavailable, Reason::UpstreamOverloaded)),
            1,
            0,
        ),
        (
            vec![ResponsesFault::ErrorEvent {
                code: "rate_limit_exceeded".into(),
                message: "try again in 3s".into(),
            }],
            Some((tonic::Code::ResourceExhausted, Reason::UsageLimit)),
            1,
            0,
        ),
        (
            vec![ResponsesFault::Truncate],
            Some((tonic::Code::Unavailable, Reason::StreamIncomplete)),
            1,
            0,
        ),
        (
            vec![ResponsesFault::Disconnect],
            Some((tonic::Code::Unavailable, Reason::UpstreamUnavailable)),
            1,
            0,
        ),
        (
            vec![ResponsesFault::Stall { ms: 3000 }],
            Some((tonic::Code::DeadlineExceeded, Reason::StreamIdle)),
            1,
            0,
        ),
    ];
    for (faults, expected, requests, refreshes) in cases {
        let label = format!("{faults:?}");
        let before = r.mock.stats();
        r.mock.state.push_responses_faults(faults);
        let (events, err) = run(&mut r.client, ask("hi")).await;
        let stats = r.mock.stats();
        assert_eq!(
            stats.responses_requests - before.responses_requests,
            requests,
            "{label}: upstream requests"
        );
        assert_eq!(
            stats.refreshes - before.refreshes,
            refreshes,
            "{label}: refreshes"
        );
        match (expected, err) {
            (None, None) => assert_eq!(
                events.last().unwrap().r#type,
                "response.completed",
                "{label}"
            ),
            (Some((code, reason)), Some(e)) => {
                let status_code = match &e {
                    Error::Unauthenticated { .. } => tonic::Code::Unauthenticated,
                    Error::Unavailable { .. } => tonic::Code::Unavailable,
                    Error::ResourceExhausted { .. } => tonic::Code::ResourceExhausted,
                    Error::InvalidArgument { .. } => tonic::Code::InvalidArgument,
                    Error::Other { code, .. } => *code,
                    other => panic!("{label}: unexpected {other:?}"),
                };
                assert_eq!(status_code, code, "{label}: {e}");
                if let Some(got) = e.reason() {
                    assert_eq!(got, reason, "{label}: {e}");
                }
                if let Error::ResourceExhausted {
                    details, message, ..
                } = &e
                    && label.contains("UsageLimit")
                {
                    assert_eq!(details["plan_type"], "plus");
                    assert_eq!(details["resets_at"], "4102444800");
                    assert!(
                        message.contains("plus plan") && message.contains("resets in"),
                        "{message}"
                    );
                }
            }
            (want, got) => panic!(
                "{label}: expected {want:?}, got {got:?} after {} events",
                events.len()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_closes_the_upstream_connection_at_once_over_sse() {
    cancelling(Upstream::Sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_closes_the_upstream_connection_at_once_over_a_websocket() {
    cancelling(Upstream::WebSocket).await;
}

async fn cancelling(upstream: Upstream) {
    let mut r = rig_on(300, upstream).await;
    r.mock.state.set_reply(ReplyShape {
        deltas: Some(10_000),
        delay: Duration::from_millis(20),
        ..ReplyShape::default()
    });
    let mut stream = r.client.complete(ask("go on forever")).await.unwrap();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    assert_eq!(r.mock.stats().open_streams, 1);
    drop(stream);
    assert!(
        wait_until(Duration::from_secs(1), || async {
            let s = r.mock.stats();
            s.open_streams == 0 && s.open_connections == 0 && s.websocket_open == 0
        })
        .await,
        "{:?}",
        r.mock.stats()
    );
}

/// A client reading one event per 100 ms holds up the upstream read: the
/// daemon's memory does not grow with the response (51 MB here).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_keeps_memory_bounded() {
    let mut r = rig().await;
    let (deltas, bytes) = (800usize, 64 * 1024);
    r.mock.state.set_reply(ReplyShape {
        deltas: Some(deltas),
        delta_bytes: bytes,
        ..ReplyShape::default()
    });
    // Warm up allocations with one small completion.
    let (_, err) = run(&mut r.client, ask("warm up")).await;
    assert!(err.is_none(), "{err:?}");
    let before = piauth_tests::process::rss_kb(r.daemon.pid() as u32);
    let sent_before = r.mock.stats().events_sent;
    let mut stream = r.client.complete(ask("a lot")).await.unwrap();
    for _ in 0..30 {
        stream.next().await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = piauth_tests::process::rss_kb(r.daemon.pid() as u32);
    let sent = r.mock.stats().events_sent - sent_before;
    let response_kb = (deltas * bytes / 1024) as u64;
    eprintln!(
        "slow client: RSS {before} kB -> {after} kB while the response is {response_kb} kB; mock sent {sent} events"
    );
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "RSS grew by {} kB",
        after - before
    );
    assert!(
        sent < deltas as u64 / 2,
        "backpressure reached the mock ({sent} events sent)"
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_missing_logins_fail_before_any_upstream_call() {
    let mut r = rig().await;
    let bad = pb::CompletionRequest {
        reasoning_effort: "maximal".into(),
        ..ask("x")
    };
    let (_, err) = run(&mut r.client, bad).await;
    assert!(
        matches!(err, Some(Error::InvalidArgument { .. })),
        "{err:?}"
    );
    let (_, err) = run(
        &mut r.client,
        pb::CompletionRequest {
            model: String::new(),
            ..ask("x")
        },
    )
    .await;
    assert!(err.unwrap().to_string().contains("model is required"));
    assert!(r.client.logout("").await.unwrap());
    let (_, err) = run(&mut r.client, ask("x")).await;
    assert!(
        matches!(
            err,
            Some(Error::Unauthenticated {
                reason: Reason::NotLoggedIn,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(r.mock.stats().responses_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_models_and_the_cli() {
    let mut r = rig().await;
    let models = r.client.list_models().await.unwrap();
    // pi 1.6.0's catalog: what pi offers, pi-authctl lists.
    assert!(models.iter().any(|m| m.id == "gpt-6.2-sol"
        && m.context_window == 500_000
        && m.max_output_tokens == 128_000));
    assert!(models.iter().all(|m| !m.id.starts_with("gpt-5.1")));
    assert_eq!(models.len(), 10);

    let out = r.sb.authctl(&["complete", "hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello from the mock Codex backend.\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("usage: 12 input tokens (4 cached), 6 output tokens")
    );

    let out = r.sb.authctl(&[
        "complete",
        "hello",
        "--json",
        "--effort",
        "low",
        "--session",
        "s-1",
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.first().unwrap()["type"], "response.created");
    assert_eq!(lines.first().unwrap()["http_status"], 200);
    assert_eq!(lines.last().unwrap()["type"], "response.completed");

    let mut child =
        r.sb.command("pi-authctl")
            .args(["complete", "-", "--model", "gpt-6.1-sol"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Hello from"));

    let out = r.sb.authctl(&["models", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 10);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-6.2-sol")
    );
}

/// A completion streaming when the daemon is told to stop: it has nearly
/// the drain limit to finish, then ends with a status that says it was cut
/// (never a clean end that would pass for a whole answer), the upstream
/// request is dropped, and the daemon exits on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_streaming_at_shutdown_ends_in_an_error_and_the_daemon_exits() {
    let mut r = rig().await;
    r.mock.state.set_reply(ReplyShape {
        deltas: Some(100_000),
        delay: Duration::from_millis(10),
        ..ReplyShape::default()
    });
    let mut stream = r.client.complete(ask("a long answer")).await.unwrap();
    while let Some(e) = stream.next().await.unwrap() {
        if text_delta(&e).is_some() {
            break;
        }
    }
    let stopped = Instant::now();
    r.daemon.signal(libc::SIGTERM);
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(other) => break other,
            Err(_) => panic!("the stream neither ended nor failed within 30 s"),
        }
    };
    let Err(e) = end else {
        panic!("a cut stream is an error, not a clean end: {end:?}")
    };
    assert_eq!(e.reason(), Some(Reason::StreamIncomplete), "{e}");
    assert!(e.to_string().contains("shutting down"), "says why: {e}");
    let mut daemon = r.daemon;
    let exit =
        tokio::task::spawn_blocking(move || (daemon.wait_exit(Duration::from_secs(30)), daemon))
            .await
            .unwrap();
    let (exit, daemon) = exit;
    assert!(exit.expect("exits").success(), "{}", daemon.logs());
    assert!(
        stopped.elapsed() < piauthd::DRAIN_LIMIT + Duration::from_secs(5),
        "stopped {:?} after the signal",
        stopped.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            r.mock.stats().open_streams == 0
        })
        .await,
        "the upstream request was dropped"
    );
    assert!(!r.sb.socket().exists());
}
