//! Reaching the daemon, starting it when the rules allow, and the exit
//! status each failure maps to.
//!
//! A daemon is started only for the default socket: a `--socket` or
//! `PIAUTHD_SOCKET` that nothing serves may be a typo, and a second daemon
//! there would refresh the same `auth.json` as the first (see
//! `piauth_client::autostart`).

use std::path::PathBuf;

use piauth_client::{Client, Error, Reason};

use crate::service;

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
pub async fn connect(socket: PathBuf, no_autostart: bool) -> Result<Client, Error> {
    let err = match Client::connect(&socket).await {
        Ok(c) => return Ok(c),
        Err(e) if e.is_default_not_running() => e,
        // Another path that nothing serves, or a refused socket.
        Err(e) => return Err(e),
    };
    let platform = service::Platform::current();
    if service::installed(platform) {
        let hint = match platform {
            service::Platform::Systemd => "systemctl --user start piauthd.socket",
            service::Platform::Launchd => "launchctl kickstart gui/$UID/dev.piauthd",
        };
        return Err(Error::NotStarted(format!(
            "{err}; the piauthd service is installed but not running: start it with `{hint}`"
        )));
    }
    let disabled =
        no_autostart || std::env::var_os("PIAUTHD_NO_AUTOSTART").is_some_and(|v| v != "0");
    if disabled {
        return Err(err);
    }
    let daemon =
        service::piauthd_path().map_err(|e| Error::NotStarted(format!("{err}, and {e}")))?;
    let opts = piauth_client::autostart::StartOptions {
        daemon,
        log: service::log_path().map_err(Error::NotStarted)?,
    };
    let (client, started) = piauth_client::autostart::connect_or_start(&socket, &opts).await?;
    if let piauth_client::autostart::Started::Started(pid) = started {
        say!(
            "pi-authctl: started piauthd (pid {pid}) in the background; its log is {}",
            opts.log.display()
        );
    }
    Ok(client)
}

/// The exit status for a failure (the table in `--help` and the README).
pub fn exit_code(e: &Error) -> u8 {
    match e {
        // Not running, and not started: autostart off or failed, or a
        // socket nothing serves. (A refused autostart lock is an error, 1.)
        Error::NotRunning { .. } | Error::NotStarted(_) => 3,
        Error::Unauthenticated { .. } => 4,
        Error::FailedPrecondition { reason, .. } if *reason == Reason::TokenExpiring => 4,
        _ => 1,
    }
}

/// `e`, reworded where the daemon's own words would mislead at the command
/// line: a provider other than openai-codex that is not logged in cannot be
/// fixed with `pi-authctl login`, which logs in only to openai-codex.
pub fn explain(e: &Error, provider: Option<&str>) -> String {
    match (e, provider) {
        (Error::Unauthenticated { reason, .. }, Some(p))
            if p != "openai-codex" && *reason == Reason::NotLoggedIn =>
        {
            format!(
                "{p} has no credential in the store; piauthd logs in only to openai-codex, \
                 so log in to {p} with pi itself (`pi`, then /login)"
            )
        }
        _ => e.to_string(),
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

    #[test]
    fn only_openai_codex_is_sent_to_pi_authctl_login() {
        let e = not_logged_in();
        assert_eq!(explain(&e, Some("openai-codex")), e.to_string());
        assert_eq!(explain(&e, None), e.to_string());
        let other = explain(&e, Some("anthropic"));
        assert!(
            other.contains("log in to anthropic with pi itself"),
            "{other}"
        );
        assert!(!other.contains("pi-authctl login"), "{other}");
        assert_eq!(exit_code(&e), 4);
    }

    #[test]
    fn a_daemon_that_was_not_started_is_status_3() {
        assert_eq!(exit_code(&Error::NotStarted("piauthd not found".into())), 3);
        assert_eq!(exit_code(&Error::Autostart("the lock is a link".into())), 1);
        let e = Error::InvalidArgument {
            message: "bad".into(),
        };
        assert_eq!(exit_code(&e), 1);
    }
}
