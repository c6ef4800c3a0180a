//! The owner of one TCP socket, asked of the kernel by its exact address
//! pair over `NETLINK_SOCK_DIAG` (what `ss` uses): one request, one answer,
//! however many sockets the system has. Reading `/proc/net/tcp` instead
//! costs a scan of every socket per connection, which a flood makes long.
//!
//! The messages are built and read by plain functions ([`request`],
//! [`read_reply`]), tested below; [`socket_owner`] is the I/O. Layouts are
//! those of `<linux/inet_diag.h>` and `<linux/netlink.h>`, in the machine's
//! byte order except ports and addresses (network order).

use std::io;
use std::net::{IpAddr, SocketAddr};

/// `NETLINK_SOCK_DIAG`, the netlink family of socket diagnostics.
const NETLINK_SOCK_DIAG: libc::c_int = 4;
/// `SOCK_DIAG_BY_FAMILY`, the request type.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
/// `INET_DIAG_NOCOOKIE`: match by addresses, not by a socket cookie.
const NO_COOKIE: u32 = !0;
const HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid.
const REQUEST_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_sockid`: ports, two 16-byte addresses, interface,
/// cookie.
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_msg` up to and including `idiag_inode`.
const MESSAGE_LEN: usize = 4 + SOCKID_LEN + 20;

/// What the kernel says of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    /// A TCP state (`1` established, `6` time-wait, ...).
    pub state: u8,
    pub uid: u32,
    /// 0 when no open file holds it.
    pub inode: u32,
}

fn put_addr(buf: &mut Vec<u8>, ip: IpAddr) {
    let mut bytes = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes = v6.octets(),
    }
    buf.extend_from_slice(&bytes);
}

/// The request for the socket whose local address is `local` and whose
/// remote is `remote`. An IPv4 pair is asked as `AF_INET`, which the kernel
/// answers for dual-stack IPv6 sockets too.
pub fn request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Vec<u8> {
    let (local, remote) = (
        SocketAddr::new(local.ip().to_canonical(), local.port()),
        SocketAddr::new(remote.ip().to_canonical(), remote.port()),
    );
    let family = if local.is_ipv4() && remote.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let mut buf = Vec::with_capacity(HEADER_LEN + REQUEST_LEN);
    buf.extend_from_slice(&((HEADER_LEN + REQUEST_LEN) as u32).to_ne_bytes());
    buf.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    buf.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    buf.push(family as u8);
    buf.push(libc::IPPROTO_TCP as u8);
    buf.push(0); // no extensions
    buf.push(0);
    buf.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    buf.extend_from_slice(&local.port().to_be_bytes());
    buf.extend_from_slice(&remote.port().to_be_bytes());
    let (src, dst) = match (local.ip(), remote.ip()) {
        // A mixed pair is asked as IPv6, IPv4 mapped.
        (IpAddr::V4(l), r) if family == libc::AF_INET6 => (IpAddr::V6(l.to_ipv6_mapped()), r),
        (l, IpAddr::V4(r)) if family == libc::AF_INET6 => (l, IpAddr::V6(r.to_ipv6_mapped())),
        pair => pair,
    };
    put_addr(&mut buf, src);
    put_addr(&mut buf, dst);
    buf.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    buf.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    buf.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    buf
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the answer: the socket, `Ok(None)` when there is none (`ENOENT`),
/// or the kernel's error.
pub fn read_reply(buf: &[u8]) -> io::Result<Option<Socket>> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed sock_diag reply");
    let len = u32_at(buf, 0).ok_or_else(malformed)? as usize;
    let kind = buf
        .get(4..6)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .ok_or_else(malformed)?;
    if len > buf.len() || len < HEADER_LEN {
        return Err(malformed());
    }
    if kind == NLMSG_ERROR {
        let code = u32_at(buf, HEADER_LEN).ok_or_else(malformed)? as i32;
        return match -code {
            0 | libc::ENOENT => Ok(None),
            errno => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY || len < HEADER_LEN + MESSAGE_LEN {
        return Err(malformed());
    }
    let msg = &buf[HEADER_LEN..];
    Ok(Some(Socket {
        state: msg[1],
        uid: u32_at(msg, 4 + SOCKID_LEN + 12).ok_or_else(malformed)?,
        inode: u32_at(msg, 4 + SOCKID_LEN + 16).ok_or_else(malformed)?,
    }))
}

/// Closes a descriptor when dropped.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed only here.
        unsafe { libc::close(self.0) };
    }
}

/// Asks the kernel for the socket `local` -> `remote`. The kernel answers
/// within the send, so the receive never waits (and is non-blocking
/// anyway): this is safe to call on an async thread.
pub fn socket_owner(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<Socket>> {
    // SAFETY: plain socket creation; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = Fd(fd);
    let msg = request(local, remote, 1);
    // SAFETY: an all-zero sockaddr_nl is valid; the kernel is pid 0.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` and `kernel` are live for the call, with these sizes.
    let sent = unsafe {
        libc::sendto(
            fd.0,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    // SAFETY: `buf` is live and writable for its whole length.
    let got = unsafe { libc::recv(fd.0, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    read_reply(&buf[..got as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_has_the_kernels_layout() {
        let m = request(
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:1455".parse().unwrap(),
            7,
        );
        assert_eq!(m.len(), 72);
        assert_eq!(u32_at(&m, 0), Some(72));
        assert_eq!(&m[4..6], &SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        assert_eq!(u32_at(&m, 8), Some(7));
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(m[17], libc::IPPROTO_TCP as u8);
        assert_eq!(&m[24..26], &40000u16.to_be_bytes(), "sport: the local end");
        assert_eq!(&m[26..28], &1455u16.to_be_bytes());
        assert_eq!(&m[28..32], &[127, 0, 0, 1]);
        assert_eq!(&m[44..48], &[127, 0, 0, 1]);
        assert_eq!(&m[64..72], &[0xff; 8], "no cookie");

        let v6 = request(
            "[::1]:40000".parse().unwrap(),
            "[::1]:1455".parse().unwrap(),
            1,
        );
        assert_eq!(v6[16], libc::AF_INET6 as u8);
        assert_eq!(v6[28 + 15], 1);
        let mapped = request(
            "[::ffff:127.0.0.1]:40000".parse().unwrap(),
            "127.0.0.1:1455".parse().unwrap(),
            1,
        );
        assert_eq!(mapped[16], libc::AF_INET as u8, "mapped reads as IPv4");
    }

    fn reply(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn replies_are_read_or_refused() {
        let mut msg = vec![libc::AF_INET as u8, 1, 0, 0];
        msg.extend_from_slice(&[0; SOCKID_LEN]);
        msg.extend_from_slice(&[0; 12]);
        msg.extend_from_slice(&65534u32.to_ne_bytes());
        msg.extend_from_slice(&4242u32.to_ne_bytes());
        assert_eq!(
            read_reply(&reply(SOCK_DIAG_BY_FAMILY, &msg)).unwrap(),
            Some(Socket {
                state: 1,
                uid: 65534,
                inode: 4242
            })
        );
        let enoent = reply(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(read_reply(&enoent).unwrap(), None);
        let eperm = reply(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            read_reply(&eperm).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        for bad in [
            vec![],
            vec![1, 2, 3],
            reply(SOCK_DIAG_BY_FAMILY, &msg[..20]),
            reply(99, &msg),
            {
                let mut long = reply(SOCK_DIAG_BY_FAMILY, &msg);
                long[0] = 0xff;
                long
            },
        ] {
            assert!(read_reply(&bad).is_err(), "{bad:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_names_this_processes_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let found = socket_owner(peer, listener.local_addr().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.state, found.uid),
            (1, rustix::process::geteuid().as_raw())
        );
        assert_ne!(found.inode, 0);
        drop(client);
        let gone = socket_owner(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert!(matches!(gone, Ok(None)), "{gone:?}");
    }
}
