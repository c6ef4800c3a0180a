//! Every call is checked against the uid of the process on the other end.
//!
//! The socket's 0600 mode in a 0700 directory already keeps other users out;
//! this check is the second wall, and it holds even if the socket is exposed
//! by mistake (a bind mount, a wrong `--socket` path, a forwarded socket).
//! The kernel reports the peer's credentials (SO_PEERCRED on Linux,
//! getpeereid on macOS); tonic attaches them to each request.

use std::future::{Ready, ready};
use std::task::{Context, Poll};

use futures_util::future::Either;

use tonic::transport::server::UdsConnectInfo;
use tower::{Layer, Service};

use super::error::{Reason, status};
use super::listen::ConnInfo;

/// Whether a peer with `peer_uid` may call a daemon running as `own_uid`.
/// Unknown credentials are refused.
pub fn peer_allowed(own_uid: u32, peer_uid: Option<u32>) -> bool {
    peer_uid == Some(own_uid)
}

/// Refuses requests whose peer uid differs from the daemon's.
#[derive(Debug, Clone, Copy)]
pub struct PeerUidLayer {
    pub uid: u32,
}

impl<S> Layer<S> for PeerUidLayer {
    type Service = PeerUid<S>;

    fn layer(&self, inner: S) -> PeerUid<S> {
        PeerUid {
            inner,
            uid: self.uid,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeerUid<S> {
    inner: S,
    uid: u32,
}

impl<S, B> Service<http::Request<B>> for PeerUid<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Connections come through the bounded listener (`ConnInfo`); a
        // plain Unix stream (`UdsConnectInfo`) is read the same way.
        let ext = req.extensions();
        let peer = ext
            .get::<ConnInfo>()
            .map(|info| &info.uds)
            .or_else(|| ext.get::<UdsConnectInfo>())
            .and_then(|info| info.peer_cred)
            .map(|cred| cred.uid());
        if peer_allowed(self.uid, peer) {
            Either::Left(self.inner.call(req))
        } else {
            tracing::warn!(peer_uid = ?peer, "refused a call from another user");
            let st = status(
                tonic::Code::PermissionDenied,
                Reason::ForeignUid,
                format!(
                    "piauthd serves only uid {}; this connection comes from {}",
                    self.uid,
                    peer.map_or("an unknown uid".to_owned(), |u| format!("uid {u}"))
                ),
            );
            Either::Right(ready(Ok(st.into_http())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_uid_is_allowed() {
        assert!(peer_allowed(1000, Some(1000)));
        assert!(!peer_allowed(1000, Some(0)));
        assert!(!peer_allowed(0, Some(1000)));
        assert!(!peer_allowed(1000, None));
    }
}
