//! Checking that a socket is really this user's daemon before anything is
//! sent to it.
//!
//! A socket path is only a name: another local user who creates the socket's
//! directory first (the shared `/tmp` fallback, a mistyped `--socket`) can
//! serve a fake daemon there, collect every prompt and hand out tokens of its
//! choosing, or, during a login, its own PKCE pair. So before the first byte
//! goes out a client checks, in this order:
//!
//! 1. the socket's directory is a real directory, not a symbolic link;
//! 2. it belongs to the caller's effective uid;
//! 3. nobody else may enter it (no group or other bits: 0700);
//! 4. the socket itself is a socket of the caller's;
//! 5. after `connect`, the process on the other end runs as the caller's
//!    euid (`SO_PEERCRED` on Linux, `getpeereid` on macOS, both through
//!    tokio's `peer_cred`).
//!
//! 1-4 alone suffice where 5 is unavailable (Node has no peer-credential
//! API, so the pi package relies on them): nobody but the owner (and root)
//! can create an entry in a 0700 directory. 5 closes the race between the
//! checks and `connect`, and covers a caller that is root. The checks are
//! pure functions over the facts (`judge_*`), unit-tested below; the I/O is
//! in [`check_path`] and [`check_peer`].

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A uid and, when the user database knows it, its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub name: Option<String>,
}

impl Owner {
    /// `uid` with its name looked up.
    pub fn of(uid: u32) -> Owner {
        Owner {
            uid,
            name: user_name(uid),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "uid {} ({name})", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// Why a socket is not trusted. Each message names what is wrong, whose it
/// is, and what to do; none of them means anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error(
        "{} is a symbolic link, not a directory; piauthd's socket must be in a real directory of yours. \
         Remove the link, or set PIAUTHD_SOCKET to a path in a directory of your own",
        dir.display()
    )]
    SymlinkedDirectory { dir: PathBuf },
    #[error(
        "{} is not a directory; remove it, or set PIAUTHD_SOCKET to a path in a directory of your own",
        dir.display()
    )]
    NotADirectory { dir: PathBuf },
    #[error(
        "{} belongs to {owner}, not to you ({me}): that user may be impersonating piauthd there. \
         Ask them or an administrator to remove it, or set PIAUTHD_SOCKET (or XDG_RUNTIME_DIR) \
         to a directory of your own",
        dir.display()
    )]
    ForeignDirectory {
        dir: PathBuf,
        owner: Owner,
        me: Owner,
    },
    #[error(
        "{} is shared with other users (mode {mode:o}): no piauthd serves a socket there, and \
         no client talks to one there. Leave out --socket and PIAUTHD_SOCKET to use the default \
         socket, or give a path in a directory only you can enter, such as \
         $XDG_RUNTIME_DIR/piauthd/piauthd.sock",
        dir.display()
    )]
    SharedDirectory { dir: PathBuf, mode: u32 },
    #[error(
        "{} can be entered by other users (mode {mode:o}), so piauthd's socket may not be there. \
         Use a directory only you can enter (mkdir -m 700 DIR), or leave out --socket and \
         PIAUTHD_SOCKET to use the default socket; chmod 700 {} only if nothing else needs it open",
        dir.display(),
        dir.display()
    )]
    OpenDirectory { dir: PathBuf, mode: u32 },
    #[error(
        "{} is not a socket; remove it (piauthd creates its socket itself)",
        path.display()
    )]
    NotASocket { path: PathBuf },
    #[error(
        "{} belongs to {owner}, not to you ({me}): that user may be impersonating piauthd. \
         Ask them or an administrator to remove it, or set PIAUTHD_SOCKET to a path in a directory of your own",
        path.display()
    )]
    ForeignSocket {
        path: PathBuf,
        owner: Owner,
        me: Owner,
    },
    #[error(
        "the process serving {} runs as {owner}, not as you ({me}): it is not your piauthd. \
         Stop it, or ask an administrator to; or set PIAUTHD_SOCKET to a path in a directory of your own",
        path.display()
    )]
    ForeignServer {
        path: PathBuf,
        owner: Owner,
        me: Owner,
    },
}

/// What `lstat` says about a path, reduced to what the checks read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub is_dir: bool,
    pub is_symlink: bool,
    pub is_socket: bool,
    pub uid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

impl Facts {
    fn of(meta: &std::fs::Metadata) -> Facts {
        let ft = meta.file_type();
        Facts {
            is_dir: ft.is_dir(),
            is_symlink: ft.is_symlink(),
            is_socket: ft.is_socket(),
            uid: meta.uid(),
            mode: meta.mode() & 0o7777,
        }
    }
}

/// Checks 1-3 of the module doc on the socket's directory.
pub fn judge_dir(dir: &Path, facts: Facts, euid: u32) -> Result<(), Untrusted> {
    if facts.is_symlink {
        return Err(Untrusted::SymlinkedDirectory {
            dir: dir.to_owned(),
        });
    }
    if !facts.is_dir {
        return Err(Untrusted::NotADirectory {
            dir: dir.to_owned(),
        });
    }
    // Sticky or writable by others (/tmp): whoever owns it, it is shared,
    // and a chmod is never the answer.
    if facts.mode & 0o1002 != 0 {
        return Err(Untrusted::SharedDirectory {
            dir: dir.to_owned(),
            mode: facts.mode,
        });
    }
    if facts.uid != euid {
        return Err(Untrusted::ForeignDirectory {
            dir: dir.to_owned(),
            owner: Owner::of(facts.uid),
            me: Owner::of(euid),
        });
    }
    if facts.mode & 0o077 != 0 {
        return Err(Untrusted::OpenDirectory {
            dir: dir.to_owned(),
            mode: facts.mode,
        });
    }
    Ok(())
}

/// Check 4: the socket file is a socket of the caller's.
pub fn judge_socket(path: &Path, facts: Facts, euid: u32) -> Result<(), Untrusted> {
    if facts.is_symlink || !facts.is_socket {
        return Err(Untrusted::NotASocket {
            path: path.to_owned(),
        });
    }
    if facts.uid != euid {
        return Err(Untrusted::ForeignSocket {
            path: path.to_owned(),
            owner: Owner::of(facts.uid),
            me: Owner::of(euid),
        });
    }
    Ok(())
}

/// Check 5: the server's uid is the caller's.
pub fn judge_peer(path: &Path, peer_uid: u32, euid: u32) -> Result<(), Untrusted> {
    if peer_uid != euid {
        return Err(Untrusted::ForeignServer {
            path: path.to_owned(),
            owner: Owner::of(peer_uid),
            me: Owner::of(euid),
        });
    }
    Ok(())
}

/// Whether there is a socket to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Nothing there yet (the daemon may be started). The directory, if it
    /// exists, passed checks 1-3.
    Absent,
    /// A socket that passed checks 1-4.
    Present,
}

/// A failed check, or a failure to look.
#[derive(Debug)]
pub enum CheckError {
    Untrusted(Untrusted),
    Io { path: PathBuf, source: io::Error },
}

/// The caller's effective uid: whose daemon it may talk to.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn lstat(path: &Path) -> Result<Option<Facts>, CheckError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(Facts::of(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Checks only the socket's directory (1-3); `Ok(false)` when it does not
/// exist yet. Autostart uses this before it creates anything there.
pub fn check_dir(dir: &Path, euid: u32) -> Result<bool, CheckError> {
    match lstat(dir)? {
        None => Ok(false),
        Some(facts) => judge_dir(dir, facts, euid)
            .map(|()| true)
            .map_err(CheckError::Untrusted),
    }
}

/// Checks 1-4 on the file system, before connecting.
pub fn check_path(socket: &Path, euid: u32) -> Result<Presence, CheckError> {
    let dir = match socket.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Named as the user can act on it: `.` says nothing in a message.
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    if !check_dir(&dir, euid)? {
        return Ok(Presence::Absent);
    }
    match lstat(socket)? {
        None => Ok(Presence::Absent),
        Some(facts) => judge_socket(socket, facts, euid)
            .map(|()| Presence::Present)
            .map_err(CheckError::Untrusted),
    }
}

/// Check 5 on a connected stream, before anything is written to it.
pub fn check_peer(
    stream: &tokio::net::UnixStream,
    socket: &Path,
    euid: u32,
) -> Result<(), CheckError> {
    let cred = stream.peer_cred().map_err(|source| CheckError::Io {
        path: socket.to_owned(),
        source,
    })?;
    judge_peer(socket, cred.uid(), euid).map_err(CheckError::Untrusted)
}

/// The user name of `uid` from the user database, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: passwd is plain data; zeroed is a valid (empty) value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf is writable for
        // buf.len() bytes and outlives the reads of pw below.
        let rc = unsafe {
            libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found)
        };
        if rc == libc::ERANGE && buf.len() < 1 << 16 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || found.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points at a NUL-terminated string in buf.
        let name = unsafe { CStr::from_ptr(pw.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: Facts = Facts {
        is_dir: true,
        is_symlink: false,
        is_socket: false,
        uid: 1000,
        mode: 0o700,
    };
    const SOCK: Facts = Facts {
        is_dir: false,
        is_symlink: false,
        is_socket: true,
        uid: 1000,
        mode: 0o600,
    };

    #[test]
    fn the_users_own_private_directory_and_socket_pass() {
        let p = Path::new("/d/piauthd.sock");
        assert_eq!(judge_dir(Path::new("/d"), DIR, 1000), Ok(()));
        assert_eq!(
            judge_dir(Path::new("/d"), Facts { mode: 0o500, ..DIR }, 1000),
            Ok(())
        );
        assert_eq!(judge_socket(p, SOCK, 1000), Ok(()));
        assert_eq!(judge_peer(p, 1000, 1000), Ok(()));
    }

    #[test]
    fn a_shared_directory_is_refused_without_advising_a_chmod() {
        for (uid, mode) in [(0, 0o1777), (1000, 0o1777), (1000, 0o777), (0, 0o1755)] {
            let err = judge_dir(Path::new("/tmp"), Facts { uid, mode, ..DIR }, 1000).unwrap_err();
            assert!(matches!(err, Untrusted::SharedDirectory { .. }), "{err:?}");
            let text = err.to_string();
            assert!(!text.contains("chmod"), "{text}");
            assert!(text.contains("no piauthd serves a socket there"), "{text}");
        }
    }

    #[test]
    fn a_relative_socket_names_its_directory_absolutely() {
        let here = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(
            here.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        // The same socket reached by a relative path from the test's cwd.
        let cwd = std::env::current_dir().expect("cwd");
        let ups = cwd.components().count() - 1;
        let socket = here.path().join("piauthd.sock");
        let rel = Path::new(&"../".repeat(ups)).join(socket.strip_prefix("/").expect("absolute"));
        assert!(rel.is_relative());
        let err = match check_path(&rel, euid()) {
            Err(CheckError::Untrusted(u)) => u.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(
            err.starts_with('/'),
            "the directory is named absolutely: {err}"
        );
        assert!(err.contains("(mode 755)"), "{err}");
        assert!(!err.contains("chmod 700 ."), "{err}");
    }

    #[test]
    fn a_squatted_directory_is_refused_naming_its_owner() {
        let d = Path::new("/tmp/piauthd-1000");
        let err = judge_dir(d, Facts { uid: 0, ..DIR }, 1000).unwrap_err();
        assert!(matches!(
            err,
            Untrusted::ForeignDirectory { ref owner, .. } if owner.uid == 0
        ));
        let msg = err.to_string();
        // uid 0 is root in every user database.
        assert!(msg.contains("belongs to uid 0 (root)"), "{msg}");
        assert!(msg.contains("not to you (uid 1000"), "{msg}");
        assert!(msg.contains("PIAUTHD_SOCKET"), "{msg}");
    }

    #[test]
    fn symlinks_open_modes_and_foreign_sockets_or_servers_are_refused() {
        let d = Path::new("/d");
        let p = Path::new("/d/piauthd.sock");
        let cases = [
            (
                judge_dir(
                    d,
                    Facts {
                        is_dir: false,
                        is_symlink: true,
                        ..DIR
                    },
                    1000,
                ),
                "is a symbolic link",
            ),
            (
                judge_dir(
                    d,
                    Facts {
                        is_dir: false,
                        ..DIR
                    },
                    1000,
                ),
                "is not a directory",
            ),
            (
                judge_dir(d, Facts { mode: 0o755, ..DIR }, 1000),
                "(mode 755), so piauthd's socket may not be there",
            ),
            (
                judge_dir(d, Facts { mode: 0o710, ..DIR }, 1000),
                "can be entered by other users",
            ),
            (
                judge_socket(
                    p,
                    Facts {
                        is_socket: false,
                        ..SOCK
                    },
                    1000,
                ),
                "is not a socket",
            ),
            (
                judge_socket(
                    p,
                    Facts {
                        is_symlink: true,
                        ..SOCK
                    },
                    1000,
                ),
                "is not a socket",
            ),
            (
                judge_socket(p, Facts { uid: 4242, ..SOCK }, 1000),
                "belongs to uid 4242",
            ),
            (judge_peer(p, 65534, 1000), "runs as uid 65534"),
        ];
        for (result, want) in cases {
            let msg = result.expect_err(want).to_string();
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn real_files_absent_present_and_open() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let me = euid();
        let dir = root.path().join("run");
        let sock = dir.join("piauthd.sock");
        assert_eq!(check_path(&sock, me).unwrap(), Presence::Absent);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(check_path(&sock, me).unwrap(), Presence::Absent);
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(check_path(&sock, me).unwrap(), Presence::Present);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            check_path(&sock, me),
            Err(CheckError::Untrusted(Untrusted::OpenDirectory { .. }))
        ));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(
            check_path(&link.join("piauthd.sock"), me),
            Err(CheckError::Untrusted(Untrusted::SymlinkedDirectory { .. }))
        ));
        // Another uid sees the same directory as foreign.
        assert!(matches!(
            check_path(&sock, me + 1),
            Err(CheckError::Untrusted(Untrusted::ForeignDirectory { .. }))
        ));
    }

    #[test]
    fn owners_print_with_their_names() {
        assert_eq!(Owner::of(0).to_string(), "uid 0 (root)");
        let unnamed = Owner {
            uid: 4_000_000_000,
            name: None,
        };
        assert_eq!(unnamed.to_string(), "uid 4000000000");
    }
}
