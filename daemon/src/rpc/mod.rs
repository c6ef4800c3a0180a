//! The gRPC surface: the `piauth.v1` services, health and reflection, behind
//! the peer-uid check, on a Unix socket.
//!
//! This is the only module of the daemon that sees proto types; it converts
//! them to broker calls and broker errors back to statuses ([`error`]).

mod auth;
mod codec_errors;
mod completions;
mod error;
mod peer;

use std::sync::Arc;

use piauth_proto::v1::{auth_server::AuthServer, completions_server::CompletionsServer};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

pub use auth::{About, AuthService};
pub use completions::CompletionsService;
pub use peer::{PeerUidLayer, peer_allowed};

use crate::broker::Broker;
use crate::login::Logins;

/// Largest request the daemon decodes. Requests are small except a
/// completion body, which may carry a long conversation.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Largest message the daemon encodes.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Serves every service on `listener` until `shutdown` is cancelled, then
/// stops accepting and lets in-flight calls finish.
pub async fn serve(
    listener: UnixListener,
    broker: Arc<Broker>,
    logins: Arc<Logins>,
    completions: CompletionsService,
    about: About,
    own_uid: u32,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AuthServer<AuthService>>().await;
    health
        .set_serving::<CompletionsServer<CompletionsService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(piauth_proto::v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor set is valid");

    let auth = AuthServer::new(AuthService::new(broker, logins, about, shutdown.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let completions = CompletionsServer::new(completions)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);

    Server::builder()
        .layer(PeerUidLayer { uid: own_uid })
        .layer(codec_errors::CodecErrorsLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(auth)
        .add_service(completions)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown.cancelled())
        .await
}
