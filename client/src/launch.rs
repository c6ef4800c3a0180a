//! What an autostarted daemon inherits from the client that starts it:
//! only descriptors 0-2, and only the environment it needs.
//!
//! The first client to find no daemon is an arbitrary process: a shell with
//! secrets in its environment, an editor with files and sockets open, pi
//! itself. The daemon it starts lives on for days and serves every later
//! client, so it must not keep any of that:
//!
//! * **Descriptors.** Everything above 2 is marked close-on-exec in the
//!   child just before `exec` (Linux `close_range(CLOSE_RANGE_CLOEXEC)`,
//!   else `fcntl` on each descriptor up to the soft limit). Marking rather
//!   than closing keeps std's own close-on-exec pipe that reports a failed
//!   `exec` back to the parent. Both calls are async-signal-safe, as a
//!   `pre_exec` hook must be.
//! * **Environment.** Cleared, then an allow-list ([`keep_var`]) of what
//!   the daemon or its libraries read:
//!   `HOME`, `USER`, `LOGNAME` (home, config, keyring user);
//!   `PATH` (nothing is run through it today; kept so a future helper is
//!   found as the user would find it); `XDG_*` (config, state and runtime
//!   directories); `PIAUTHD_*` and `PI_CODING_AGENT_DIR` (its own settings);
//!   `RUST_LOG` (log level); `DBUS_SESSION_BUS_ADDRESS` (the Secret Service
//!   keyring); `TMPDIR`; `LANG`, `LC_*` (messages); `SSL_CERT_FILE`,
//!   `SSL_CERT_DIR` (a corporate CA bundle); `HTTPS_PROXY`, `HTTP_PROXY`,
//!   `ALL_PROXY`, `NO_PROXY` and their lowercase forms (reqwest honours
//!   them, and the issuer is reached through them). Everything else,
//!   notably `LD_PRELOAD`/`DYLD_*`, `NOTIFY_SOCKET` and `LISTEN_*` (which
//!   belong to the client's own supervisor) and any token a shell happens to
//!   export, stays behind.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Names kept exactly.
const EXACT: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "PATH",
    "PI_CODING_AGENT_DIR",
    "RUST_LOG",
    "DBUS_SESSION_BUS_ADDRESS",
    "TMPDIR",
    "LANG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
    "no_proxy",
];

/// Prefixes kept (the daemon's own settings, XDG directories, locale).
const PREFIXES: &[&str] = &["PIAUTHD_", "XDG_", "LC_"];

/// Whether the daemon gets the variable `name` (see the module doc).
pub fn keep_var(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The variables of `vars` the daemon gets, in their order.
pub fn daemon_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.into_iter().filter(|(k, _)| keep_var(k)).collect()
}

/// How far the `fcntl` fallback walks: the soft descriptor limit, capped so
/// an unlimited one does not mean billions of calls.
fn descriptor_bound() -> libc::c_int {
    const CAP: libc::rlim_t = 1 << 16;
    // SAFETY: rlimit is plain data; getrlimit writes it or fails.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: lim is a valid, writable rlimit.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(CAP)
    } else {
        CAP
    };
    soft as libc::c_int
}

/// Sets up `cmd` as a daemon launch: a new session, no descriptor above 2
/// across `exec`, and only [`daemon_env`] of this process's environment.
pub fn prepare(cmd: &mut Command) {
    cmd.env_clear().envs(daemon_env(std::env::vars_os()));
    let bound = descriptor_bound();
    // SAFETY: the hook runs in the forked child before exec and calls only
    // async-signal-safe functions (setsid, syscall, fcntl); it allocates
    // nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            // A new session: Ctrl-C in the client's terminal does not reach it.
            libc::setsid();
            cloexec_above_stdio(bound);
            Ok(())
        });
    }
}

/// Marks every descriptor above 2 close-on-exec. Async-signal-safe.
fn cloexec_above_stdio(bound: libc::c_int) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a raw syscall with plain integer arguments.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if rc == 0 {
            return;
        }
    }
    for fd in 3..bound {
        // SAFETY: fcntl on a descriptor that may not be open just fails
        // with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn describe(vars: &[(OsString, OsString)]) -> Vec<String> {
        vars.iter()
            .map(|(k, _)| String::from_utf8_lossy(k.as_bytes()).into_owned())
            .collect()
    }

    fn vars(names: &[&str]) -> Vec<(OsString, OsString)> {
        names
            .iter()
            .map(|n| (OsString::from(n), OsString::from("v")))
            .collect()
    }

    #[test]
    fn only_what_the_daemon_reads_is_passed_on() {
        let all = vars(&[
            "HOME",
            "PATH",
            "USER",
            "XDG_RUNTIME_DIR",
            "XDG_STATE_HOME",
            "PIAUTHD_ISSUER",
            "PI_CODING_AGENT_DIR",
            "RUST_LOG",
            "DBUS_SESSION_BUS_ADDRESS",
            "LANG",
            "LC_ALL",
            "SSL_CERT_FILE",
            "https_proxy",
            "NO_PROXY",
            "LD_PRELOAD",
            "DYLD_INSERT_LIBRARIES",
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "OPENAI_API_KEY",
            "GITHUB_TOKEN",
            "SSH_AUTH_SOCK",
            "PIAUTHD",
            "xdg_runtime_dir",
        ]);
        let kept = describe(&daemon_env(all));
        assert_eq!(
            kept,
            [
                "HOME",
                "PATH",
                "USER",
                "XDG_RUNTIME_DIR",
                "XDG_STATE_HOME",
                "PIAUTHD_ISSUER",
                "PI_CODING_AGENT_DIR",
                "RUST_LOG",
                "DBUS_SESSION_BUS_ADDRESS",
                "LANG",
                "LC_ALL",
                "SSL_CERT_FILE",
                "https_proxy",
                "NO_PROXY",
            ]
        );
    }

    #[test]
    fn a_non_utf8_name_is_dropped() {
        use std::os::unix::ffi::OsStringExt;
        assert!(!keep_var(&OsString::from_vec(b"XDG_\xff".to_vec())));
    }

    #[test]
    fn the_descriptor_bound_is_positive_and_capped() {
        let b = descriptor_bound();
        assert!(b > 3 && b <= 1 << 16, "{b}");
    }
}
