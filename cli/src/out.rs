//! Writing to stdout and stderr without panicking.
//!
//! `println!` panics when stdout is closed (`pi-authctl watch | head -c
//! 10`) or cannot be written (a full disk). Everything the CLI prints goes
//! through here instead: a stdout error is returned as a [`WriteError`],
//! so a reader that closed the pipe ends the command quietly with status 0
//! (it has read what it wanted, as with `ripgrep`), and any other write
//! error is reported once. Errors writing to stderr are ignored: there is
//! nowhere left to report them.

use std::io::{self, Write};

/// Prints to stderr, like `eprintln!`, but never panics.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Stdout could not be written. `main` finds it in an error's chain: a
/// reader that went away ends the command quietly ([`WriteError::reader_gone`]).
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: {0}")]
pub struct WriteError(#[source] pub io::Error);

impl WriteError {
    /// Whether this means only that the reader went away.
    pub fn reader_gone(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Ctrl-C could not be caught, so a command that must cancel cleanly on it
/// (a login, a completion) does not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot catch Ctrl-C: {0}")]
pub struct SignalError(#[source] io::Error);

/// Writes `text` to stdout and flushes it, so `watch` lines and completion
/// text arrive as they happen.
pub fn print(text: &str) -> Result<(), WriteError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(WriteError)
}

/// [`print()`] with a newline.
pub fn line(text: &str) -> Result<(), WriteError> {
    print(&format!("{text}\n"))
}

/// Resolves once the reader of stdout has gone away (`pi-authctl watch |
/// head -c 5`), without writing anything: a command that prints only now
/// and then (`watch`, which may wait days for the next token) would
/// otherwise notice only at its next write. Only a pipe or a socket can
/// lose its reader; on a terminal or a file this never resolves.
pub async fn reader_gone() {
    let stdout = io::stdout();
    let kind = rustix::fs::fstat(&stdout).map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode));
    if !matches!(
        kind,
        Ok(rustix::fs::FileType::Fifo | rustix::fs::FileType::Socket)
    ) {
        return std::future::pending().await;
    }
    // poll(2) with no events asked reports only POLLERR and POLLHUP: the
    // reader closed its end. A thread of its own waits for that.
    let gone = tokio::task::spawn_blocking(move || {
        let stdout = io::stdout();
        loop {
            let mut fds = [rustix::event::PollFd::new(
                &stdout,
                rustix::event::PollFlags::empty(),
            )];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) if !fds[0].revents().is_empty() => return,
                Ok(_) | Err(rustix::io::Errno::INTR) => continue,
                Err(_) => loop {
                    std::thread::park();
                },
            }
        }
    });
    if gone.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// SIGINT as a stream, caught from the moment this returns (so a Ctrl-C
/// that comes early cancels rather than kills).
pub fn interrupts() -> Result<tokio::signal::unix::Signal, SignalError> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::interrupt()).map_err(SignalError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_pipe_means_the_reader_went_away() {
        let gone = WriteError(io::ErrorKind::BrokenPipe.into());
        assert!(gone.reader_gone());
        let full = WriteError(io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(!full.reader_gone());
        assert!(
            full.to_string().starts_with("cannot write to stdout: "),
            "{full}"
        );
    }
}
