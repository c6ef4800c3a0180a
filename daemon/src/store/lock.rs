//! pi's lock on `auth.json`, spoken exactly as pi speaks it.
//!
//! pi (through proper-lockfile) locks the file by creating the *directory*
//! `realpath(auth.json) + ".lock"` with `mkdir`; `EEXIST` means held. A
//! holder touches the directory's mtime to show it is alive, and a lock older
//! than the stale limit may be removed and re-taken. piauthd must interoperate
//! with running pi processes, so it uses the same directory and rules:
//!
//! * it never removes a lock younger than [`STALE_AFTER`] (pi's refreshers
//!   use 30 s, its readers 10 s);
//! * while holding the lock it touches the mtime every [`HEARTBEAT`], far
//!   inside pi's 10 s reader limit, so a slow refresh is never "stale" to pi
//!   (docs/PROTOCOL.md §2 describes the token-family revocation that otherwise
//!   follows);
//! * it releases with `rmdir`, and never puts a file inside the directory.
//!
//! A lock left by a killed piauthd would block everyone for 30 s. To recover
//! at once, piauthd records its holding in a sidecar file *beside* the lock
//! directory and keeps an advisory `flock` on that sidecar while it holds the
//! lock. A lock directory named by the sidecar while nobody holds the flock
//! was orphaned by a dead piauthd and is removed immediately. The sidecar
//! flock also queues piauthd processes among themselves.

use std::fs::{self, File, FileTimes};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::sidecar::{
    Identity, identity_of, is_ours, open_sidecar, read_record, sidecar_path, write_record,
};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::backoff::Backoff;

/// A lock directory older than this may be taken over.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// How often a held lock's mtime is refreshed.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long [`PiLock::acquire`] waits by default before giving up.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(40);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("timed out after {waited:?} waiting for the lock {path} (held by another process)")]
    Timeout { path: PathBuf, waited: Duration },
    #[error("{path} exists but is not a directory; pi's lock must be a directory, remove it")]
    NotADirectory { path: PathBuf },
    /// The directory cannot be written (read-only, full, no permission), so
    /// no process, pi included, can take the lock or write the file.
    #[error("cannot take the lock {path}: the directory is not writable ({cause})")]
    Unwritable { path: PathBuf, cause: io::Error },
    #[error("cannot use the lock {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

/// The lock directory that guards `target`.
///
/// pi resolves symlinks first, so both agree on one lock for one file. When
/// the file does not exist yet, its directory is resolved instead.
pub fn lock_path(target: &Path) -> io::Result<PathBuf> {
    let real = match fs::canonicalize(target) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = target.file_name().ok_or(e)?;
            let parent = target.parent().unwrap_or(Path::new("."));
            fs::canonicalize(parent)?.join(name)
        }
        Err(e) => return Err(e),
    };
    let mut s = real.into_os_string();
    s.push(".lock");
    Ok(PathBuf::from(s))
}

/// A held pi lock. Dropping it releases the lock.
///
/// It has two parts. The sidecar `flock` queues piauthd processes among
/// themselves and is held for the guard's whole life. The lock directory is
/// what pi sees; [`PiLock::pause`] gives it back to pi while the flock stays
/// held (a refresh on the wire), and [`PiLock::resume`] takes it again.
#[derive(Debug)]
pub struct PiLock {
    dir: PathBuf,
    /// Holds the advisory flock for as long as the guard lives; `None` if
    /// the sidecar could not be opened (crash recovery then falls back to
    /// the 30 s stale rule, and the guard cannot pause).
    sidecar: Option<File>,
    /// The directory while we hold it; `None` while paused.
    held: Option<Held>,
}

/// The lock directory, while held.
#[derive(Debug)]
struct Held {
    /// Device, inode and birth time of the directory we created, so that
    /// release never removes a lock someone else has taken over meanwhile
    /// (a re-created directory can get the same inode back).
    identity: Identity,
    stop_heartbeat: mpsc::Sender<()>,
    heartbeat: thread::JoinHandle<()>,
}

impl PiLock {
    /// Takes the lock for `target`, waiting up to `wait` while another
    /// process holds it. The file system work runs on a thread of its own
    /// (see [`super::blocking`]); a step that hangs there ends the wait
    /// with [`LockError::Timeout`] after `wait` plus the I/O deadline.
    pub async fn acquire(target: &Path, wait: Duration) -> Result<PiLock, LockError> {
        let owned = target.to_owned();
        let limit = wait + super::IO_DEADLINE;
        match super::within("piauthd-lock", limit, move || {
            PiLock::acquire_blocking(&owned, wait)
        })
        .await
        {
            Ok(Ok(result)) => result,
            Ok(Err(source)) => Err(LockError::Io {
                path: target.to_owned(),
                cause: source,
            }),
            Err(_) => Err(LockError::Timeout {
                path: lock_path(target).unwrap_or_else(|_| target.to_owned()),
                waited: limit,
            }),
        }
    }

    /// [`PiLock::acquire`] on the calling thread, which it blocks.
    pub fn acquire_blocking(target: &Path, wait: Duration) -> Result<PiLock, LockError> {
        let dir = lock_path(target).map_err(|source| LockError::Io {
            path: target.to_owned(),
            cause: source,
        })?;
        let deadline = Instant::now() + wait;
        let side_path = sidecar_path(&dir);
        let sidecar = match open_sidecar(&side_path, true) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %side_path.display(), error = %e,
                    "cannot use piauthd's lock sidecar; locking without crash recovery");
                None
            }
        };

        // Queue behind other piauthd processes first.
        let mut backoff = lock_backoff();
        while let Some(side) = &sidecar {
            match side.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(source)) => {
                    return Err(LockError::Io {
                        path: side_path,
                        cause: source,
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(LockError::Timeout {
                    path: dir,
                    waited: wait,
                });
            }
            thread::sleep(backoff.fail());
        }
        let mut lock = PiLock {
            dir,
            sidecar,
            held: None,
        };
        // On error the guard drops here, which unlocks the sidecar.
        lock.take_dir(deadline, wait)?;
        Ok(lock)
    }

    /// Creates the lock directory, waiting until `deadline` while someone
    /// else holds it. The caller holds the sidecar flock (when there is one).
    fn take_dir(&mut self, deadline: Instant, wait: Duration) -> Result<(), LockError> {
        let dir = self.dir.clone();
        let io_err = |source: io::Error| LockError::Io {
            path: dir.clone(),
            cause: source,
        };
        let mut backoff = lock_backoff();
        loop {
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // An abandoned lock the directory will not let go of
                    // cannot be removed by any pi process either: nobody
                    // can lock, as when the directory cannot be created.
                    let existing =
                        remove_if_abandoned(&dir, self.sidecar.as_mut()).map_err(|e| {
                            if unwritable(&e) {
                                LockError::Unwritable {
                                    path: dir.clone(),
                                    cause: e,
                                }
                            } else {
                                io_err(e)
                            }
                        })?;
                    match existing {
                        Existing::Gone => continue,
                        Existing::Held => {}
                        Existing::NotADirectory => {
                            return Err(LockError::NotADirectory { path: dir.clone() });
                        }
                    }
                }
                // Only the lock directory itself decides "unwritable": if we
                // cannot create it, no pi process can either.
                Err(e) if unwritable(&e) => {
                    return Err(LockError::Unwritable {
                        path: dir.clone(),
                        cause: e,
                    });
                }
                Err(e) => return Err(io_err(e)),
            }
            if Instant::now() >= deadline {
                return Err(LockError::Timeout {
                    path: dir.clone(),
                    waited: wait,
                });
            }
            thread::sleep(backoff.fail());
        }

        // From here on the directory is ours: never leave it behind on error.
        let setup = (|| {
            let identity = identity_of(&fs::metadata(&dir)?);
            if let Some(side) = self.sidecar.as_mut()
                && let Err(e) = write_record(side, Some(identity))
            {
                tracing::warn!(error = %e, "cannot record the lock in the sidecar");
            }
            let (stop_heartbeat, heartbeat) = start_heartbeat(&dir)?;
            Ok::<_, io::Error>(Held {
                identity,
                stop_heartbeat,
                heartbeat,
            })
        })();
        match setup {
            Ok(held) => {
                self.held = Some(held);
                tracing::trace!(lock = %dir.display(), "took pi's auth.json lock");
                Ok(())
            }
            Err(e) => {
                if let Some(side) = self.sidecar.as_mut() {
                    let _ = write_record(side, None);
                }
                let _ = fs::remove_dir(&dir);
                Err(io_err(e))
            }
        }
    }

    /// The lock directory's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether the guard can give the directory back to pi and stay first
    /// in line among piauthd processes: only with the sidecar flock.
    pub fn can_pause(&self) -> bool {
        self.sidecar.is_some()
    }

    /// Whether the guard holds the lock directory now (not paused).
    pub fn holds_dir(&self) -> bool {
        self.held.is_some()
    }

    /// Gives the lock directory back to pi while keeping the sidecar flock,
    /// so no other piauthd can start a refresh meanwhile. Returns the guard,
    /// paused; a guard without a sidecar is returned as it was.
    pub async fn pause(self) -> io::Result<PiLock> {
        self.blocking("piauthd-lock-pause", |lock| {
            if lock.can_pause() {
                lock.drop_dir()?;
            }
            Ok(())
        })
        .await
    }

    /// Takes the lock directory again after [`PiLock::pause`], waiting up to
    /// `wait` for pi to give it back.
    pub async fn resume(self, wait: Duration) -> Result<PiLock, LockError> {
        let dir = self.dir.clone();
        let limit = wait + super::IO_DEADLINE;
        let resumed = super::within("piauthd-lock-resume", limit, move || {
            let mut lock = self;
            if lock.held.is_none() {
                lock.take_dir(Instant::now() + wait, wait)?;
            }
            Ok(lock)
        })
        .await;
        match resumed {
            Ok(Ok(result)) => result,
            Ok(Err(source)) => Err(LockError::Io {
                path: dir,
                cause: source,
            }),
            Err(_) => Err(LockError::Timeout {
                path: dir,
                waited: limit,
            }),
        }
    }

    /// Runs `step` on the guard off the runtime, within the I/O deadline.
    async fn blocking(
        self,
        name: &'static str,
        step: impl FnOnce(&mut PiLock) -> io::Result<()> + Send + 'static,
    ) -> io::Result<PiLock> {
        let dir = self.dir.clone();
        match super::within(name, super::IO_DEADLINE, move || {
            let mut lock = self;
            step(&mut lock).map(|()| lock)
        })
        .await
        {
            Ok(result) => result?,
            Err(overdue) => Err(io::Error::other(format!(
                "{name} on {} {overdue}",
                dir.display()
            ))),
        }
    }

    /// Releases the lock, reporting a failure to remove the directory. The
    /// file system work runs off the async runtime; if it hangs, the lock
    /// is released by that thread whenever the file system answers.
    pub async fn release(self) -> io::Result<()> {
        self.blocking("piauthd-unlock", |lock| lock.release_inner())
            .await
            .map(drop)
    }

    /// Releases `lock`, if any, logging a failure: for callers that go on
    /// whatever happens to the directory.
    pub async fn release_logged(lock: Option<PiLock>) {
        if let Some(lock) = lock
            && let Err(e) = lock.release().await
        {
            tracing::warn!(error = %e, "could not remove pi's auth.json lock");
        }
    }

    /// [`PiLock::release`] on the calling thread.
    pub fn release_blocking(mut self) -> io::Result<()> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> io::Result<()> {
        let result = self.drop_dir();
        if let Some(side) = self.sidecar.take() {
            let _ = side.unlock();
        }
        result
    }

    /// Stops the heartbeat and removes the directory, if held.
    fn drop_dir(&mut self) -> io::Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        drop(held.stop_heartbeat);
        let _ = held.heartbeat.join();
        // Forget the holding before the directory goes, so a crash between
        // the two never makes a later pi lock look like ours.
        if let Some(side) = self.sidecar.as_mut() {
            let _ = write_record(side, None);
        }
        let result = match fs::metadata(&self.dir) {
            Ok(m) if identity_of(&m) == held.identity => {
                let removed = fs::remove_dir(&self.dir);
                // The directory refused to go (made read-only meanwhile): it
                // is still there and still ours, so say so again, and our
                // next lock knows at once that nobody else holds it.
                if removed.is_err()
                    && let Some(side) = self.sidecar.as_mut()
                {
                    let _ = write_record(side, Some(held.identity));
                }
                removed
            }
            Ok(_) => {
                tracing::warn!(lock = %self.dir.display(),
                    "our auth.json lock was taken over by another process; leaving theirs in place");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(lock = %self.dir.display(), "our auth.json lock vanished while held");
                Ok(())
            }
            Err(e) => Err(e),
        };
        tracing::trace!(lock = %self.dir.display(), "released pi's auth.json lock");
        result
    }
}

impl Drop for PiLock {
    fn drop(&mut self) {
        if let Err(e) = self.release_inner() {
            tracing::warn!(lock = %self.dir.display(), error = %e, "could not remove the auth.json lock");
        }
    }
}

/// The pause between tries for a held lock: 5 ms doubling to 100 ms, so a
/// short hold costs little latency and a long one little CPU.
fn lock_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(5), Duration::from_millis(100))
}

/// Whether an error means the directory cannot be written at all.
fn unwritable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::StorageFull
    )
}

/// What stands at the lock path when `mkdir` said it exists.
enum Existing {
    /// Nothing any more: released meanwhile, or removed as abandoned.
    Gone,
    /// A lock someone holds.
    Held,
    /// Something other than a directory: nobody can lock.
    NotADirectory,
}

/// Removes the existing lock directory if it is stale or orphaned by a dead
/// piauthd. The caller holds the sidecar flock.
fn remove_if_abandoned(dir: &Path, mut sidecar: Option<&mut File>) -> io::Result<Existing> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Gone),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return Ok(Existing::NotADirectory);
    }
    let orphaned = match sidecar.as_deref_mut() {
        Some(side) => {
            let record = read_record(side)?;
            let ours = is_ours(record, &meta);
            if record.is_some() && !ours {
                // We hold the flock, so the record is from a dead piauthd and
                // names a directory that is gone: forget it.
                write_record(side, None)?;
            }
            ours
        }
        None => false,
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    if !orphaned && age < STALE_AFTER {
        return Ok(Existing::Held);
    }
    if orphaned {
        tracing::warn!(lock = %dir.display(), "removing an auth.json lock left by a piauthd that died");
    } else {
        tracing::warn!(lock = %dir.display(), age_secs = age.as_secs(), "removing a stale auth.json lock");
    }
    match fs::remove_dir(dir) {
        Ok(()) => {
            if let Some(side) = sidecar {
                write_record(side, None)?;
            }
            Ok(Existing::Gone)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Gone),
        Err(e) => Err(e),
    }
}

/// Removes a lock directory orphaned by a dead piauthd, if there is one.
/// Called at start-up so pi processes do not wait 30 s for a stale lock.
pub fn recover_orphan(target: &Path) -> io::Result<bool> {
    let dir = lock_path(target)?;
    let side = sidecar_path(&dir);
    let mut sidecar = match open_sidecar(&side, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if sidecar.try_lock().is_err() {
        return Ok(false); // a live piauthd holds it
    }
    let Ok(meta) = fs::symlink_metadata(&dir) else {
        // The directory named by a stale record is gone: forget the record,
        // so a later directory that reuses the inode is never taken for ours.
        write_record(&mut sidecar, None)?;
        return Ok(false);
    };
    if is_ours(read_record(&mut sidecar)?, &meta) {
        tracing::warn!(lock = %dir.display(), "removing an auth.json lock left by a piauthd that died");
        fs::remove_dir(&dir)?;
        write_record(&mut sidecar, None)?;
        return Ok(true);
    }
    Ok(false)
}

fn start_heartbeat(dir: &Path) -> io::Result<(mpsc::Sender<()>, thread::JoinHandle<()>)> {
    let handle = File::open(dir)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let dir = dir.to_owned();
    let thread = thread::Builder::new()
        .name("piauthd-lock-heartbeat".into())
        .spawn(move || {
            // Disconnection (the guard dropped its sender) ends the loop.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                let now = SystemTime::now();
                if let Err(e) = handle.set_times(FileTimes::new().set_modified(now).set_accessed(now)) {
                    tracing::warn!(lock = %dir.display(), error = %e, "could not refresh the auth.json lock");
                }
            }
        })?;
    Ok((stop, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_path_resolves_symlinks_and_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let real_dir = fs::canonicalize(tmp.path()).unwrap();
        let missing = tmp.path().join("auth.json");
        assert_eq!(
            lock_path(&missing).unwrap(),
            real_dir.join("auth.json.lock")
        );
        fs::write(real_dir.join("target.json"), b"{}").unwrap();
        std::os::unix::fs::symlink(real_dir.join("target.json"), &missing).unwrap();
        assert_eq!(
            lock_path(&missing).unwrap(),
            real_dir.join("target.json.lock")
        );
    }
}
