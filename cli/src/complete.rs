//! `pi-authctl complete`: stream a completion through the daemon.
//!
//! On a terminal the model's text goes through [`TerminalText`], so escape
//! sequences in a reply (an OSC 52 clipboard write, a screen clear) are
//! shown as nothing rather than obeyed; `--raw`, a pipe or a file get the
//! text byte for byte. `--json` needs no filter: JSON escapes controls.

use std::io::{IsTerminal, Read, Write};

use crate::args::CompleteArgs;
use crate::render::TerminalText;

use piauth_client::proto::v1 as pb;
use piauth_client::{Client, text_delta};

use crate::out::{SignalError, WriteError};
use serde_json::json;

/// Why a completion stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error("cannot read the prompt from stdin: {0}")]
    Prompt(#[source] std::io::Error),
    #[error("{0}")]
    Client(#[from] piauth_client::Error),
    #[error("{0}")]
    Stdout(#[from] WriteError),
    #[error("{0}")]
    Signal(#[from] SignalError),
}

/// Reads the prompt: `-` means standard input.
pub fn read_prompt(arg: &str) -> Result<String, CompleteError> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(CompleteError::Prompt)?;
        Ok(text)
    } else {
        Ok(arg.to_owned())
    }
}

/// Streams the completion; returns false if it was cancelled. A stdout
/// that cannot be written ends it (the stream is dropped, so the daemon
/// aborts the upstream request rather than finish an unread reply).
pub async fn run(client: &mut Client, p: CompleteArgs) -> Result<bool, CompleteError> {
    let input =
        json!([{ "role": "user", "content": [{ "type": "input_text", "text": p.prompt }] }]);
    let req = pb::CompletionRequest {
        model: p.model,
        instructions: p.system,
        input_json: input.to_string(),
        reasoning_effort: p.effort.unwrap_or_default(),
        session_id: p.session.unwrap_or_default(),
        ..Default::default()
    };
    let mut interrupt = crate::out::interrupts()?;
    let mut stream = client.complete(req).await?;
    let mut out = std::io::stdout().lock();
    let mut filter = (!p.raw && out.is_terminal()).then(TerminalText::default);
    let mut usage = None;
    let mut wrote_text = false;
    loop {
        let event = tokio::select! {
            e = stream.next() => e?,
            _ = interrupt.recv() => {
                // Dropping the stream makes the daemon abort the request.
                drop(stream);
                if wrote_text { let _ = writeln!(out); }
                say!("pi-authctl: cancelled");
                return Ok(false);
            }
        };
        let Some(event) = event else { break };
        if let Some(u) = &event.usage {
            usage = Some(*u);
        }
        if p.json {
            let data: serde_json::Value =
                serde_json::from_str(&event.data_json).unwrap_or(serde_json::Value::Null);
            let mut line = json!({ "type": event.r#type, "data": data });
            if let Some(info) = &event.response {
                line["http_status"] = info.http_status.into();
                line["rate_limits"] = json!(info.rate_limit_headers);
            }
            writeln!(out, "{line}").map_err(WriteError)?;
        } else if let Some(text) = text_delta(&event) {
            let text = match &mut filter {
                Some(f) => f.push(&text),
                None => text,
            };
            write!(out, "{text}").map_err(WriteError)?;
            wrote_text = true;
        }
        out.flush().map_err(WriteError)?;
    }
    if wrote_text {
        writeln!(out).map_err(WriteError)?;
    }
    if let Some(u) = usage {
        say!(
            "usage: {} input tokens ({} cached), {} output tokens",
            u.input_tokens,
            u.cached_input_tokens,
            u.output_tokens
        );
    }
    Ok(true)
}
