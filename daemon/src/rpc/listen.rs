//! The gRPC socket's accept loop and the connections it admits, bounded.
//!
//! * **Accept errors back off** ([`Backoff`]): EMFILE and ENFILE persist
//!   until a descriptor closes, and tonic retries a failed accept at once,
//!   which spins a core. So the loop here never hands tonic an error.
//! * **At most [`connection_cap`] connections.** When the cap is reached and
//!   a new client is waiting, the connection idle the longest (no open
//!   stream) is closed to make room; if every connection is busy, new
//!   clients wait in the kernel's backlog until one ends.
//! * **Idle connections close** after the idle timeout (by default
//!   [`crate::config::DEFAULT_CONNECTION_IDLE_SECS`], 5 min) with no open stream.
//!   A WatchToken stream is an open stream, so a watching client stays.
//! * **Repeated errors are logged once per [`LOG_PERIOD`]**, with a count.
//!
//! Streams are counted by [`TrackStreamsLayer`], which finds the
//! connection's state in the request's extensions ([`ConnInfo`]) and holds
//! a count until the response body is dropped (the stream ended).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, UdsConnectInfo};

use super::limits::{ACCEPT_PAUSE_FIRST, ACCEPT_PAUSE_MAX, LOG_PERIOD};
use crate::backoff::Backoff;
use crate::throttle::Throttle;

/// One admitted connection, shared by its I/O and its requests.
#[derive(Debug)]
pub struct ConnState {
    id: u64,
    epoch: Instant,
    /// Streams (calls) open on the connection.
    open: AtomicUsize,
    /// Milliseconds after `epoch` when the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Set to close the connection; its next read reports end of file.
    evict: AtomicBool,
    /// Wakes the connection's reader, so an eviction takes effect at once.
    waker: AtomicWaker,
}

impl ConnState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long the connection has had no open stream; `None` while busy.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.open.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::SeqCst);
        Some(Duration::from_millis(self.now_ms().saturating_sub(since)))
    }

    fn evict(&self) {
        self.evict.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

/// Counts a stream open until dropped.
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnState>);

impl StreamGuard {
    pub fn open(state: Arc<ConnState>) -> StreamGuard {
        state.open.fetch_add(1, Ordering::SeqCst);
        StreamGuard(state)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let now = self.0.now_ms();
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle_since_ms.store(now, Ordering::SeqCst);
            // The reader re-arms its idle timer from the new time.
            self.0.waker.wake();
        }
    }
}

/// The admitted connections.
#[derive(Debug)]
pub struct Registry {
    cap: usize,
    epoch: Instant,
    next_id: AtomicU64,
    conns: std::sync::Mutex<HashMap<u64, Arc<ConnState>>>,
    /// Signalled whenever a connection ends.
    freed: tokio::sync::Notify,
    /// Evictions are logged once per period, with a count.
    evictions: std::sync::Mutex<Throttle>,
}

impl Registry {
    pub fn new(cap: usize) -> Arc<Registry> {
        Arc::new(Registry {
            cap,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            conns: std::sync::Mutex::new(HashMap::new()),
            freed: tokio::sync::Notify::new(),
            evictions: std::sync::Mutex::new(Throttle::new(LOG_PERIOD)),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections admitted now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.conns.lock().map_or(0, |c| c.len())
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A slot for a new connection, if the cap allows one.
    fn admit(&self) -> Option<Arc<ConnState>> {
        let mut conns = self.conns.lock().ok()?;
        if conns.len() >= self.cap {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let state = Arc::new(ConnState {
            id,
            epoch: self.epoch,
            open: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(
                u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX),
            ),
            evict: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        conns.insert(id, state.clone());
        Some(state)
    }

    /// Closes the connection idle the longest. Returns false when every
    /// connection is busy (none idle, none already closing).
    fn evict_idlest(&self) -> bool {
        let Ok(conns) = self.conns.lock() else {
            return false;
        };
        if conns.values().any(|c| c.evict.load(Ordering::SeqCst)) {
            return true; // one is closing already: its slot comes soon
        }
        let idlest = conns
            .values()
            .filter_map(|c| c.idle_for().map(|idle| (idle, c)))
            .max_by_key(|(idle, _)| *idle);
        match idlest {
            Some((idle, c)) => {
                let note = self
                    .evictions
                    .lock()
                    .ok()
                    .and_then(|mut r| r.admit(Instant::now()));
                if let Some(more) = note {
                    tracing::info!(
                        cap = self.cap,
                        idle_ms = idle.as_millis() as u64,
                        more,
                        "connection limit reached; closing the connection idle the longest \
                         (`more` counts the others closed since the last line)"
                    );
                }
                c.evict();
                true
            }
            None => false,
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut conns) = self.conns.lock() {
            conns.remove(&id);
        }
        self.freed.notify_one();
    }
}

/// What each request of a connection carries in its extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub uds: UdsConnectInfo,
    pub state: Arc<ConnState>,
}

/// An admitted connection: the stream, its slot, and its idle timer.
#[derive(Debug)]
pub struct Tracked {
    stream: UnixStream,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    idle_after: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Tracked {
    fn with_idle(
        stream: UnixStream,
        state: Arc<ConnState>,
        registry: Arc<Registry>,
        idle_after: Duration,
    ) -> Tracked {
        Tracked {
            stream,
            state,
            registry,
            idle_after,
            timer: Box::pin(tokio::time::sleep(idle_after)),
        }
    }

    /// Whether the connection should close now; otherwise re-arms the timer
    /// (registering the waker) for when it might.
    fn should_close(&mut self, cx: &mut Context<'_>) -> bool {
        self.state.waker.register(cx.waker());
        if self.state.evict.load(Ordering::SeqCst) {
            return true;
        }
        loop {
            let wait = match self.state.idle_for() {
                Some(idle) if idle >= self.idle_after => {
                    tracing::debug!("closing a connection idle for {:?}", self.idle_after);
                    self.state.evict.store(true, Ordering::SeqCst);
                    return true;
                }
                Some(idle) => self.idle_after - idle,
                None => self.idle_after,
            };
            let deadline = tokio::time::Instant::now() + wait;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.registry.remove(self.state.id);
    }
}

impl Connected for Tracked {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            uds: self.stream.connect_info(),
            state: self.state.clone(),
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.should_close(cx) {
            return Poll::Ready(Ok(())); // end of file: hyper closes
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The admitted connections of `listener`, as tonic's incoming stream. It
/// ends when `shutdown` is cancelled.
pub fn incoming(
    listener: UnixListener,
    registry: Arc<Registry>,
    idle_after: Duration,
    shutdown: CancellationToken,
) -> ReceiverStream<io::Result<Tracked>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(accept_loop(listener, registry, idle_after, tx, shutdown));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: UnixListener,
    registry: Arc<Registry>,
    idle_after: Duration,
    tx: tokio::sync::mpsc::Sender<io::Result<Tracked>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(ACCEPT_PAUSE_FIRST, ACCEPT_PAUSE_MAX);
    let mut errors = Throttle::new(LOG_PERIOD);
    let mut full = Throttle::new(LOG_PERIOD);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shutdown.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.reset();
                stream
            }
            Err(e) => {
                let pause = backoff.fail();
                if let Some(more) = errors.admit(Instant::now()) {
                    tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, more,
                        "cannot accept a connection; backing off (`more` counts the repeats since the last line)");
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        let state = loop {
            if let Some(state) = registry.admit() {
                break state;
            }
            if !registry.evict_idlest()
                && let Some(more) = full.admit(Instant::now())
            {
                tracing::warn!(
                    cap = registry.cap(),
                    more,
                    "every connection is busy; new clients wait until one ends"
                );
            }
            tokio::select! {
                () = registry.freed.notified() => {}
                // A busy connection may have gone idle meanwhile.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => return,
            }
        };
        if tx
            .send(Ok(Tracked::with_idle(
                stream,
                state,
                registry.clone(),
                idle_after,
            )))
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
#[path = "listen_tests.rs"]
mod tests;
