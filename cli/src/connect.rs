//! Reaching the daemon, starting it when the rules allow, and the exit
//! status each failure maps to.
//!
//! A daemon is started only for the default socket: a `--socket` or
//! `PIAUTHD_SOCKET` that nothing serves may be a typo, and a second daemon
//! there would refresh the same `auth.json` as the first (see
//! `piauth_client::autostart`).

use std::path::PathBuf;

use piauth_client::{Client, Error, Reason};

use crate::paths::{self, PathError};
use crate::service::{self, Platform};

/// Why no daemon could be reached, in the CLI's own terms: the cases the
/// client library cannot know about (a service of this machine's, finding
/// the piauthd binary and its log) beside the client's [`Error`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Client(#[from] Error),
    /// Nothing serves the default socket, and a service that should start
    /// piauthd on demand is installed: autostarting a second daemon beside
    /// it would be wrong, so the user is told how to start the service.
    #[error(
        "{not_running}; the piauthd service is installed but not running: start it with `{}`",
        start_hint(*platform)
    )]
    ServiceStopped {
        #[source]
        not_running: Error,
        platform: Platform,
    },
    /// Autostart found no piauthd binary to start.
    #[error("{not_running}, and {source}")]
    NoDaemon {
        not_running: Error,
        #[source]
        source: PathError,
    },
    /// Autostart found no place for the daemon's log (no HOME).
    #[error("{not_running}, and the log of an autostarted piauthd has no place: {source}")]
    NoLog {
        not_running: Error,
        #[source]
        source: PathError,
    },
}

impl ConnectError {
    /// Whether this means "piauthd is not running and was not started"
    /// (exit status 3) for a reason only the CLI knows. When false, the
    /// client's [`Error`] next in the chain decides.
    pub fn not_started(&self) -> bool {
        !matches!(self, ConnectError::Client(_))
    }
}

/// The command that starts an installed but stopped service.
fn start_hint(platform: Platform) -> &'static str {
    match platform {
        Platform::Systemd => "systemctl --user start piauthd.socket",
        Platform::Launchd => "launchctl kickstart gui/$UID/dev.piauthd",
    }
}

/// The socket to use: the one given, else the default (whose note, when it
/// had to fall back to `/tmp`, is said once).
pub fn socket(given: Option<PathBuf>) -> PathBuf {
    match given {
        Some(s) => s,
        None => {
            let default = piauth_client::proto::socket::default_socket();
            if let Some(note) = &default.note {
                say!("pi-authctl: {note}");
            }
            default.path
        }
    }
}

/// Connects to the daemon, starting it in the background when nothing
/// answers on the default socket, no service is installed, and autostart
/// is not turned off.
pub async fn connect(socket: PathBuf, no_autostart: bool) -> Result<Client, ConnectError> {
    let not_running = match Client::connect(&socket).await {
        Ok(c) => return Ok(c),
        Err(e) if e.is_default_not_running() => e,
        // Another path that nothing serves, or a refused socket.
        Err(e) => return Err(e.into()),
    };
    let platform = Platform::current();
    if service::installed(platform) {
        return Err(ConnectError::ServiceStopped {
            not_running,
            platform,
        });
    }
    let disabled =
        no_autostart || std::env::var_os("PIAUTHD_NO_AUTOSTART").is_some_and(|v| v != "0");
    if disabled {
        return Err(not_running.into());
    }
    let daemon = match paths::piauthd_path() {
        Ok(d) => d,
        Err(source) => {
            return Err(ConnectError::NoDaemon {
                not_running,
                source,
            });
        }
    };
    let log = match paths::log_path() {
        Ok(l) => l,
        Err(source) => {
            return Err(ConnectError::NoLog {
                not_running,
                source,
            });
        }
    };
    let opts = piauth_client::autostart::StartOptions { daemon, log };
    let (client, started) = piauth_client::autostart::connect_or_start(&socket, &opts).await?;
    if let piauth_client::autostart::Started::Started(pid) = started {
        say!(
            "pi-authctl: started piauthd (pid {pid}) in the background; its log is {}",
            opts.log.display()
        );
    }
    Ok(client)
}

/// The exit status for a client failure (the table in `--help` and the
/// README).
pub fn exit_code(e: &Error) -> u8 {
    match e {
        // Not running, and not started: autostart off or failed, or a
        // socket nothing serves. (A refused autostart lock is an error, 1.)
        Error::NotRunning { .. } => 3,
        Error::Autostart(start) if start.daemon_failed() => 3,
        Error::Unauthenticated { .. } => 4,
        Error::FailedPrecondition { reason, .. } if *reason == Reason::TokenExpiring => 4,
        _ => 1,
    }
}

/// `e` reworded where the daemon's own words would mislead at the command
/// line: a provider other than openai-codex that is not logged in cannot be
/// fixed with `pi-authctl login`, which logs in only to openai-codex.
/// `None`: the error says it well enough.
pub fn reword(e: &Error, provider: Option<&str>) -> Option<String> {
    match (e, provider) {
        (Error::Unauthenticated { reason, .. }, Some(p))
            if p != "openai-codex" && *reason == Reason::NotLoggedIn =>
        {
            Some(format!(
                "{p} has no credential in the store; piauthd logs in only to openai-codex, \
                 so log in to {p} with pi itself (`pi`, then /login)"
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_logged_in() -> Error {
        Error::Unauthenticated {
            reason: Reason::NotLoggedIn,
            message: "not logged in: run `pi-authctl login`".into(),
        }
    }

    fn not_running() -> Error {
        Error::NotRunning {
            socket: "/run/user/1/piauthd/piauthd.sock".into(),
            default: "/run/user/1/piauthd/piauthd.sock".into(),
            restart: None,
            source: std::io::ErrorKind::NotFound.into(),
        }
    }

    #[test]
    fn only_openai_codex_is_sent_to_pi_authctl_login() {
        let e = not_logged_in();
        assert_eq!(reword(&e, Some("openai-codex")), None);
        assert_eq!(reword(&e, None), None);
        let other = reword(&e, Some("anthropic")).unwrap();
        assert!(
            other.contains("log in to anthropic with pi itself"),
            "{other}"
        );
        assert!(!other.contains("pi-authctl login"), "{other}");
        assert_eq!(exit_code(&e), 4);
    }

    #[test]
    fn the_cli_only_failures_say_what_was_not_running_and_why() {
        let stopped = ConnectError::ServiceStopped {
            not_running: not_running(),
            platform: Platform::Systemd,
        };
        assert_eq!(
            stopped.to_string(),
            "piauthd is not running (nothing is listening on /run/user/1/piauthd/piauthd.sock): \
             start it with `piauthd`; the piauthd service is installed but not running: \
             start it with `systemctl --user start piauthd.socket`"
        );
        let launchd = ConnectError::ServiceStopped {
            not_running: not_running(),
            platform: Platform::Launchd,
        };
        assert!(
            launchd
                .to_string()
                .ends_with("start it with `launchctl kickstart gui/$UID/dev.piauthd`"),
            "{launchd}"
        );
        let no_daemon = ConnectError::NoDaemon {
            not_running: not_running(),
            source: PathError::NoDaemon,
        };
        assert!(
            no_daemon.to_string().ends_with(
                "start it with `piauthd`, and cannot find the piauthd binary beside pi-authctl or on PATH"
            ),
            "{no_daemon}"
        );
        let no_log = ConnectError::NoLog {
            not_running: not_running(),
            source: PathError::NoHome,
        };
        assert!(
            no_log
                .to_string()
                .ends_with("has no place: HOME is not set, or not an absolute path"),
            "{no_log}"
        );
        for e in [stopped, no_daemon, no_log] {
            assert!(e.not_started(), "{e}");
        }
        assert!(!ConnectError::Client(not_running()).not_started());
    }
}
