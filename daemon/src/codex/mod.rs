//! The Codex Responses relay (docs/PROTOCOL.md §3): clients stream completions
//! through the daemon and never hold the token.
//!
//! * [`sse`]: the incremental SSE parser (pure, property-tested).
//! * [`events`]: reading the events, from either transport (pure).
//! * [`request`]: the request body and headers (pure).
//! * [`continuation`]: which turns may continue the last one (pure).
//! * [`failure`]: sorting failures into what the client should do (pure).
//! * [`websocket`]: the WebSocket upgrade and the sessions' connections.
//! * [`transport`]: opening a response over either transport.
//! * [`handover`]: the relayed events, in bounded batches to the client.
//! * [`relay`]: the I/O: send, retry before the first event, relay.
//! * [`models`]: the models `ListModels` reports.

pub mod continuation;
pub mod events;
pub mod failure;
pub mod handover;
pub mod models;
pub mod relay;
pub mod request;
pub mod sse;
pub mod transport;
pub mod websocket;

pub use failure::CodexError;
pub use relay::{Codex, RelayError, Relayed};
pub use request::Ask;
