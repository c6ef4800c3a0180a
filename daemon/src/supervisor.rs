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
///
/// # Safety
///
/// The caller guarantees two things:
///
/// * the process is still single-threaded: this removes environment
///   variables, and a concurrent reader of the environment (any thread
///   calling `getenv`, including inside libc) would be undefined behaviour;
/// * nothing else in the process owns descriptor 3 when `LISTEN_PID` and
///   `LISTEN_FDS` say it was passed to us: the returned listener takes sole
///   ownership of it and closes it on drop.
pub unsafe fn take_listener() -> io::Result<Option<(UnixListener, PathBuf)>> {
    let fd = passed_fd(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::process::id(),
    );
    // SAFETY: the caller guarantees no other thread exists, so nothing reads
    // the environment while it changes.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let Some(fd) = fd else {
        return Ok(None);
    };
    // Refuse anything but what ListenStream=/path passes, before taking
    // ownership: wrapping a datagram or TCP socket as a UnixListener would
    // fail later, and far from the cause.
    check_listening_unix(fd)?;
    // SAFETY: the caller guarantees nothing else owns fd 3, and the check
    // above proved it is an open listening Unix stream socket.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    let addr = listener.local_addr().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("the socket passed by systemd (fd {fd}) has no address: {e}"),
        )
    })?;
    let path = addr.as_pathname().map(PathBuf::from).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the socket passed by systemd (fd {fd}) has no path (abstract or unnamed): \
                 check the .socket unit's ListenStream="
            ),
        )
    })?;
    listener.set_nonblocking(true)?;
    // SAFETY: fcntl(F_SETFD) on a descriptor we own changes only its flag.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some((listener, path)))
}

/// Checks that `fd` is an open, listening, Unix-domain stream socket: what
/// a `.socket` unit with `ListenStream=/path` passes. Each refusal names the
/// descriptor and what it is instead. Borrows the descriptor only.
pub fn check_listening_unix(fd: RawFd) -> io::Result<()> {
    let refuse = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "fd {fd} is {what}, not a listening stream socket: \
                 check the .socket unit's ListenStream="
            ),
        )
    };
    let kind = socket_option(fd, libc::SO_TYPE).map_err(|e| match e.raw_os_error() {
        Some(libc::EBADF) => io::Error::new(
            io::ErrorKind::NotFound,
            format!("fd {fd} is not open, though LISTEN_FDS says it was passed: {e}"),
        ),
        Some(libc::ENOTSOCK) => refuse("not a socket (a file or pipe)"),
        _ => io::Error::new(e.kind(), format!("cannot inspect fd {fd}: {e}")),
    })?;
    match kind {
        libc::SOCK_STREAM => {}
        libc::SOCK_DGRAM => return Err(refuse("a datagram socket")),
        libc::SOCK_SEQPACKET => return Err(refuse("a seqpacket socket")),
        other => return Err(refuse(&format!("a socket of type {other}"))),
    }
    match socket_domain(fd)? {
        libc::AF_UNIX => {}
        libc::AF_INET | libc::AF_INET6 => {
            return Err(refuse(
                "a TCP socket, not a Unix one (ListenStream= needs a path)",
            ));
        }
        other => return Err(refuse(&format!("a socket of address family {other}"))),
    }
    if socket_option(fd, libc::SO_ACCEPTCONN)? != 1 {
        return Err(refuse("a Unix stream socket that is not listening"));
    }
    Ok(())
}

/// One `int` socket option at `SOL_SOCKET`.
fn socket_option(fd: RawFd, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, which we
    // own; a bad descriptor is reported as an error, not undefined behaviour.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The socket's address family.
#[cfg(target_os = "linux")]
fn socket_domain(fd: RawFd) -> io::Result<libc::c_int> {
    socket_option(fd, libc::SO_DOMAIN)
}

/// The socket's address family. macOS has no `SO_DOMAIN`; the bound
/// address says it.
#[cfg(not(target_os = "linux"))]
fn socket_domain(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `addr`, which we own.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(libc::c_int::from(addr.ss_family))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends a notification to the service manager, if there is one.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = notify_to(&target, state) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Sends one notification datagram to `target` (a path, or `@name` for an
/// abstract socket). Apart from `notify` so tests need not touch the
/// environment, which would be unsound with the test harness's threads.
fn notify_to(target: &std::ffi::OsStr, state: &str) -> io::Result<()> {
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
        sock.send_to(state.as_bytes(), target)?;
    }
    Ok(())
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
        notify_to(path.as_os_str(), "READY=1\nSTATUS=ok").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok");
        assert_eq!(status_line("a\nb"), "STATUS=a b");
    }

    /// The raw descriptor of anything that owns one, for the check.
    fn check(fd: &impl std::os::fd::AsRawFd) -> io::Result<()> {
        check_listening_unix(fd.as_raw_fd())
    }

    #[test]
    fn a_listening_unix_stream_socket_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("s")).unwrap();
        check(&listener).unwrap();
    }

    #[test]
    fn sockets_that_are_not_listening_unix_stream_sockets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let message = |r: io::Result<()>| r.unwrap_err().to_string();

        let datagram = UnixDatagram::bind(dir.path().join("d")).unwrap();
        let m = message(check(&datagram));
        assert!(
            m.contains("is a datagram socket, not a listening stream socket"),
            "{m}"
        );
        assert!(m.contains("ListenStream="), "{m}");

        // A connected but not listening Unix stream socket.
        let listener = UnixListener::bind(dir.path().join("s")).unwrap();
        let client = std::os::unix::net::UnixStream::connect(dir.path().join("s")).unwrap();
        let m = message(check(&client));
        assert!(m.contains("not listening"), "{m}");
        drop(listener);

        // An unbound Unix stream socket from socketpair.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(message(check(&a)).contains("not listening"));

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let m = message(check(&tcp));
        assert!(m.contains("a TCP socket, not a Unix one"), "{m}");
    }

    #[test]
    fn files_pipes_and_closed_descriptors_are_refused() {
        let file = tempfile::tempfile().unwrap();
        let m = check(&file).unwrap_err().to_string();
        assert!(m.contains("is not a socket"), "{m}");

        let (reader, _writer) = std::io::pipe().unwrap();
        let m = check(&reader).unwrap_err().to_string();
        assert!(m.contains("is not a socket"), "{m}");

        // A descriptor number far above any open one (reusing a just-closed
        // number would race with the other tests' threads).
        let closed: RawFd = 1 << 29;
        let m = check_listening_unix(closed).unwrap_err().to_string();
        assert!(m.contains(&format!("fd {closed} is not open")), "{m}");
    }
}
