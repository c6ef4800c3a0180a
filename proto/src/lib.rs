//! The piauthd wire contract, `piauth.v1`, generated from
//! `proto/piauth/v1/piauth.proto`.
//!
//! This crate holds wire types only. The daemon converts them to its own
//! domain types at the `rpc` edge; nothing else in the daemon sees them.

/// Generated messages and services of package `piauth.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("piauth.v1");

    /// Serialized `FileDescriptorSet`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("piauth_descriptor");

    // Messages that carry secrets format them redacted, so a client that
    // logs a response with `{:?}` does not leak the token.
    impl std::fmt::Debug for Token {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Token")
                .field("provider", &self.provider)
                .field("access_token", &"<redacted>")
                .field("expires_at_ms", &self.expires_at_ms)
                .field("account_id", &self.account_id)
                .finish()
        }
    }

    impl std::fmt::Debug for SubmitCodeRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SubmitCodeRequest")
                .field("provider", &self.provider)
                .field("input", &"<redacted>")
                .finish()
        }
    }
}

/// The provider id used when a request leaves `provider` empty.
pub const DEFAULT_PROVIDER: &str = "openai-codex";

/// The `google.rpc.ErrorInfo.domain` of every error the daemon returns.
pub const ERROR_DOMAIN: &str = "piauth.v1";

/// Where the daemon's socket lives, so the daemon and every client agree.
pub mod socket {
    use std::path::{Path, PathBuf};

    /// The socket's file name inside its directory.
    pub const FILE_NAME: &str = "piauthd.sock";

    /// The default socket path for this process's user: see [`default_path_for`].
    pub fn default_path() -> PathBuf {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        default_path_for(runtime.as_deref().map(Path::new), uid)
    }

    /// `$XDG_RUNTIME_DIR/piauthd/piauthd.sock` when the runtime directory is
    /// set (systemd user sessions), else `/tmp/piauthd-<uid>/piauthd.sock`.
    /// The fallback stays short because macOS limits socket paths to 104
    /// bytes and its per-user `$TMPDIR` is already long; the daemon creates
    /// the directory 0700 and refuses one owned by another user.
    pub fn default_path_for(xdg_runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
        match xdg_runtime_dir {
            Some(dir) => dir.join("piauthd").join(FILE_NAME),
            None => PathBuf::from(format!("/tmp/piauthd-{uid}")).join(FILE_NAME),
        }
    }
}
