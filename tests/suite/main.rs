//! End-to-end suite: real binaries, a real Unix socket, real gRPC.

/// Several ChatGPT accounts: added by a login, switched, removed, kept.
mod accounts;
/// The login callback against another local user, and a flood.
mod attack_callback;
/// Another uid against the clients: squatted directories, fake daemons, locks, links, escapes.
mod attack_client;
/// Attacks on the daemon: sudo, a FIFO, a huge file, floods, symlinks.
mod attack_daemon;
/// A real browser, and the CLI in a real terminal.
mod browser;
/// Load with faults.
mod chaos;
/// auth.json passed as the socket: refused, nothing created beside it.
mod collide;
/// A daemon on the mock Codex backend, for the completion tests.
mod completion_rig;
/// Completions relayed from the mock Codex backend.
mod completions;
/// SIGKILL in the middle of refreshes.
mod crash;
/// An unwritable store.
mod degraded;
/// pi-authctl's exit status: one test per row of the README's table.
mod exit_codes;
/// Two accounts under load: a limit moves every session to the other.
mod failover;
/// Upstream failures, one by one.
mod faults;
/// A follower over real OpenSSH: tokens from the owner, through faults.
mod follow;
/// One store under several spellings of its path: one record, one lock.
mod identity;
/// The OS keyring store against a real Secret Service.
mod keyring;
/// Login: callback, paste, device code, cancel, logout.
mod login;
/// The mock Codex backend takes pi 1.6.0's requests.
mod mock_pi16;
/// A fresh clone follows the README's quick start and mock recipe, as written.
mod newcomer;
/// What the tests with the real pi share: clients, output, a file watch.
mod pi_harness;
/// A pi 1.6.0 home with the package installed, for the pi tests.
mod pi_home;
/// The real pi beside the daemon.
mod pi_interop;
/// What a pi user reads from the package when no token can be had.
mod pi_messages;
/// The real pi 1.6.0 with the package in client/pi.
mod pi_package;
/// The real pi 1.6.0 with the package in relay mode: completions through the daemon.
mod pi_relay;
/// An independent client: Python grpcio.
mod python;
/// The refresh broker against the mock issuer.
mod refresh;
/// Process hardening.
mod security;
/// Service units, socket activation, autostart.
mod service;
/// pi's lock while a refresh is on the wire: given back, held, or overruled by the file.
mod short_lock;
/// A 12 s issuer: pi beside the daemon stalls no more than pi alone.
mod slow_issuer;
/// The socket: modes, one instance, stale sockets, signals, foreign uids.
mod socket;
/// The credential store: pi's format, pi's lock, corrupt files.
mod store;
/// GetToken and Status over gRPC, file changes, and log redaction.
mod tokens;
/// pi-authctl usage against the mock's usage endpoint and response headers.
mod usage;
/// The relay's WebSocket: continuation, its limits, SSE fallback, failover.
mod websocket;
