//! Shared harness for piauthd's end-to-end tests.
//!
//! Tests run the real binaries (`piauthd`, `pi-authctl`) as child processes
//! in a fresh temporary directory, talk to them over the real Unix socket
//! with real gRPC, and read the files they leave behind. Nothing here fakes
//! the daemon.

pub mod daemon;
pub mod fixtures;
pub mod mock;
pub mod paste;
pub mod proxy;
pub mod secrets;

pub use daemon::{Daemon, Sandbox, bin_path};
