//! Starting piauthd on demand, for clients that ask for it.
//!
//! When nothing answers on the socket, [`connect_or_start`] starts the
//! daemon in the background and waits until it serves. Clients racing to do
//! this take an advisory lock beside the socket first, so exactly one of
//! them starts a daemon and the others wait for it. (The daemon's own
//! one-instance lock would refuse a second one anyway.)

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Client, Error};

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

/// Why the daemon could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start piauthd ({}): {source}", daemon.display())]
    Spawn {
        daemon: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot prepare {}: {source}", path.display())]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("piauthd exited at start ({status}); see its log, {}", log.display())]
    Exited { status: String, log: PathBuf },
    #[error("piauthd did not start serving within {}s; see its log, {}", READY_WAIT.as_secs(), log.display())]
    NotReady { log: PathBuf },
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
        Err(Error::NotRunning { .. }) => {}
        Err(e) => return Err(e),
    }
    let started = {
        let path = socket.to_owned();
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || start_blocking(&path, &opts))
            .await
            .map_err(|e| Error::Autostart(e.to_string()))?
            .map_err(|e| Error::Autostart(e.to_string()))?
    };
    Ok((Client::connect(socket).await?, started))
}

fn serving(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

fn start_blocking(socket: &Path, opts: &StartOptions) -> Result<Started, StartError> {
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let prepare = |path: &Path| {
        let path = path.to_owned();
        move |source| StartError::Prepare { path, source }
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(prepare(dir))?;
    let mut lock_name = socket.as_os_str().to_owned();
    lock_name.push(".autostart");
    let lock_path = PathBuf::from(lock_name);
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(prepare(&lock_path))?;
    // Blocks while a racing client starts the daemon.
    lock.lock().map_err(prepare(&lock_path))?;
    let result = start_locked(socket, opts);
    let _ = lock.unlock();
    result
}

fn start_locked(socket: &Path, opts: &StartOptions) -> Result<Started, StartError> {
    if serving(socket) {
        return Ok(Started::AlreadyRunning);
    }
    if let Some(dir) = opts.log.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StartError::Prepare {
                path: dir.to_owned(),
                source,
            })?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&opts.log)
        .map_err(|source| StartError::Prepare {
            path: opts.log.clone(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| StartError::Prepare {
        path: opts.log.clone(),
        source,
    })?;
    let mut cmd = Command::new(&opts.daemon);
    cmd.env("PIAUTHD_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from the
    // client's terminal and process group, so Ctrl-C there does not stop it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
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
            return Err(StartError::Exited {
                status: status.to_string(),
                log: opts.log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(StartError::NotReady {
        log: opts.log.clone(),
    })
}
