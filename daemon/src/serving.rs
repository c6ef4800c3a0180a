//! Which stores a running daemon serves, so a store move can refuse to pull
//! a store from under one.
//!
//! A daemon that serves a store holds a shared `flock` on that store's
//! "serving" file for as long as it runs; a store move (`--migrate-store-to`)
//! takes the same file's lock exclusively, without waiting, for both stores
//! it touches, and refuses when either is held. The lock is the truth: the
//! kernel drops it when the holder exits, however it exits. The file's
//! contents (the holder's pid and socket) are there only for the message.
//!
//! Shared, not exclusive, for daemons: two daemons on two sockets may serve
//! one `auth.json` (they take turns under pi's lock), and neither may keep
//! the other from starting. A daemon that finds the lock held exclusively
//! has met a move under way and does not start on a store being emptied.
//!
//! The file lives in piauthd's state directory beside the in-flight record,
//! named by the store's identity ([`StoreId`]: its resolved path, or the
//! keyring item's description), never beside pi's files. Its own module, not `store`'s or
//! `broker`'s: it is about the process, like the socket's instance lock,
//! and both the server's start-up and `store::migrate` use it.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths::StoreId;

/// Who holds a store, as its serving file says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder's pid; `None` when the file could not be read (a holder
    /// still writing it, or a damaged file).
    pub pid: Option<u32>,
    /// The socket a daemon serves on; `None` for a store move.
    pub socket: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pid = self
            .pid
            .map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
        match (&self.socket, self.pid) {
            (Some(socket), _) => write!(f, "piauthd ({pid}, socket {socket})"),
            (None, Some(_)) => write!(f, "a store move ({pid})"),
            (None, None) => write!(f, "piauthd or a store move ({pid})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("cannot use {path}, which records who serves {store}: {cause}")]
    Io {
        store: String,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("{holder} holds {store}")]
    Busy { store: String, holder: Holder },
}

/// A held serving lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct Serving {
    _file: File,
}

/// The serving file of the store `id`, in `state_dir`.
pub fn path(state_dir: &Path, id: &StoreId) -> PathBuf {
    state_dir.join(format!("piauthd-serving-{}.lock", id.tag()))
}

/// Marks `store` as served by this daemon on `socket`, for as long as the
/// returned guard lives. Refuses only while a store move holds it.
/// Blocking.
pub fn serve(state_dir: &Path, store: &StoreId, socket: &Path) -> Result<Serving, ServingError> {
    let holder = Holder {
        pid: Some(std::process::id()),
        socket: Some(socket.display().to_string()),
    };
    take(state_dir, store, libc::LOCK_SH, &holder)
}

/// Takes every store in `stores` for a move, or none: refuses with the
/// holder of the first one a daemon (or another move) holds. Blocking.
pub fn claim_for_move(state_dir: &Path, stores: &[StoreId]) -> Result<Vec<Serving>, ServingError> {
    let me = Holder {
        pid: Some(std::process::id()),
        socket: None,
    };
    // Collected one by one: on a refusal the guards taken so far drop, so
    // nothing stays locked.
    stores
        .iter()
        .map(|store| take(state_dir, store, libc::LOCK_EX, &me))
        .collect()
}

/// Opens (creating) the serving file, takes its lock without waiting, and
/// records `me` in it.
fn take(
    state_dir: &Path,
    store: &StoreId,
    mode: libc::c_int,
    me: &Holder,
) -> Result<Serving, ServingError> {
    let path = path(state_dir, store);
    let io_error = |source| ServingError::Io {
        store: store.key().to_owned(),
        path: path.clone(),
        cause: source,
    };
    crate::store::durable::ensure_dir(state_dir).map_err(io_error)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_error)?;
    if !file.metadata().map_err(io_error)?.is_file() {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    // SAFETY: flock on a descriptor we own has no memory-safety conditions.
    if unsafe { libc::flock(file.as_raw_fd(), mode | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(ServingError::Busy {
                store: store.key().to_owned(),
                holder: read_holder(&mut file),
            });
        }
        return Err(io_error(e));
    }
    record(&mut file, me).map_err(io_error)?;
    Ok(Serving { _file: file })
}

/// Replaces the file's contents with `me`. Daemons sharing the lock may
/// each write: the message names the last one, which is enough to act on.
fn record(file: &mut File, me: &Holder) -> io::Result<()> {
    let bytes = serde_json::to_vec(me).map_err(io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(&bytes)
}

/// What the file says about its holder; nothing known when it does not
/// parse (the holder may be writing it this instant).
fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let read = file
        .rewind()
        .and_then(|()| Read::take(&*file, 4096).read_to_string(&mut text));
    match read {
        Ok(_) => serde_json::from_str(&text).unwrap_or_default(),
        Err(_) => Holder::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "/home/u/.pi/agent/auth.json";

    fn id(name: &str) -> StoreId {
        StoreId::named(name)
    }

    #[test]
    fn daemons_share_a_store_and_a_move_is_refused_while_one_serves() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("piauthd");
        let a = serve(&state, &id(STORE), Path::new("/run/a.sock")).unwrap();
        // A second daemon on another socket serves the same store.
        let b = serve(&state, &id(STORE), Path::new("/run/b.sock")).unwrap();
        let stores = [id(STORE), id("OS keyring")];
        match claim_for_move(&state, &stores) {
            Err(ServingError::Busy { store, holder }) => {
                assert_eq!(store, STORE);
                assert_eq!(holder.pid, Some(std::process::id()));
                assert_eq!(holder.socket.as_deref(), Some("/run/b.sock"));
            }
            other => panic!("{other:?}"),
        }
        drop(a);
        assert!(matches!(
            claim_for_move(&state, &stores),
            Err(ServingError::Busy { .. })
        ));
        drop(b);
        let held = claim_for_move(&state, &stores).unwrap();
        assert_eq!(held.len(), 2);
    }

    #[test]
    fn a_daemon_does_not_start_on_a_store_being_moved() {
        let dir = tempfile::tempdir().unwrap();
        let stores = [id("OS keyring")];
        let moving = claim_for_move(dir.path(), &stores).unwrap();
        let e = serve(dir.path(), &id("OS keyring"), Path::new("/s")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("a store move (pid {}) holds OS keyring", std::process::id())
        );
        drop(moving);
        serve(dir.path(), &id("OS keyring"), Path::new("/s")).unwrap();
    }

    #[test]
    fn a_refused_move_keeps_nothing_locked() {
        let dir = tempfile::tempdir().unwrap();
        let stores = [id("free"), id("served")];
        let served = serve(dir.path(), &id("served"), Path::new("/s")).unwrap();
        assert!(claim_for_move(dir.path(), &stores).is_err());
        // "free" was taken, then let go when "served" refused.
        let _moving = claim_for_move(dir.path(), &stores[..1]).unwrap();
        drop(served);
    }

    #[test]
    fn each_store_has_its_own_file_and_an_unreadable_one_names_no_pid() {
        let dir = tempfile::tempdir().unwrap();
        assert_ne!(path(dir.path(), &id("a")), path(dir.path(), &id("b")));
        assert_eq!(path(dir.path(), &id("a")), path(dir.path(), &id("a")));
        let name = path(dir.path(), &id("a"));
        assert!(name.starts_with(dir.path()));
        let _held = serve(dir.path(), &id("a"), Path::new("/s")).unwrap();
        std::fs::write(&name, b"{half").unwrap();
        match claim_for_move(dir.path(), &[id("a")]) {
            Err(ServingError::Busy { holder, .. }) => {
                assert_eq!(holder, Holder::default());
                assert_eq!(holder.to_string(), "piauthd or a store move (pid unknown)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_paths_to_one_auth_json_meet_on_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("agent");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let state = dir.path().join("state");
        let _daemon = serve(
            &state,
            &StoreId::file(&link.join("auth.json")),
            Path::new("/s"),
        )
        .unwrap();
        let dotted = dir.path().join(".").join("agent").join("auth.json");
        assert!(matches!(
            claim_for_move(&state, &[StoreId::file(&dotted)]),
            Err(ServingError::Busy { .. })
        ));
    }

    #[test]
    fn a_symlink_in_place_of_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        std::os::unix::fs::symlink(&target, path(dir.path(), &id("a"))).unwrap();
        let e = serve(dir.path(), &id("a"), Path::new("/s")).unwrap_err();
        assert!(matches!(e, ServingError::Io { .. }), "{e:?}");
    }
}
