//! What can stop an autostart, and which of those mean that piauthd itself
//! failed.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use super::{LOCK_WAIT, READY_WAIT};
use crate::verify::Untrusted;

/// Why the daemon could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start piauthd ({}): {source}", daemon.display())]
    Spawn {
        daemon: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot prepare {}: {source}", path.display())]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The socket's directory failed a check; nothing was created there.
    #[error("refusing to start piauthd for {}: {problem}", socket.display())]
    Untrusted { socket: PathBuf, problem: Untrusted },
    #[error(
        "{} is a symbolic link; piauthd never follows links there. Remove it (and check where it points)",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error(
        "{} is not a regular file of yours (owner uid {owner}); remove it",
        path.display()
    )]
    ForeignLock { path: PathBuf, owner: u32 },
    #[error(
        "{} has been locked for {}s by {holder}, so piauthd cannot be started safely; \
         stop that process (or remove the lock if it is not yours), or start `piauthd` yourself",
        path.display(),
        LOCK_WAIT.as_secs()
    )]
    LockBusy { path: PathBuf, holder: String },
    /// `piauthd --check-config` refused the configuration; `first` is its
    /// first error line.
    #[error("piauthd cannot start: {first}")]
    Config { first: String },
    #[error("piauthd exited at start ({status}): {first}; its log is {}", log.display())]
    Exited {
        status: ExitStatus,
        first: String,
        log: PathBuf,
    },
    #[error("piauthd did not start serving within {}s; see its log, {}", READY_WAIT.as_secs(), log.display())]
    NotReady { log: PathBuf },
    /// The thread that starts the daemon panicked or was cancelled (the
    /// runtime shutting down); whether a daemon runs now is unknown.
    #[error("the autostart of piauthd was interrupted: {source}")]
    Interrupted {
        #[source]
        source: tokio::task::JoinError,
    },
}

impl StartError {
    /// Whether piauthd itself was tried and failed: it could not be run,
    /// refused its configuration, exited at start or never served. The
    /// other errors are autostart refusing to go on (a lock or directory it
    /// will not use) or being interrupted; callers tell the user different
    /// things for the two (`pi-authctl` exits 3 for the first, 1 for the
    /// rest).
    pub fn daemon_failed(&self) -> bool {
        matches!(
            self,
            StartError::Spawn { .. }
                | StartError::Config { .. }
                | StartError::Exited { .. }
                | StartError::NotReady { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn an_exit_at_start_says_the_status_the_first_line_and_the_log() {
        use std::os::unix::process::ExitStatusExt;
        let exited = |raw| StartError::Exited {
            status: ExitStatus::from_raw(raw),
            first: "the keyring is locked".into(),
            log: PathBuf::from("/state/piauthd/piauthd.log"),
        };
        assert_eq!(
            exited(1 << 8).to_string(),
            "piauthd exited at start (exit status: 1): the keyring is locked; \
             its log is /state/piauthd/piauthd.log"
        );
        let killed = exited(libc::SIGKILL).to_string();
        assert!(
            killed.starts_with("piauthd exited at start (signal: 9"),
            "{killed}"
        );
        // The client's error says the same, and keeps the cause for callers.
        let e = Error::from(exited(1 << 8));
        assert_eq!(e.to_string(), exited(1 << 8).to_string());
        assert!(matches!(&e, Error::Autostart(s) if matches!(**s, StartError::Exited { .. })));
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn only_a_daemon_that_was_tried_counts_as_failed() {
        let log = || PathBuf::from("/l");
        let failed = [
            StartError::Spawn {
                daemon: "/bin/piauthd".into(),
                source: io::ErrorKind::PermissionDenied.into(),
            },
            StartError::Config {
                first: "bad".into(),
            },
            StartError::NotReady { log: log() },
        ];
        for e in &failed {
            assert!(e.daemon_failed(), "{e}");
        }
        let refused = [
            StartError::Symlink { path: log() },
            StartError::ForeignLock {
                path: log(),
                owner: 0,
            },
            StartError::LockBusy {
                path: log(),
                holder: "pid 1".into(),
            },
            StartError::Prepare {
                path: log(),
                source: io::ErrorKind::NotFound.into(),
            },
        ];
        for e in &refused {
            assert!(!e.daemon_failed(), "{e}");
        }
    }
}
