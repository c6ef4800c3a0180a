//! The gRPC surface: the `piauth.v1` services, health and reflection, behind
//! the peer-uid check, on a Unix socket.
//!
//! This is the only module of the daemon that sees proto types; it converts
//! them to broker calls and broker errors back to statuses ([`error`]).

mod accounts;
mod auth;
mod codec_errors;
mod completions;
mod error;
mod follower;
mod limits;
mod listen;
mod peer;
mod streams;
mod usage;

use std::sync::Arc;

use piauth_proto::v1 as pb;
use piauth_proto::v1::{auth_server::AuthServer, completions_server::CompletionsServer};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

pub use auth::{About, AuthService};
pub use completions::CompletionsService;
pub use follower::link::{LinkSpec, start as start_link};
pub use follower::{FollowerAuth, FollowerCompletions};
pub use limits::{
    MAX_COMPLETIONS, MAX_CONNECTIONS, MAX_WATCHERS, STREAMS_PER_CONNECTION, connection_cap,
    nofile_target,
};
pub use listen::Registry;
pub use peer::PeerUidLayer;

use crate::accounts::Accounts;
use crate::login::Logins;

/// Largest request the daemon decodes. Requests are small except a
/// completion body, which may carry a long conversation.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Largest message the daemon encodes.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How the socket is served.
#[derive(Debug, Clone)]
pub struct Serving {
    /// Shown in Status: the socket, issuer, backend and config file.
    pub about: About,
    /// Only this uid's calls are answered.
    pub own_uid: u32,
    /// A connection with no open call is closed after this long.
    pub idle_timeout: std::time::Duration,
}

/// Serves every service on `listener` until `shutdown` is cancelled, then
/// stops accepting and lets in-flight calls finish.
pub async fn serve(
    listener: UnixListener,
    accounts: Arc<Accounts>,
    logins: Arc<Logins>,
    completions: CompletionsService,
    serving: Serving,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    // One Codex client for both services, so the limits the relay learns
    // are the ones Usage reports.
    let codex = completions.codex();
    let auth = AuthService::new(
        accounts,
        logins,
        codex,
        serving.about.clone(),
        shutdown.clone(),
    );
    serve_services(listener, auth, completions, serving, shutdown).await
}

/// Serves `auth` and `completions` (an owner's, or a follower's), with
/// health and reflection, behind the peer-uid check.
pub async fn serve_services<A, C>(
    listener: UnixListener,
    auth: A,
    completions: C,
    serving: Serving,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error>
where
    A: pb::auth_server::Auth,
    C: pb::completions_server::Completions,
{
    let Serving {
        about: _,
        own_uid,
        idle_timeout,
    } = serving;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AuthServer<A>>().await;
    health.set_serving::<CompletionsServer<C>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(piauth_proto::v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor set is valid");

    let auth = AuthServer::new(auth)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let completions = CompletionsServer::new(completions)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);

    let nofile = limits::current_nofile().unwrap_or(1024);
    let registry = Registry::new(connection_cap(nofile));
    tracing::debug!(
        connections = registry.cap(),
        streams_per_connection = STREAMS_PER_CONNECTION,
        nofile,
        idle_secs = idle_timeout.as_secs(),
        "serving with bounded connections"
    );
    let incoming = listen::incoming(listener, registry, idle_timeout, shutdown.clone());
    Server::builder()
        .max_concurrent_streams(STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(STREAMS_PER_CONNECTION as usize)
        .http2_keepalive_interval(Some(limits::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(limits::KEEPALIVE_TIMEOUT))
        .layer(streams::TrackStreamsLayer)
        .layer(PeerUidLayer { uid: own_uid })
        .layer(codec_errors::CodecErrorsLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(auth)
        .add_service(completions)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
        .await
}
