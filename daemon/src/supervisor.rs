//! Talking to the service manager: systemd's socket activation
//! (`LISTEN_FDS`) and readiness notification (`NOTIFY_SOCKET`).
//!
//! Both are tiny protocols, spoken directly: a passed listening socket is
//! file descriptor 3 when `LISTEN_PID` is our pid, and a notification is one
//! datagram of `KEY=value` lines to the socket named by `NOTIFY_SOCKET`.
//! Started by hand (or by launchd), neither variable is set and both are
//! no-ops: the daemon behaves the same.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::PathBuf;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Which passed descriptor to use, from the environment's values. Pure.
pub fn passed_fd(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    our_pid: u32,
) -> Option<RawFd> {
    let pid: u32 = listen_pid?.trim().parse().ok()?;
    let fds: u32 = listen_fds?.trim().parse().ok()?;
    (pid == our_pid && fds >= 1).then_some(LISTEN_FDS_START)
}

/// A listening socket passed by systemd, if there is one. Clears the
/// variables so no child inherits them.
pub fn take_listener() -> io::Result<Option<(UnixListener, PathBuf)>> {
    let fd = passed_fd(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::process::id(),
    );
    // SAFETY: the daemon is still single-threaded when this runs (main calls
    // it before starting the runtime), so nothing reads the environment
    // concurrently.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let Some(fd) = fd else {
        return Ok(None);
    };
    // SAFETY: systemd passed us this descriptor; we take sole ownership.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    let addr = listener.local_addr().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("the socket passed by systemd (fd {fd}) is not a Unix socket: {e}"),
        )
    })?;
    let path = addr.as_pathname().map(PathBuf::from).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket passed by systemd has no path",
        )
    })?;
    listener.set_nonblocking(true)?;
    // SAFETY: as above, still single-threaded.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some((listener, path)))
}

/// Sends a notification to the service manager, if there is one.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| {
        let sock = UnixDatagram::unbound()?;
        let bytes = target.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)?;
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = name;
                return Err(io::Error::other("abstract sockets exist on Linux only"));
            }
        } else {
            sock.send_to(state.as_bytes(), &target)?;
        }
        Ok::<_, io::Error>(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// The `STATUS=` text, one line for people.
pub fn status_line(text: &str) -> String {
    format!("STATUS={}", text.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_fd_3_only_when_meant_for_us() {
        assert_eq!(passed_fd(Some("42"), Some("1"), 42), Some(3));
        assert_eq!(passed_fd(Some("42"), Some("2"), 42), Some(3));
        assert_eq!(passed_fd(Some("41"), Some("1"), 42), None);
        assert_eq!(passed_fd(Some("42"), Some("0"), 42), None);
        assert_eq!(passed_fd(None, Some("1"), 42), None);
        assert_eq!(passed_fd(Some("x"), Some("1"), 42), None);
    }

    #[test]
    fn notify_reaches_a_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        // SAFETY: test-only; no other thread of this test reads the env.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        notify("READY=1\nSTATUS=ok");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok");
        assert_eq!(status_line("a\nb"), "STATUS=a b");
    }
}
