//! Server-Sent Events, parsed incrementally (docs/PROTOCOL.md §3).
//!
//! Events are separated by a blank line; CRLF is tolerated; only `data:`
//! lines count, joined with `\n`; `[DONE]` and empty payloads are skipped; a
//! final event without a trailing blank line is still delivered by
//! [`SseParser::finish`]. Bytes arrive in arbitrary chunks, so the parser
//! keeps the unfinished tail between calls and never holds more than one
//! event's worth of text.

/// One event's data payload (the JSON text).
pub type Payload = String;

/// Why the stream cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

/// An incremental SSE parser.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes after the last complete line.
    partial: Vec<u8>,
    /// `data:` lines of the event being read, joined with `\n`.
    data: String,
    /// Whether the event being read has any `data:` line.
    has_data: bool,
    /// Size of the event being read, for the limit.
    size: usize,
}

/// The largest event accepted (a whole response.completed can be big).
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds bytes; returns the payloads of the events they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Payload>, SseError> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl);
            rest = &tail[1..];
            let full;
            let line = if self.partial.is_empty() {
                line
            } else {
                self.partial.extend_from_slice(line);
                full = std::mem::take(&mut self.partial);
                &full[..]
            };
            self.line(line.strip_suffix(b"\r").unwrap_or(line), &mut out)?;
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() + self.size > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge {
                limit: MAX_EVENT_BYTES,
            });
        }
        Ok(out)
    }

    /// Ends the stream: delivers a last event that had no blank line after it.
    pub fn finish(&mut self) -> Result<Vec<Payload>, SseError> {
        let mut out = Vec::new();
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(line.strip_suffix(b"\r").unwrap_or(&line), &mut out)?;
        }
        self.dispatch(&mut out);
        Ok(out)
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Payload>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        self.size += line.len();
        if self.size > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge {
                limit: MAX_EVENT_BYTES,
            });
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(&String::from_utf8_lossy(value));
            self.has_data = true;
        }
        // `event:`, `id:`, `retry:` and comments (`:`) are ignored: the
        // JSON `type` decides the event.
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Payload>) {
        self.size = 0;
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        let payload = std::mem::take(&mut self.data);
        let trimmed = payload.trim();
        if trimmed.is_empty() || trimmed == "[DONE]" {
            return;
        }
        out.push(payload);
    }
}

/// Appends `payload` to `out` as one event: each of its lines on a `data:`
/// line, then a blank line. What [`SseParser`] reads back as `payload`.
pub fn write_event(out: &mut Vec<u8>, payload: &str) {
    for line in payload.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Parses a whole body at once (for tests and small answers).
#[cfg(test)]
pub fn parse_all(body: &[u8]) -> Result<Vec<Payload>, SseError> {
    let mut p = SseParser::new();
    let mut out = p.push(body)?;
    out.extend(p.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn written_events_parse_back_unchanged() {
        let payloads = [
            "{\"type\":\"a\"}",
            "line one\nline two",
            "{\"t\":\"data: x\"}",
        ];
        let mut out = Vec::new();
        for p in payloads {
            write_event(&mut out, p);
        }
        assert_eq!(parse_all(&out).unwrap(), payloads);
    }

    #[test]
    fn splits_events_on_blank_lines() {
        let body = b"event: x\ndata: {\"a\":1}\n\ndata: {\"b\":2}\n\n";
        assert_eq!(parse_all(body).unwrap(), vec!["{\"a\":1}", "{\"b\":2}"]);
    }

    #[test]
    fn tolerates_crlf_and_joins_multiline_data() {
        let body = b"data: {\"a\":\r\ndata: 1}\r\n\r\n";
        assert_eq!(parse_all(body).unwrap(), vec!["{\"a\":\n1}"]);
    }

    #[test]
    fn skips_done_empty_and_comments() {
        let body = b": keep-alive\n\ndata: [DONE]\n\ndata:\n\ndata: {}\n\n";
        assert_eq!(parse_all(body).unwrap(), vec!["{}"]);
    }

    #[test]
    fn delivers_a_final_event_without_a_blank_line() {
        assert_eq!(parse_all(b"data: {\"x\":1}").unwrap(), vec!["{\"x\":1}"]);
        assert_eq!(parse_all(b"data: {\"x\":1}\n").unwrap(), vec!["{\"x\":1}"]);
    }

    #[test]
    fn data_without_a_space_after_the_colon() {
        assert_eq!(parse_all(b"data:{\"x\":1}\n\n").unwrap(), vec!["{\"x\":1}"]);
    }

    #[test]
    fn refuses_an_endless_event() {
        let mut p = SseParser::new();
        let line = vec![b'a'; 1024 * 1024];
        let mut err = None;
        for _ in 0..20 {
            if let Err(e) = p.push(&line) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(err, Some(SseError::TooLarge { .. })));
    }

    proptest! {
        /// However the bytes are split into chunks, the same events come out.
        #[test]
        fn chunking_does_not_matter(
            events in proptest::collection::vec("[a-z0-9{}\":, ]{0,40}", 0..8),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(0usize..400, 0..12),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let body: String = events.iter().map(|e| format!("data: {e}{nl}{nl}")).collect();
            let whole = parse_all(body.as_bytes()).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut p = SseParser::new();
            let mut got = Vec::new();
            let mut last = 0;
            for c in cuts {
                got.extend(p.push(&body.as_bytes()[last..c]).unwrap());
                last = c;
            }
            got.extend(p.push(&body.as_bytes()[last..]).unwrap());
            got.extend(p.finish().unwrap());
            prop_assert_eq!(&got, &whole);
            let expected: Vec<String> = events
                .iter()
                .map(|e| e.to_string())
                .filter(|e| !e.trim().is_empty() && e.trim() != "[DONE]")
                .collect();
            prop_assert_eq!(whole, expected);
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = parse_all(&bytes);
        }
    }
}
