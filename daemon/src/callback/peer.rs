//! Who is on the other end of a loopback TCP connection, and who holds a
//! port: read from the kernel's socket tables (`/proc/net/tcp`,
//! `/proc/net/tcp6`) and, for the process, `/proc/<pid>/fd`.
//!
//! TCP has no `SO_PEERCRED`, but on loopback both ends live in this
//! kernel's table, and the client's own entry (local = our peer, remote =
//! us) names the uid that created its socket. Only an entry with a socket
//! inode counts: a socket its process already closed shows uid 0 (a
//! time-wait entry) or no inode, and proves nothing about anyone.
//!
//! Parsing is pure ([`rows_with_local_port`], [`owner_of`], [`listeners_on`]); the
//! readers at the bottom are Linux-only. Elsewhere the cookie of
//! [`super::rules`] is what keeps another user out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `st` of a listening socket in the tables.
const LISTEN: u8 = 0x0A;
/// `st` of a socket that is bound but neither listening nor connected: it
/// still holds its port.
const CLOSE: u8 = 0x07;
/// `st` of a connected socket.
const ESTABLISHED: u8 = 0x01;

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub uid: u32,
    /// 0 when no open file holds the socket (closed, time-wait).
    pub inode: u64,
}

/// An address as the kernel prints it: each 32-bit word of the address in
/// the machine's byte order as 8 hex digits, then `:` and the port as 4.
/// IPv4-mapped IPv6 addresses come back as IPv4, so both tables compare.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        addr.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes)).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses one row; `None` for the header and malformed rows.
fn parse_row(line: &str) -> Option<SocketRow> {
    let f: Vec<&str> = line.split_ascii_whitespace().take(10).collect();
    if f.len() < 10 {
        return None;
    }
    Some(SocketRow {
        local: parse_addr(f[1])?,
        remote: parse_addr(f[2])?,
        state: u8::from_str_radix(f[3], 16).ok()?,
        uid: f[7].parse().ok()?,
        inode: f[9].parse().ok()?,
    })
}

/// Parses a whole table; the header and malformed rows are skipped.
#[cfg(test)]
pub fn parse_table(text: &str) -> Vec<SocketRow> {
    text.lines().filter_map(parse_row).collect()
}

/// The rows whose local port is `port`, parsing only those: a flood of
/// connections makes the table long, and each one is looked up in it.
pub fn rows_with_local_port(text: &str, port: u16) -> Vec<SocketRow> {
    let suffix = format!(":{port:04X}");
    text.lines()
        .filter(|line| {
            line.split_ascii_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&suffix))
        })
        .filter_map(parse_row)
        .collect()
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The uid of the client whose connection we accepted on `ours` from
/// `peer`: its row has them the other way round, and a live inode.
pub fn owner_of(rows: &[SocketRow], ours: SocketAddr, peer: SocketAddr) -> Option<u32> {
    let (ours, peer) = (canonical(ours), canonical(peer));
    rows.iter()
        .find(|r| r.local == peer && r.remote == ours && r.inode != 0 && r.state == ESTABLISHED)
        .map(|r| r.uid)
}

/// The rows that stop a bind to `addr`: listening or merely bound on the
/// same address and port, or on the wildcard of its family.
pub fn listeners_on(rows: &[SocketRow], addr: SocketAddr) -> Vec<SocketRow> {
    let addr = canonical(addr);
    let wildcard = |ip: IpAddr| match (ip, addr.ip()) {
        (IpAddr::V4(w), IpAddr::V4(_)) => w.is_unspecified(),
        (IpAddr::V6(w), IpAddr::V6(_)) => w.is_unspecified(),
        _ => false,
    };
    rows.iter()
        .filter(|r| r.local.port() == addr.port())
        .filter(|r| r.state == LISTEN || (r.state == CLOSE && r.remote.port() == 0))
        .filter(|r| r.local.ip() == addr.ip() || wildcard(r.local.ip()))
        .copied()
        .collect()
}

/// Whoever holds a port we wanted: as much as could be found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub uid: u32,
    /// The uid's login name, when it has one.
    pub user: Option<String>,
    /// A process that has the socket open, when its `/proc` entry is
    /// readable (always for our own processes, for others only as root).
    pub process: Option<(u32, String)>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {}", self.uid)?;
        if let Some(user) = &self.user {
            write!(f, " ({user})")?;
        }
        if let Some((pid, name)) = &self.process {
            write!(f, ", process {pid} ({name})")?;
        }
        Ok(())
    }
}

/// The target of `/proc/<pid>/fd/<n>` for a socket.
pub fn socket_link(inode: u64) -> String {
    format!("socket:[{inode}]")
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::net::SocketAddr;

    use super::{Holder, SocketRow, listeners_on, owner_of, rows_with_local_port, socket_link};

    const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

    /// The rows of one table whose local port is `port`. IPv6 may be
    /// compiled out; its table is then simply absent.
    fn read_table(path: &str, port: u16) -> io::Result<Vec<SocketRow>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(rows_with_local_port(&text, port)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && path.ends_with('6') => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The uid behind a connection accepted on `ours` from `peer`; `None`
    /// when no live socket of any process matches (it already closed).
    /// An IPv4 client is in the IPv4 table, or in the IPv6 one when its
    /// socket is dual-stack; an IPv6 client only in the IPv6 one.
    pub fn peer_uid(ours: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
        let tables = if peer.ip().to_canonical().is_ipv4() {
            &TABLES[..]
        } else {
            &TABLES[1..]
        };
        for path in tables {
            if let Some(uid) = owner_of(&read_table(path, peer.port())?, ours, peer) {
                return Ok(Some(uid));
            }
        }
        Ok(None)
    }

    /// Who listens where we could not bind `addr`, best effort.
    pub fn holder(addr: SocketAddr) -> Option<Holder> {
        let mut rows = Vec::new();
        for path in TABLES {
            rows.extend(read_table(path, addr.port()).ok()?);
        }
        let row = *listeners_on(&rows, addr).first()?;
        Some(Holder {
            uid: row.uid,
            user: user_name(row.uid),
            process: process_with(row.inode),
        })
    }

    /// A process holding the socket `inode` among those we may inspect.
    fn process_with(inode: u64) -> Option<(u32, String)> {
        if inode == 0 {
            return None;
        }
        let wanted = socket_link(inode);
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            let holds = fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == wanted.as_str())
            });
            if holds {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|c| c.trim().to_owned())
                    .unwrap_or_default();
                return Some((pid, name));
            }
        }
        None
    }

    /// The login name of `uid` (getpwuid_r), if it has one.
    fn user_name(uid: u32) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to live memory of the stated size;
        // getpwuid_r writes only within `pw` and `buf`.
        let rc = unsafe {
            libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found)
        };
        if rc != 0 || found.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string in `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
        Some(name.to_string_lossy().into_owned())
    }
}

#[cfg(target_os = "linux")]
pub use linux::{holder, peer_uid};

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
