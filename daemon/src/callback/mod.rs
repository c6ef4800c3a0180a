//! The login callback listener on `localhost:1455` (or `:1457`).
//!
//! It exists only while a login is in progress: [`CallbackServer`] owns the
//! listening sockets and every connection, and dropping it closes them all
//! at once, so the port is free the moment the login ends.
//!
//! The login belongs to the user who runs the daemon:
//! * It listens on `127.0.0.1` *and* `[::1]`, on the same port, because the
//!   redirect says `localhost` and a browser may try either. A port is used
//!   only when both are ours; if another user holds either, the browser
//!   login is refused ([`Refusal::Foreign`]), naming the holder.
//! * On Linux every connection's owner is asked of the kernel ([`diag`],
//!   or the socket table of [`peer`] where sock_diag is missing); one from
//!   another uid is closed before a byte is read. An ssh-forwarded browser passes, as sshd runs as the user.
//!   Other systems have no such table for TCP, and rely on the rest.
//! * The browser must come through the one-time start URL, whose cookie the
//!   callback requires, and `Host` must name the listener ([`rules`]).
//!
//! And it is bounded: at most [`MAX_CONNECTIONS`] at once (the rest wait in
//! the kernel's backlog, costing no descriptor), each with a deadline for
//! its head and for its whole life, a capped head size, accept errors that
//! back off instead of spinning, and repeated problems logged once per
//! [`LOG_WINDOW`] ([`bounds`]).

mod bounds;
#[cfg(target_os = "linux")]
mod diag;
mod peer;
mod rules;

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

pub use peer::Holder;
pub use rules::{Answer, CallbackEvent, Flow};
use rules::{Asked, Progress};

use crate::throttle::Throttle;
use bounds::AcceptBackoff;

/// Connections served at once; enough for a browser's parallel sockets.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// The longest a connection lives, whatever it does.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(15);
/// The largest request head read (hyper's minimum buffer).
pub const MAX_HEAD: usize = 8 * 1024;
/// A repeated problem is logged at most once per window.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Why one address could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("the callback address {addr} is busy{}", held_by(.holder))]
    Busy {
        addr: SocketAddr,
        holder: Option<Holder>,
    },
    #[error("cannot listen on {addr}: {cause}")]
    Io { addr: SocketAddr, cause: io::Error },
}

fn held_by(holder: &Option<Holder>) -> String {
    holder
        .as_ref()
        .map(|h| format!(" (held by {h})"))
        .unwrap_or_default()
}

/// Why the browser login cannot have a listener.
#[derive(Debug)]
pub enum Refusal {
    /// Every candidate port was busy (held by this user or by someone
    /// unknown) or failed; a pasted URL can still finish the login.
    Unavailable(Vec<BindError>),
    /// Another user listens on a loopback address of a candidate port: a
    /// browser could hand it the sign-in, so no redirect may point there.
    Foreign { addr: SocketAddr, holder: Holder },
}

/// The listening sockets of one port, both loopback families.
#[derive(Debug)]
pub struct Bound {
    listeners: Vec<TcpListener>,
    /// The configured family's address, with the port really bound.
    pub addr: SocketAddr,
}

/// The loopback address of the other family, if `addr` is one.
fn companion(addr: SocketAddr) -> Option<SocketAddr> {
    let other = match addr.ip() {
        IpAddr::V4(ip) if ip == Ipv4Addr::LOCALHOST => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(ip) if ip == Ipv6Addr::LOCALHOST => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => return None,
    };
    Some(SocketAddr::new(other, addr.port()))
}

fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Who holds `addr`, where the system can tell.
async fn holder_of(addr: SocketAddr) -> Option<Holder> {
    #[cfg(target_os = "linux")]
    {
        tokio::task::spawn_blocking(move || peer::holder(addr))
            .await
            .ok()
            .flatten()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = addr;
        None
    }
}

/// What a failed bind means: another user's port, a busy one, or an error.
async fn bind_failed(addr: SocketAddr, e: io::Error) -> Result<BindError, Refusal> {
    if e.kind() != io::ErrorKind::AddrInUse {
        return Ok(BindError::Io { addr, cause: e });
    }
    match holder_of(addr).await {
        Some(holder) if holder.uid != my_uid() => Err(Refusal::Foreign { addr, holder }),
        holder => Ok(BindError::Busy { addr, holder }),
    }
}

/// Binds `candidate` and, on the same port, its other loopback family.
/// A host without IPv6 (or IPv4) loopback gets the one it has.
async fn bind_pair(candidate: SocketAddr) -> Result<Result<Bound, BindError>, Refusal> {
    let first = match TcpListener::bind(candidate).await {
        Ok(l) => l,
        Err(e) => return bind_failed(candidate, e).await.map(Err),
    };
    let addr = match first.local_addr() {
        Ok(a) => a,
        Err(source) => {
            return Ok(Err(BindError::Io {
                addr: candidate,
                cause: source,
            }));
        }
    };
    let mut listeners = vec![first];
    if let Some(other) = companion(addr) {
        match TcpListener::bind(other).await {
            Ok(l) => listeners.push(l),
            Err(e)
                if e.kind() == io::ErrorKind::AddrNotAvailable
                    || e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
            {
                tracing::debug!(%other, "no loopback of that family here; listening on {addr} only");
            }
            // `listeners` drops here, freeing the first family too.
            Err(e) => return bind_failed(other, e).await.map(Err),
        }
    }
    Ok(Ok(Bound { listeners, addr }))
}

/// Binds the first candidate port that is free in both loopback families.
/// Stops at once, with [`Refusal::Foreign`], at a port another user holds.
pub async fn bind(candidates: &[SocketAddr]) -> Result<Bound, Refusal> {
    let mut errors = Vec::new();
    for &candidate in candidates {
        match bind_pair(candidate).await? {
            Ok(bound) => return Ok(bound),
            Err(e) => errors.push(e),
        }
    }
    Err(Refusal::Unavailable(errors))
}

/// A running listener. Dropping it closes the port and every connection.
pub struct CallbackServer {
    pub addr: SocketAddr,
    start_url: String,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for CallbackServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// What every connection of one listener shares.
struct Shared {
    flow: Flow,
    progress: Mutex<Progress>,
    events: mpsc::Sender<CallbackEvent>,
    slots: Arc<Semaphore>,
    uid: u32,
    accept_log: Mutex<Throttle>,
    refusal_log: Mutex<Throttle>,
}

impl Shared {
    /// Logs a refusal unless one was logged within the window. Nothing
    /// logged comes from the request beyond its kind.
    fn refused(&self, what: &str) {
        let admitted = lock(&self.refusal_log).admit(Instant::now());
        if let Some(suppressed) = admitted {
            tracing::warn!(
                suppressed,
                "login callback: refused {what}; the login stays open"
            );
        }
    }

    fn accept_failed(&self, e: &io::Error, pause: Duration) {
        let admitted = lock(&self.accept_log).admit(Instant::now());
        if let Some(suppressed) = admitted {
            tracing::warn!(error = %e, suppressed, pause_ms = pause.as_millis() as u64,
                "login callback: accept failed; pausing");
        }
    }

    /// Whether the connection comes from the daemon's own user.
    async fn admits(&self, ours: SocketAddr, peer: SocketAddr) -> bool {
        #[cfg(target_os = "linux")]
        {
            match owner(ours, peer).await {
                Ok(Some(uid)) if uid == self.uid => true,
                Ok(Some(uid)) => {
                    self.refused(&format!("a connection from another user (uid {uid})"));
                    false
                }
                Ok(None) => {
                    self.refused("a connection whose owner could not be found");
                    false
                }
                Err(e) => {
                    self.refused(&format!("a connection: its owner cannot be checked ({e})"));
                    false
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (ours, peer, self.uid);
            true
        }
    }

    /// Judges one request and reports what it means to the login.
    async fn answer(
        &self,
        req: hyper::Request<Incoming>,
    ) -> http::Response<http_body_util::Full<hyper::body::Bytes>> {
        let (answer, event) = {
            let mut progress = lock(&self.progress);
            let (answer, event) = rules::judge(&Asked::of(&req), &self.flow, *progress);
            match answer {
                Answer::Start => progress.started = true,
                Answer::Success => progress.completed = true,
                _ => {}
            }
            (answer, event)
        };
        match answer {
            Answer::WrongHost => self.refused("a request for another host name"),
            Answer::NotThisBrowser => self.refused(
                "a callback without this login's cookie (not the browser that started it)",
            ),
            Answer::StartReused => {
                tracing::warn!("login callback: the start link was opened twice; ending the login")
            }
            _ => {}
        }
        if let Some(event) = event {
            let _ = self.events.send(event).await;
        }
        rules::respond(&answer, &self.flow)
    }
}

/// The uid of the live socket that connected from `peer` to `ours`: asked
/// of the kernel directly, or read from /proc/net/tcp where sock_diag is
/// not available (a scan, so off the async threads). A socket no process
/// holds any more, or one not established, has no owner.
#[cfg(target_os = "linux")]
async fn owner(ours: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
    match diag::socket_owner(peer, ours) {
        Ok(found) => Ok(found
            .filter(|s| s.state == 1 && s.inode != 0)
            .map(|s| s.uid)),
        Err(e) => {
            tracing::debug!(error = %e, "sock_diag unavailable; reading /proc/net/tcp");
            tokio::task::spawn_blocking(move || peer::peer_uid(ours, peer))
                .await
                .map_err(io::Error::other)?
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CallbackServer {
    /// Serves `flow` on `bound`, reporting codes, denials and a reused
    /// start link on `events`.
    pub fn start(bound: Bound, flow: Flow, events: mpsc::Sender<CallbackEvent>) -> CallbackServer {
        let start_url = crate::oauth::start_uri(bound.addr.port(), flow.start_nonce.expose());
        let shared = Arc::new(Shared {
            flow,
            progress: Mutex::new(Progress::default()),
            events,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            uid: my_uid(),
            accept_log: Mutex::new(Throttle::new(LOG_WINDOW)),
            refusal_log: Mutex::new(Throttle::new(LOG_WINDOW)),
        });
        let mut tasks = JoinSet::new();
        for listener in bound.listeners {
            tasks.spawn(accept_loop(listener, shared.clone()));
        }
        CallbackServer {
            addr: bound.addr,
            start_url,
            tasks,
        }
    }

    /// The one-time URL to open in the browser.
    pub fn start_url(&self) -> &str {
        &self.start_url
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Accepts while a slot is free; the connection tasks belong to this task,
/// so aborting it (on drop) aborts them all.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let Ok(slot) = shared.slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) => {
                let pause = backoff.after(&e);
                shared.accept_failed(&e, pause);
                drop(slot);
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        conns.spawn(connection(stream, peer, slot, shared.clone()));
        // Reap finished connections so the set stays small.
        while conns.try_join_next().is_some() {}
    }
}

/// One connection: its owner checked, one request, within the deadlines.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) {
    let Ok(ours) = stream.local_addr() else {
        return;
    };
    if !shared.admits(ours, peer).await {
        return; // dropping the stream closes it
    }
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(shared.answer(req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(CONNECTION_DEADLINE, served).await;
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
