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
//! * [`shared`]: what the daemon shares with its clients (the provider's
//!   name, the socket and XDG paths): the one use of `piauth-proto`
//!   outside [`rpc`].

mod accounts;
mod backoff;
mod base_url;
mod broker;
mod callback;
mod causes;
mod codex;
mod config;
mod forward;
mod login;
mod migrate;
mod oauth;
mod paths;
mod rpc;
mod secret;
mod server;
mod serving;
mod shared;
mod socket;
mod store;
mod supervisor;
mod throttle;
mod upstream;
mod usage;
mod wire;

// The crate's whole public API: what `main` runs, and what the suite's
// store tests and benchmarks drive directly. Everything else is private,
// so an internal helper never becomes API by accident.
pub use codex::sse::SseParser;
pub use config::{
    Config, ConfigError, Environment, Settings, StoreKind, default_config_path,
    load_file as load_config_file, resolve as resolve_config, shown as shown_url, ssh_words,
};
pub use migrate::{Direction, MigrateError, migrate as migrate_store};
pub use rpc::{MAX_CONNECTIONS, nofile_target};
pub use secret::{Secret, library_event_leaks};
pub use server::{DRAIN_LIMIT, Listen, RunError, run, run_with};
pub use shared::restart;
pub use store::{
    Credential, CredentialStore, LockError, OAuthCredential, PiLock, StoreError, lock_path,
    recover_orphan,
};
pub use supervisor::take_listener;
