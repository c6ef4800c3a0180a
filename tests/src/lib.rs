//! Shared harness for piauthd's end-to-end tests.
//!
//! Tests run the real binaries (`piauthd`, `pi-authctl`) as child processes
//! in a fresh temporary directory, talk to them over the real Unix socket
//! with real gRPC, and read the files they leave behind. Nothing here fakes
//! the daemon.

/// Two ChatGPT accounts: A in auth.json, B from the mock's login.
pub mod accounts;
/// Starting the real daemon, and reading what it leaves.
pub mod daemon;
/// Credentials shaped as pi writes them.
pub mod fixtures;
/// What this machine offers a test: root, a free port, a tool.
pub mod host;
/// The mock OpenAI issuer and Codex backend.
pub mod mock;
pub mod paste;
/// What a running process uses, from /proc.
pub mod process;
pub mod proxy;
/// The private directory and environment of a test.
pub mod sandbox;
pub mod secrets;
/// A real OpenSSH server on loopback.
pub mod sshd;
/// Waiting for an event, with a deadline only for failing.
pub mod wait;

pub use daemon::Daemon;
pub use sandbox::{Sandbox, bin_path};
