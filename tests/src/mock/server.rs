//! The mock's accept loop. It is hand-written (rather than `axum::serve`) so
//! a handler can reset its own TCP connection, the fault that makes a
//! refresh's outcome unknown to the client, and so open connections can be
//! counted.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::response::Response;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};
use tower::ServiceExt;

use super::{MockState, codex, issuer, login};

/// Lets a handler reset the connection it arrived on.
#[derive(Clone)]
pub struct ResetHandle(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl ResetHandle {
    /// Resets the connection. The response is never sent.
    pub async fn reset(&self) -> Response {
        self.trigger();
        std::future::pending().await
    }

    /// Resets the connection from outside the handler (mid-stream).
    pub fn trigger(&self) {
        if let Ok(mut slot) = self.0.try_lock()
            && let Some(tx) = slot.take()
        {
            let _ = tx.send(());
        }
    }
}

fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/oauth/token", post(issuer::token))
        .route("/oauth/authorize", get(login::authorize))
        .route(
            "/api/accounts/deviceauth/usercode",
            post(login::device_usercode),
        )
        .route("/api/accounts/deviceauth/token", post(login::device_token))
        .route(
            "/backend-api/codex/responses",
            post(codex::responses).get(super::websocket::upgrade),
        )
        .route("/backend-api/wham/usage", get(super::usage::usage))
        .route("/_mock/usage", post(super::usage::set_usage))
        .route("/_mock/stats", get(issuer::stats))
        .route("/_mock/responses", get(issuer::responses_seen))
        .route("/_mock/faults", post(issuer::push_faults))
        .route("/_mock/seed", post(issuer::seed))
        .route("/_mock/reply", post(issuer::set_reply))
        .with_state(state)
}

pub async fn serve(listener: TcpListener, state: Arc<MockState>, mut stop: oneshot::Receiver<()>) {
    let app = router(state.clone());
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let app = app.clone();
        tokio::spawn(async move {
            state.open_connections.fetch_add(1, Ordering::SeqCst);
            let fd = stream.as_raw_fd();
            let (tx, rx) = oneshot::channel();
            let handle = ResetHandle(Arc::new(Mutex::new(Some(tx))));
            let service = app.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(handle.clone());
                req
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let mut conn = Box::pin(builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            ));
            tokio::select! {
                _ = conn.as_mut() => {}
                Ok(()) = rx => {
                    // SAFETY: the connection (and so the socket) is alive
                    // until `conn` is dropped at the end of this block.
                    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
                    let _ = socket2::SockRef::from(&borrowed).set_linger(Some(std::time::Duration::ZERO));
                }
            }
            drop(conn); // closes the socket (with RST after a reset)
            state.open_connections.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
