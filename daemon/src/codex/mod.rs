//! The Codex Responses relay (docs/PROTOCOL.md §3): clients stream completions
//! through the daemon and never hold the token.
//!
//! * [`sse`]: the incremental SSE parser (pure, property-tested).
//! * [`request`]: the request body and headers (pure).
//! * [`failure`]: sorting failures into what the client should do (pure).
//! * [`relay`]: the I/O: send, retry before the first event, relay.
//! * [`models`]: the models `ListModels` reports.

pub mod failure;
pub mod models;
pub mod relay;
pub mod request;
pub mod sse;

pub use failure::CodexError;
pub use relay::{Codex, RelayError, Relayed};
pub use request::Ask;
