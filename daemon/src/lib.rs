//! piauthd: one per-user process that owns pi's OpenAI Codex login.
//!
//! Many pi sessions share one ChatGPT login whose refresh tokens are
//! single-use. piauthd keeps that login in one place, serves fresh access
//! tokens over a private gRPC Unix socket, and speaks pi's own file and lock
//! protocol so it can run beside pi processes that still touch `auth.json`.
//!
//! # Layout
//!
//! * [`config`]: defaults, config file, environment and flags (pure).
//! * [`secret`]: `Secret<T>`, which never formats its contents.
//! * [`oauth`]: pure OAuth logic (JWT claims).
//! * [`store`]: pi's `auth.json`, its lock directory, durable writes, and
//!   the file watcher.
//! * [`upstream`]: HTTP to the issuer, with errors sorted by whether the
//!   request may have been sent.
//! * [`broker`]: the in-memory credentials and every decision about them;
//!   the only writer of the store.
//! * [`callback`]: the loopback listener that exists only during a login.
//! * [`login`]: the browser, paste and device-code flows.
//! * [`codex`]: the Codex Responses relay (SSE parsing, request building,
//!   error mapping, streaming).
//! * [`socket`]: the private socket directory and one-instance lock.
//! * [`rpc`]: the tonic services; the only module that sees proto types.
//! * [`supervisor`]: systemd socket activation and readiness notification.
//! * [`serving`]: which stores a running daemon serves, so a store move
//!   refuses to pull one from under it.
//! * [`server`]: wires them together and runs until shutdown.
//! * [`wire`]: the leniency shared by the JSON shapes read from peers.

pub mod broker;
pub mod callback;
pub mod codex;
pub mod config;
pub mod login;
pub mod oauth;
pub mod rpc;
pub mod secret;
pub mod server;
pub mod serving;
pub mod socket;
pub mod store;
pub mod supervisor;
pub mod upstream;
pub mod wire;

pub use config::Config;
pub use server::{Listen, RunError, run, run_with};
