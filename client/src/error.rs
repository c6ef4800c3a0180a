//! The client's [`Error`]: what went wrong, in terms a caller can act on,
//! from the daemon's status code and `ErrorInfo.reason`, or from reaching
//! (or starting) the daemon at all.

use std::io;
use std::path::{Path, PathBuf};

use piauth_proto::restart::shell_word;
use piauth_proto::v1 as pb;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{StartError, Untrusted};

/// What went wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing serves `socket`. When it is not `default` (a `--socket` or
    /// `PIAUTHD_SOCKET` of the user's), the message says both paths, since
    /// a mistyped path looks exactly like this.
    #[error("{}", not_running_message(socket, default, restart.as_deref()))]
    NotRunning {
        socket: PathBuf,
        /// The default socket of this environment.
        default: PathBuf,
        /// How the daemon last on `socket` was started, when it said
        /// (`piauth_proto::restart`).
        restart: Option<String>,
        #[source]
        source: io::Error,
    },
    /// `socket` exists and is not a socket (auth.json passed as --socket,
    /// say). Nothing was created beside it.
    #[error(
        "{} is {kind}, not a socket: pass the daemon's socket with --socket, e.g. {}",
        socket.display(),
        default.display()
    )]
    NotASocket {
        socket: PathBuf,
        /// What is there instead, in words ("a regular file").
        kind: &'static str,
        default: PathBuf,
    },
    #[error("cannot connect to piauthd at {}: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The socket is not this user's daemon (another user's directory,
    /// socket or server). Nothing was sent to it.
    #[error("refusing to talk to {}: {problem}", socket.display())]
    Untrusted { socket: PathBuf, problem: Untrusted },
    /// Nothing served the default socket and autostart did not change
    /// that: either it refused to go on (its lock is a link, another
    /// user's, or held too long; the message says what to remove) or the
    /// daemon it started failed ([`StartError::daemon_failed`]: no binary,
    /// a refused configuration, an exit at start, never serving). Boxed:
    /// a `StartError` is large, and every call's `Result` carries this.
    #[error("{0}")]
    Autostart(#[source] Box<StartError>),
    /// No credential is stored, or the issuer rejected it: log in again.
    #[error("{message}")]
    Unauthenticated { reason: Reason, message: String },
    /// The daemon refused this caller (another user).
    #[error("{message}")]
    PermissionDenied { message: String },
    /// A transient failure; retrying later may work.
    #[error("{message}")]
    Unavailable { reason: Reason, message: String },
    /// The state forbids the call (corrupt store, token expiring).
    #[error("{message}")]
    FailedPrecondition { reason: Reason, message: String },
    #[error("{message}")]
    InvalidArgument { message: String },
    #[error("{message}")]
    Unimplemented { message: String },
    /// A usage or rate limit; `details` may hold `plan_type`, `resets_at`
    /// (epoch seconds) and `retry_after_secs`.
    #[error("{message}")]
    ResourceExhausted {
        reason: Reason,
        message: String,
        details: std::collections::HashMap<String, String>,
    },
    /// Any other status.
    #[error("piauthd answered {code:?}: {message}")]
    Other { code: Code, message: String },
}

/// The daemon's machine-readable error reason (`ErrorInfo.reason`).
pub type Reason = pb::ErrorReason;

/// What [`Error::NotRunning`] says: how to start the daemon that was
/// looked for (as it was started last, when it said), and, for a path other
/// than the default, what the default is.
fn not_running_message(socket: &Path, default: &Path, restart: Option<&str>) -> String {
    if let Some(command) = restart {
        return format!(
            "piauthd is not running (nothing is listening on {}): start it again as it was started: `{command}`",
            socket.display()
        );
    }
    if socket == default {
        format!(
            "piauthd is not running (nothing is listening on {}): start it with `piauthd`",
            socket.display()
        )
    } else {
        format!(
            "nothing serves {}; the default is {}; start one with `piauthd --socket {}`",
            socket.display(),
            default.display(),
            shell_word(&socket.display().to_string())
        )
    }
}

impl Error {
    /// Whether this is "nothing serves the default socket", the only case in
    /// which a client may start a daemon: any other path is the user's own,
    /// and may be a typo, so no daemon (and no directory) is made for it.
    pub fn is_default_not_running(&self) -> bool {
        matches!(self, Error::NotRunning { socket, default, .. } if socket == default)
    }

    /// The daemon's machine-readable reason, when it gave one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Error::Unauthenticated { reason, .. }
            | Error::Unavailable { reason, .. }
            | Error::FailedPrecondition { reason, .. }
            | Error::ResourceExhausted { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

impl From<StartError> for Error {
    fn from(e: StartError) -> Error {
        Error::Autostart(Box::new(e))
    }
}

impl From<Status> for Error {
    fn from(st: Status) -> Error {
        let info = st
            .get_details_error_info()
            .filter(|i| i.domain == piauth_proto::ERROR_DOMAIN);
        let reason = info
            .as_ref()
            .and_then(|i| Reason::from_str_name(&i.reason))
            .unwrap_or(Reason::Unspecified);
        let message = st.message().to_owned();
        match st.code() {
            Code::Unauthenticated => Error::Unauthenticated { reason, message },
            Code::PermissionDenied => Error::PermissionDenied { message },
            Code::Unavailable => Error::Unavailable { reason, message },
            Code::FailedPrecondition => Error::FailedPrecondition { reason, message },
            Code::InvalidArgument => Error::InvalidArgument { message },
            Code::Unimplemented => Error::Unimplemented { message },
            Code::ResourceExhausted => Error::ResourceExhausted {
                reason,
                message,
                details: info.map(|i| i.metadata).unwrap_or_default(),
            },
            code => Error::Other { code, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_running_names_the_default_only_for_another_path() {
        let d = Path::new("/run/user/1/piauthd/piauthd.sock");
        let msg = not_running_message(d, d, None);
        assert!(msg.contains("start it with `piauthd`"), "{msg}");
        let typo = Path::new("/run/user/1/piauthd/piauthd.scok");
        assert_eq!(
            not_running_message(typo, d, None),
            "nothing serves /run/user/1/piauthd/piauthd.scok; the default is \
             /run/user/1/piauthd/piauthd.sock; start one with \
             `piauthd --socket /run/user/1/piauthd/piauthd.scok`"
        );
        let restart =
            not_running_message(d, d, Some("PIAUTHD_ISSUER=http://i piauthd --agent-dir /a"));
        assert!(
            restart.ends_with(
                "start it again as it was started: `PIAUTHD_ISSUER=http://i piauthd --agent-dir /a`"
            ),
            "{restart}"
        );
        let spaced = not_running_message(Path::new("/tmp/my dir/it's.sock"), d, None);
        assert!(
            spaced.ends_with("`piauthd --socket '/tmp/my dir/it'\\''s.sock'`"),
            "{spaced}"
        );
    }
}
