//! The daemon's Unix socket: a private directory, one instance per socket,
//! and recovery from a socket left behind by a crash.
//!
//! * The directory is created 0700 and must belong to us; one owned by
//!   someone else (a squatter in `/tmp`) is refused, not used.
//! * The socket is created 0600 (umask narrowed around `bind`, then chmod).
//! * An advisory `flock` on `<socket>.piauthd-instance` makes one daemon per
//!   socket (never `<socket>.lock`: that is pi's lock-directory name when the
//!   path given is auth.json). The kernel drops it when the process dies, so
//!   whoever takes it knows that any socket file present is stale and may
//!   replace it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Longest socket path the platform accepts, excluding the final NUL.
#[cfg(target_os = "macos")]
pub const MAX_PATH_BYTES: usize = 103;
#[cfg(not(target_os = "macos"))]
pub const MAX_PATH_BYTES: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another piauthd{pid} is already serving on {path}")]
    AlreadyRunning { path: PathBuf, pid: String },
    #[error(
        "the socket path {path} is {len} bytes; the limit here is {MAX_PATH_BYTES}. Choose a shorter --socket"
    )]
    PathTooLong { path: PathBuf, len: usize },
    #[error(
        "{path} belongs to uid {owner}, but piauthd runs as uid {uid}; refusing to put the \
         socket there: {hint}",
        hint = crate::store::owner_hint(*.owner, *.uid, path)
    )]
    ForeignDirectory { path: PathBuf, owner: u32, uid: u32 },
    /// Sticky or writable by others (`/tmp`): never made private by us,
    /// and never a place for the socket, whoever owns it.
    #[error(
        "{path} is shared with other users (mode {mode:o}); piauthd never puts its socket there \
         and never changes its mode. Leave out --socket to use the default, or give a path in a \
         directory of yours, e.g. {default}",
        default = crate::shared::default_socket().display()
    )]
    SharedDirectory { path: PathBuf, mode: u32 },
    #[error("{path} is a symlink; piauthd never opens its lock through one: remove it")]
    Symlink { path: PathBuf },
    #[error("{path} exists and is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} is not a regular file; remove it")]
    NotARegularFile { path: PathBuf },
    #[error(
        "{path} exists and is not a socket; refusing to replace it or create anything beside \
         it: pass the daemon's socket with --socket, e.g. {default}",
        default = crate::shared::default_socket().display()
    )]
    NotASocket { path: PathBuf },
    #[error("cannot {action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
}

/// Owns the socket file and the instance lock. Dropping it keeps the socket
/// file; call [`SocketGuard::remove`] on shutdown.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    /// False for a socket passed by systemd: it owns the file.
    owned: bool,
    identity: (u64, u64),
    /// Held for the life of the daemon: it is what makes us the one instance.
    _instance: File,
}

impl SocketGuard {
    fn new(path: &Path, owned: bool, meta: &fs::Metadata, instance: File) -> SocketGuard {
        SocketGuard {
            path: path.to_owned(),
            owned,
            identity: (meta.dev(), meta.ino()),
            _instance: instance,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file, unless another daemon has replaced it.
    pub fn remove(&self) {
        if !self.owned {
            return;
        }
        if let Ok(m) = fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.identity
            && let Err(e) = fs::remove_file(&self.path)
        {
            tracing::warn!(socket = %self.path.display(), error = %e, "could not remove the socket");
        }
    }
}

/// Leaves how this daemon was started beside its socket (0600, replaced
/// whole), so a client that finds nothing serving there can say how to
/// start it again (`shared::restart`). A failure costs only that hint.
pub fn leave_start_command(socket: &Path, command: &str) {
    let path = crate::shared::restart::path_for(socket);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(format!("{command}\n").as_bytes())
        })
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot leave the start command beside the socket");
        let _ = fs::remove_file(&tmp);
    }
}

/// Takes the instance lock for a socket systemd created and passed to us.
pub fn adopt(
    listener: std::os::unix::net::UnixListener,
    path: &Path,
) -> Result<(UnixListener, SocketGuard), SocketError> {
    check_socket_path(path)?;
    let instance = instance_lock(path)?;
    let meta = fs::symlink_metadata(path).map_err(|source| SocketError::Io {
        action: "inspect",
        path: path.to_owned(),
        cause: source,
    })?;
    let listener = UnixListener::from_std(listener).map_err(|source| SocketError::Io {
        action: "use",
        path: path.to_owned(),
        cause: source,
    })?;
    Ok((listener, SocketGuard::new(path, false, &meta, instance)))
}

/// Suffix of the instance lock beside the socket. Not `.lock`: pi takes
/// `<auth.json>.lock` as a directory, and a file there breaks every refresh.
pub const INSTANCE_SUFFIX: &str = ".piauthd-instance";

/// Refuses a socket path that exists and is not a socket, before anything is
/// created beside it.
pub fn check_socket_path(path: &Path) -> Result<(), SocketError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(()),
        Ok(_) => Err(SocketError::NotASocket {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SocketError::Io {
            action: "inspect",
            path: path.to_owned(),
            cause: source,
        }),
    }
}

/// Takes the one-instance lock `<socket>.piauthd-instance`, recording our pid.
fn instance_lock(path: &Path) -> Result<File, SocketError> {
    let io = |action: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| SocketError::Io {
            action,
            path: p,
            cause: source,
        }
    };
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(INSTANCE_SUFFIX);
    let lock_path = PathBuf::from(lock_name);
    // O_NOFOLLOW: a symlink here would have us truncate and write its
    // target; O_NONBLOCK: a FIFO would block the open.
    let mut instance = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&lock_path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                SocketError::Symlink {
                    path: lock_path.clone(),
                }
            } else {
                io("open", &lock_path)(e)
            }
        })?;
    let meta = instance.metadata().map_err(io("inspect", &lock_path))?;
    if !meta.file_type().is_file() {
        return Err(SocketError::NotARegularFile { path: lock_path });
    }
    match instance.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = instance.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(SocketError::AlreadyRunning {
                path: path.to_owned(),
                pid: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io("lock", &lock_path)(e)),
    }
    instance
        .set_len(0)
        .and_then(|()| instance.rewind())
        .and_then(|()| write!(instance, "{}", std::process::id()))
        .map_err(io("write", &lock_path))?;
    Ok(instance)
}

/// Creates the directory, takes the instance lock, and binds the socket.
pub fn bind(path: &Path, uid: u32) -> Result<(UnixListener, SocketGuard), SocketError> {
    let len = path.as_os_str().len();
    if len > MAX_PATH_BYTES {
        return Err(SocketError::PathTooLong {
            path: path.to_owned(),
            len,
        });
    }
    let io = |action: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| SocketError::Io {
            action,
            path: p,
            cause: source,
        }
    };
    check_socket_path(path)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    private_dir(dir, uid)?;

    let instance = instance_lock(path)?;

    // We hold the lock, so any socket file here was left by a daemon that died.
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            tracing::info!(socket = %path.display(), "replacing a stale socket left by a previous daemon");
            fs::remove_file(path).map_err(io("remove the stale socket", path))?;
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect", path)(e)),
    }

    // SAFETY: umask only swaps the process's file-mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above; restores the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(io("bind", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io("chmod", path))?;
    let meta = fs::symlink_metadata(path).map_err(io("inspect", path))?;
    Ok((listener, SocketGuard::new(path, true, &meta, instance)))
}

/// Makes `dir` a 0700 directory owned by `uid`, creating it if needed.
fn private_dir(dir: &Path, uid: u32) -> Result<(), SocketError> {
    let io = |action: &'static str| {
        let p = dir.to_owned();
        move |source| SocketError::Io {
            action,
            path: p,
            cause: source,
        }
    };
    // Never create the directory (or its parents) inside another user's:
    // a root daemon started with a user's XDG_RUNTIME_DIR (sudo -E) would
    // otherwise leave a root-owned directory in the user's runtime dir.
    crate::store::check_dir(dir, uid).map_err(|e| match e {
        crate::store::OwnerError::Foreign(f) => SocketError::ForeignDirectory {
            path: f.path,
            owner: f.owner,
            uid,
        },
        crate::store::OwnerError::Io {
            path,
            cause: source,
        } => SocketError::Io {
            action: "inspect",
            path,
            cause: source,
        },
    })?;
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io("create"))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create")(e)),
    }
    // lstat: a symlink planted in place of the directory is refused.
    let meta = fs::symlink_metadata(dir).map_err(io("inspect"))?;
    if !meta.is_dir() {
        return Err(SocketError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    // Checked before the owner: root owns /tmp, and a root daemon must not
    // take it for its own private directory and chmod it.
    if meta.mode() & 0o1002 != 0 {
        return Err(SocketError::SharedDirectory {
            path: dir.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    if meta.uid() != uid {
        return Err(SocketError::ForeignDirectory {
            path: dir.to_owned(),
            owner: meta.uid(),
            uid,
        });
    }
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("chmod"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_directory_is_refused_and_its_mode_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let shared = root.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = bind(&shared.join("piauthd.sock"), uid()).unwrap_err();
        assert!(matches!(err, SocketError::SharedDirectory { .. }), "{err}");
        assert!(err.to_string().contains("never changes its mode"), "{err}");
        let mode = fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o1777, "untouched");
    }

    fn uid() -> u32 {
        rustix::process::getuid().as_raw()
    }

    #[tokio::test]
    async fn creates_private_dir_and_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/piauthd.sock");
        let (_listener, s) = bind(&path, uid()).unwrap();
        let dir_mode = fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777;
        let sock_mode = fs::symlink_metadata(&path).unwrap().mode() & 0o777;
        assert_eq!((dir_mode, sock_mode), (0o700, 0o600));
        assert!(matches!(
            bind(&path, uid()),
            Err(SocketError::AlreadyRunning { .. })
        ));
        s.remove();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn refuses_long_paths_foreign_dirs_and_non_sockets() {
        let tmp = tempfile::tempdir().unwrap();
        let long = tmp.path().join("x".repeat(120));
        assert!(matches!(
            bind(&long, uid()),
            Err(SocketError::PathTooLong { .. })
        ));
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        let other = uid().wrapping_add(1);
        assert!(matches!(
            bind(&dir.join("s.sock"), other),
            Err(SocketError::ForeignDirectory { .. })
        ));
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("l.sock.piauthd-instance")).unwrap();
        assert!(matches!(
            bind(&dir.join("l.sock"), uid()),
            Err(SocketError::Symlink { .. })
        ));
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        fs::write(dir.join("s.sock"), b"not a socket").unwrap();
        assert!(matches!(
            bind(&dir.join("s.sock"), uid()),
            Err(SocketError::NotASocket { .. })
        ));
    }

    #[test]
    fn a_regular_file_is_refused_before_any_lock_is_made() {
        let tmp = tempfile::tempdir().unwrap();
        let auth = tmp.path().join("auth.json");
        fs::write(&auth, b"{}").unwrap();
        assert!(matches!(
            check_socket_path(&auth),
            Err(SocketError::NotASocket { .. })
        ));
        assert!(check_socket_path(&tmp.path().join("absent.sock")).is_ok());
        let err = bind(&auth, uid()).unwrap_err();
        assert!(err.to_string().contains("--socket"), "{err}");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("auth.json")]);
        assert_eq!(fs::read(&auth).unwrap(), b"{}");
    }
}
