//! Starting piauthd on demand, for clients that ask for it.
//!
//! When nothing answers on the socket, [`connect_or_start`] starts the
//! daemon in the background and waits until it serves. Clients racing to do
//! this take an advisory lock beside the socket first, so exactly one of
//! them starts a daemon and the others wait for it. (The daemon's own
//! one-instance lock would refuse a second one anyway.)
//!
//! Only the default socket is ever started on. A `--socket` or
//! `PIAUTHD_SOCKET` that nothing serves may be a typo: starting a second
//! daemon there would refresh the same `auth.json` beside the first one, so
//! the caller gets [`Error::NotRunning`] (which names both paths) and
//! nothing is created.
//!
//! Before the daemon is forked, `piauthd --check-config` runs with the same
//! environment, so a bad config file is reported by its first error line
//! (file, key and line) rather than as "exited at start".
//!
//! Every step assumes the socket's directory may not be what it seems:
//! * the directory is checked (ours, 0700, not a link: [`crate::verify`])
//!   before anything is created in it, and the daemon that answers is
//!   checked again by [`Client::connect`] afterwards;
//! * the lock `<socket>.autostart` is opened `O_NOFOLLOW | O_CLOEXEC`,
//!   never truncated, and must be a regular file of ours, so a planted link
//!   cannot make us create or touch another file; the log likewise;
//! * the lock is waited for at most [`LOCK_WAIT`]: a holder that never lets
//!   go (a hung client, or another user's process holding a descriptor)
//!   gets a clear error naming it instead of a hang;
//! * the daemon inherits only descriptors 0-2 and an allow-listed
//!   environment (the private `launch` module).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod error;

pub use error::StartError;

use crate::verify::{self, CheckError, Owner};
use crate::{Client, Error};

/// How long to wait for the autostart lock before giving up. Racing
/// clients stop waiting as soon as the daemon serves, so only a holder that
/// never finishes reaches this.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How long to wait for a started daemon to serve.
pub const READY_WAIT: Duration = Duration::from_secs(15);

/// How to start the daemon.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The `piauthd` binary.
    pub daemon: PathBuf,
    /// Where its output goes (appended).
    pub log: PathBuf,
}

/// What happened.
#[derive(Debug)]
pub enum Started {
    /// A daemon was already serving (perhaps started by a racing client).
    AlreadyRunning,
    /// This call started one, with this pid.
    Started(u32),
}

/// Connects to `socket`, starting the daemon first if nothing answers.
pub async fn connect_or_start(
    socket: &Path,
    opts: &StartOptions,
) -> Result<(Client, Started), Error> {
    match Client::connect(socket).await {
        Ok(c) => return Ok((c, Started::AlreadyRunning)),
        Err(e) if e.is_default_not_running() => {}
        Err(e) => return Err(e),
    }
    crate::check_not_other_file(socket)?;
    let started = {
        let path = socket.to_owned();
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || start_blocking(&path, &opts))
            .await
            .unwrap_or_else(|source| Err(StartError::Interrupted { source }))
            .map_err(|e| match e {
                // The same refusal as a socket that fails the checks of
                // `Client::connect`, so callers handle one variant for both.
                StartError::Untrusted { socket, problem } => Error::Untrusted { socket, problem },
                e => Error::from(e),
            })?
    };
    // After: whoever answers now is checked again, directory and peer.
    Ok((Client::connect(socket).await?, started))
}

fn serving(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

fn start_blocking(socket: &Path, opts: &StartOptions) -> Result<Started, StartError> {
    let euid = verify::euid();
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    private_dir(socket, dir, euid)?;
    let mut lock_name = socket.as_os_str().to_owned();
    lock_name.push(".autostart");
    let lock_path = PathBuf::from(lock_name);
    let lock = open_private(&lock_path, euid, OpenOptions::new().read(true).write(true))?;
    if !wait_for_lock(&lock, &lock_path, socket)? {
        return Ok(Started::AlreadyRunning);
    }
    let result = start_locked(socket, opts);
    let _ = lock.unlock();
    result
}

/// Checks the socket's directory, creating it 0700 when it is missing, and
/// checks it again after: it must be ours, private and not a link.
fn private_dir(socket: &Path, dir: &Path, euid: u32) -> Result<(), StartError> {
    let checked = |e: CheckError| match e {
        CheckError::Untrusted(problem) => StartError::Untrusted {
            socket: socket.to_owned(),
            problem,
        },
        CheckError::Io { path, source } => StartError::Prepare { path, source },
    };
    if verify::check_dir(dir, euid).map_err(checked)? {
        return Ok(());
    }
    create_private_dir(dir)?;
    if verify::check_dir(dir, euid).map_err(checked)? {
        Ok(())
    } else {
        Err(StartError::Prepare {
            path: dir.to_owned(),
            source: io::ErrorKind::NotFound.into(),
        })
    }
}

/// Opens (creating 0600 if needed, never truncating) a file that must be a
/// regular file of ours, without following a symbolic link.
fn open_private(path: &Path, euid: u32, opts: &mut OpenOptions) -> Result<File, StartError> {
    let file = opts
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                StartError::Symlink {
                    path: path.to_owned(),
                }
            } else {
                StartError::Prepare {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    let meta = file.metadata().map_err(|source| StartError::Prepare {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() || meta.uid() != euid {
        return Err(StartError::ForeignLock {
            path: path.to_owned(),
            owner: meta.uid(),
        });
    }
    Ok(file)
}

/// Takes the lock within [`LOCK_WAIT`]. `Ok(false)`: while waiting, a
/// racing client's daemon began to serve, so there is nothing to start.
fn wait_for_lock(lock: &File, path: &Path, socket: &Path) -> Result<bool, StartError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StartError::Prepare {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        if serving(socket) {
            return Ok(false);
        }
        if Instant::now() >= deadline {
            return Err(StartError::LockBusy {
                path: path.to_owned(),
                holder: describe_holder(lock),
            });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// "pid 123 (uid 65534 (nobody))" for the holder of `lock`'s flock, found in
/// `/proc/locks` (Linux); "another process" where that cannot be told.
fn describe_holder(lock: &File) -> String {
    let holder = lock.metadata().ok().and_then(|m| {
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        flock_holder(&locks, m.dev(), m.ino())
    });
    match holder {
        Some(pid) => match process_uid(pid) {
            Some(uid) => format!("pid {pid}, {}", Owner::of(uid)),
            None => format!("pid {pid}"),
        },
        None => "another process".to_owned(),
    }
}

/// The pid holding a FLOCK on the file `dev`/`ino`, from `/proc/locks`
/// text (`1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; waiters are
/// marked `->` and skipped). Pure.
fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    // glibc's dev_t encoding, as the kernel prints it (hex major:minor).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let (ma, mi, i) = (id.next()?, id.next()?, id.next()?);
        let same = u64::from_str_radix(ma, 16).ok()? == major
            && u64::from_str_radix(mi, 16).ok()? == minor
            && i.parse::<u64>().ok()? == ino;
        if same {
            fields.get(4)?.parse().ok()
        } else {
            None
        }
    })
}

/// The real uid of `pid`, from `/proc/<pid>/status`.
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn start_locked(socket: &Path, opts: &StartOptions) -> Result<Started, StartError> {
    if serving(socket) {
        return Ok(Started::AlreadyRunning);
    }
    check_config(socket, opts)?;
    if let Some(dir) = opts.log.parent() {
        create_private_dir(dir)?;
    }
    let log = open_private(&opts.log, verify::euid(), OpenOptions::new().append(true))?;
    // Where this start's output begins, to quote its first error line.
    let log_start = log.metadata().map_or(0, |m| m.len());
    let log_err = log.try_clone().map_err(|source| StartError::Prepare {
        path: opts.log.clone(),
        source,
    })?;
    let mut cmd = Command::new(&opts.daemon);
    crate::launch::prepare(&mut cmd);
    cmd.env("PIAUTHD_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    let mut child = cmd.spawn().map_err(|source| StartError::Spawn {
        daemon: opts.daemon.clone(),
        source,
    })?;
    let pid = child.id();
    let deadline = Instant::now() + READY_WAIT;
    while Instant::now() < deadline {
        if serving(socket) {
            // Reap it later without waiting: it is the daemon now.
            std::thread::spawn(move || child.wait());
            return Ok(Started::Started(pid));
        }
        if let Ok(Some(status)) = child.try_wait() {
            let said = read_from(&opts.log, log_start);
            return Err(StartError::Exited {
                status,
                first: first_error_line(&said)
                    .unwrap_or("it said nothing")
                    .to_owned(),
                log: opts.log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(StartError::NotReady {
        log: opts.log.clone(),
    })
}

/// Runs `piauthd --check-config` as the daemon would run (same environment
/// and socket), so a configuration it refuses is reported by its first
/// error line before anything is forked.
fn check_config(socket: &Path, opts: &StartOptions) -> Result<(), StartError> {
    let mut cmd = Command::new(&opts.daemon);
    crate::launch::prepare(&mut cmd);
    let out = cmd
        .arg("--check-config")
        .env("PIAUTHD_SOCKET", socket)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| StartError::Spawn {
            daemon: opts.daemon.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(StartError::Config {
        first: first_error_line(&said)
            .unwrap_or("its configuration check failed without a message")
            .to_owned(),
    })
}

/// What `path` holds from byte `start` on (lossy); empty if unreadable.
fn read_from(path: &Path, start: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = Vec::new();
    let read = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(start))?;
        f.take(64 * 1024).read_to_end(&mut text)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&text).into_owned(),
        Err(_) => String::new(),
    }
}

/// The daemon's first error line in `output`: its own `piauthd: ...` line
/// (what `main` prints on a fatal error), else the first logged `ERROR`,
/// else the last non-empty line. Pure.
fn first_error_line(output: &str) -> Option<&str> {
    let lines = || output.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.starts_with("piauthd: "))
        .map(|l| l.trim_start_matches("piauthd: "))
        .or_else(|| lines().find(|l| l.contains(" ERROR ")))
        .or_else(|| lines().next_back())
}

/// Creates `dir` and its missing parents, 0700.
fn create_private_dir(dir: &Path) -> Result<(), StartError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StartError::Prepare {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKS: &str = "\
1: POSIX  ADVISORY  WRITE 77 08:01:5678 0 EOF
2: FLOCK  ADVISORY  WRITE 4242 08:01:9999 0 EOF
2: -> FLOCK  ADVISORY  WRITE 5151 00:2d:1234 0 EOF
3: FLOCK  ADVISORY  WRITE 31337 00:2d:1234 0 EOF
";

    #[test]
    fn the_flock_holder_is_found_by_device_and_inode() {
        // dev 0x2d = major 0, minor 0x2d.
        assert_eq!(flock_holder(LOCKS, 0x2d, 1234), Some(31337));
        // dev 0x801 = major 8, minor 1.
        assert_eq!(flock_holder(LOCKS, 0x801, 9999), Some(4242));
        // A POSIX lock on that inode is not the flock; another device neither.
        assert_eq!(flock_holder(LOCKS, 0x801, 5678), None);
        assert_eq!(flock_holder(LOCKS, 0x802, 9999), None);
        assert_eq!(flock_holder("garbage\n1: FLOCK x", 1, 1), None);
    }

    #[test]
    fn the_first_error_line_is_the_daemons_own() {
        let log = "\x1b[2m2026\x1b[0m  INFO piauthd: starting\n\
                   piauthd: the config file /c.toml is invalid at line 3, key `x`: bad\n\
                   later noise\n";
        assert_eq!(
            first_error_line(log),
            Some("the config file /c.toml is invalid at line 3, key `x`: bad")
        );
        let traced = "2026 INFO serving\n2026 ERROR piauthd::server: keyring locked\nbye\n";
        assert_eq!(
            first_error_line(traced),
            Some("2026 ERROR piauthd::server: keyring locked")
        );
        assert_eq!(first_error_line("\n  \nonly this\n"), Some("only this"));
        assert_eq!(first_error_line(""), None);
    }

    #[test]
    fn a_held_lock_is_given_up_on_naming_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock.autostart");
        let me = verify::euid();
        let held = open_private(&path, me, OpenOptions::new().read(true).write(true)).unwrap();
        held.lock().unwrap();
        let mine = open_private(&path, me, OpenOptions::new().read(true).write(true)).unwrap();
        let t = Instant::now();
        let err = wait_for_lock(&mine, &path, &dir.path().join("s.sock")).unwrap_err();
        let waited = t.elapsed();
        assert!(
            waited >= LOCK_WAIT && waited < LOCK_WAIT + Duration::from_secs(2),
            "{waited:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("has been locked for 5s"), "{msg}");
    }

    #[test]
    fn a_symlinked_lock_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim-file");
        let link = dir.path().join("s.sock.autostart");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = open_private(
            &link,
            verify::euid(),
            OpenOptions::new().read(true).write(true),
        )
        .unwrap_err();
        assert!(matches!(err, StartError::Symlink { .. }), "{err}");
        assert!(!target.exists(), "nothing was created through the link");
    }
}
