//! Store I/O off the async runtime.
//!
//! Reading `auth.json`, taking pi's lock and talking to the keyring are
//! blocking system calls, and on a hung network home (or a FIFO planted at
//! `auth.json`) they may never return. Run on the runtime's worker threads
//! they would freeze every RPC and the signal handler with them. So each
//! runs on a thread of its own, and the async side waits for it with a
//! deadline: a call that overruns it is abandoned (the thread stays blocked
//! in the kernel, harmlessly) and reported as [`Overdue`]. Plain threads,
//! not `spawn_blocking`: dropping the runtime at exit waits for
//! `spawn_blocking` tasks, which would make a hung read outlive SIGTERM.

use std::io;
use std::time::Duration;

/// How long one store call (a read, a write, one lock step) may take before
/// the daemon stops waiting for it. A local disk answers in milliseconds;
/// ten seconds only ever runs out on a filesystem that is not answering.
pub const IO_DEADLINE: Duration = Duration::from_secs(10);

/// A call that did not finish within its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("did not finish within {0:?} (a hung network filesystem?)")]
pub struct Overdue(pub Duration);

/// Runs `f` on a fresh thread named `name` and waits for it.
pub async fn off_runtime<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // The receiver may be gone (the caller gave up): the result is
            // dropped here, on this thread.
            let _ = tx.send(f());
        })?;
    rx.await
        .map_err(|_| io::Error::other(format!("the {name} thread panicked")))
}

/// Like [`off_runtime`], but gives up waiting after `deadline`.
pub async fn within<T: Send + 'static>(
    name: &str,
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<io::Result<T>, Overdue> {
    tokio::time::timeout(deadline, off_runtime(name, f))
        .await
        .map_err(|_| Overdue(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_that_blocks_forever_is_abandoned_at_its_deadline() {
        // Opening a FIFO for reading without O_NONBLOCK blocks until a writer
        // comes: the shape of a hung read. The runtime stays free meanwhile.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let ticker = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            "the runtime kept running"
        });
        let started = Instant::now();
        let path = fifo.clone();
        let r = within("test-read", Duration::from_millis(200), move || {
            std::fs::read(path)
        })
        .await;
        assert_eq!(r.unwrap_err(), Overdue(Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(ticker.await.unwrap(), "the runtime kept running");
        // Let the abandoned thread go.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_quick_call_returns_its_value() {
        let r = within("test", IO_DEADLINE, || 7).await;
        assert_eq!(r.unwrap().unwrap(), 7);
    }
}
