//! Writing to stdout and stderr without panicking.
//!
//! `println!` panics when stdout is closed (`pi-authctl watch | head -c
//! 10`) or cannot be written (a full disk). Everything the CLI prints goes
//! through here instead: a stdout error is returned as [`Failed::Stdout`],
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

/// Why a command stopped.
#[derive(Debug)]
pub enum Failed {
    /// The daemon (or reaching it) failed.
    Client(piauth_client::Error),
    /// Writing the command's output failed.
    Stdout(io::Error),
    /// Anything else, said in a sentence; exit status 1.
    Message(String),
}

impl From<piauth_client::Error> for Failed {
    fn from(e: piauth_client::Error) -> Failed {
        Failed::Client(e)
    }
}

impl From<String> for Failed {
    fn from(m: String) -> Failed {
        Failed::Message(m)
    }
}

/// Writes `text` to stdout and flushes it, so `watch` lines and completion
/// text arrive as they happen.
pub fn print(text: &str) -> Result<(), Failed> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Failed::Stdout)
}

/// [`print`] with a newline.
pub fn line(text: &str) -> Result<(), Failed> {
    print(&format!("{text}\n"))
}

/// Whether a stdout error means only that the reader went away.
pub fn reader_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// SIGINT as a stream, caught from the moment this returns (so a Ctrl-C
/// that comes early cancels rather than kills).
pub fn interrupts() -> Result<tokio::signal::unix::Signal, Failed> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::interrupt())
        .map_err(|e| Failed::Message(format!("cannot catch Ctrl-C: {e}")))
}
