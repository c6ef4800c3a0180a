//! Handing a relay's events to the call that answers the client: in
//! batches of the events that were ready together ([`Ready`]), bounded in
//! events and in bytes, over a bounded channel ([`Handover`]). The two
//! bounds together are what a slow client can make the daemon hold.

use tokio::sync::mpsc;

use super::events::{ResponseInfo, Usage};
use super::failure::CodexError;
use crate::broker::TokenError;

/// The most events handed to the client at once (see [`super::Codex`]'s stream).
pub const READY_EVENTS: usize = 256;
/// The most event bytes handed to the client at once, unless one event is
/// larger: what bounds the memory a slow client holds, with the channel's
/// capacity in batches.
pub const READY_BYTES: usize = 64 * 1024;

/// What the daemon tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub event_type: String,
    pub data_json: String,
    /// On the first event only.
    pub response: Option<ResponseInfo>,
    /// On the terminal event only.
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Codex(#[from] CodexError),
}

/// Where a relay hands its batches over, to the call that answers the client.
pub type Handover = mpsc::Sender<Result<Vec<Relayed>, RelayError>>;

/// The events that go to the client together: at most [`READY_EVENTS`],
/// and at most [`READY_BYTES`] of JSON unless one event alone is more.
#[derive(Debug, Default)]
pub struct Ready {
    events: Vec<Relayed>,
    bytes: usize,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether no event may join.
    pub fn full(&self) -> bool {
        self.events.len() >= READY_EVENTS || self.bytes >= READY_BYTES
    }

    /// Whether an event of `bytes` may join.
    pub fn fits(&self, bytes: usize) -> bool {
        self.is_empty() || (self.events.len() < READY_EVENTS && self.bytes + bytes <= READY_BYTES)
    }

    pub fn push(&mut self, event: Relayed) {
        self.bytes += event.data_json.len();
        self.events.push(event);
    }

    pub fn take(&mut self) -> Vec<Relayed> {
        self.bytes = 0;
        std::mem::take(&mut self.events)
    }
}

/// Sends `batch` as one, leaving it empty; false when the client went
/// away. Bounded: waits while the client is slow.
pub async fn hand_over(tx: &Handover, batch: &mut Ready) -> bool {
    batch.is_empty() || tx.send(Ok(batch.take())).await.is_ok()
}

/// [`hand_over`], then `end` (a client that went away is no failure).
pub async fn hand_over_then(
    tx: &Handover,
    batch: &mut Ready,
    end: Result<(), RelayError>,
) -> Result<(), RelayError> {
    if hand_over(tx, batch).await {
        end
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bytes: usize) -> Relayed {
        Relayed {
            event_type: "response.output_text.delta".into(),
            data_json: "x".repeat(bytes),
            response: None,
            usage: None,
        }
    }

    #[test]
    fn a_batch_is_bounded_by_events_and_by_bytes() {
        let mut ready = Ready::default();
        assert!(
            ready.fits(READY_BYTES * 4),
            "one event of any size fits alone"
        );
        for _ in 0..READY_EVENTS {
            assert!(ready.fits(10) && !ready.full());
            ready.push(event(10));
        }
        assert!(ready.full() && !ready.fits(10));
        assert_eq!(ready.take().len(), READY_EVENTS);
        assert!(ready.is_empty() && ready.fits(10));
        ready.push(event(READY_BYTES - 10));
        assert!(
            ready.fits(10) && !ready.fits(11),
            "bytes: at most READY_BYTES"
        );
        ready.push(event(10));
        assert!(ready.full());
    }
}
