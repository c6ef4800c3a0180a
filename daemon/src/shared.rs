//! What the daemon shares with its clients, from `piauth-proto`: the
//! provider's name, the default socket path, the XDG base directories, and
//! the start command a daemon leaves beside its socket.
//!
//! This is the one module outside [`crate::rpc`] that names the proto
//! crate (checked by `tests/module_boundaries.rs`), so the wire types stay
//! in `rpc` and everything else sees plain Rust values.

pub use piauth_proto::DEFAULT_PROVIDER;
pub use piauth_proto::paths::{BaseDirs, PIAUTHD};
pub use piauth_proto::restart;
pub use piauth_proto::socket::{
    Inputs as SocketInputs, MAX_PATH_BYTES, choose as choose_socket,
    default_path as default_socket, default_path_for as default_socket_for,
};
