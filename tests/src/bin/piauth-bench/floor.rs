//! The gRPC floor: a bare tonic server that answers `Auth.GetToken` with a
//! fixed token of the same shape as the daemon's, on the same kind of Unix
//! socket, driven by the same client. Whatever GetToken costs above this is
//! piauthd's own (its peer check, its layers, its handler); what this costs
//! above the raw echo is HTTP/2, protobuf and tonic, which piauthd cannot
//! remove without leaving gRPC.

use std::path::Path;
use std::pin::Pin;

use pb::auth_server::{Auth, AuthServer};
use piauth_client::proto::v1 as pb;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Answers GetToken with `token`; every other method is unimplemented.
struct Floor {
    token: pb::Token,
}

fn absent<T>() -> Result<T, Status> {
    Err(Status::unimplemented("the gRPC floor serves GetToken only"))
}

#[tonic::async_trait]
impl Auth for Floor {
    type WatchTokenStream = Events<pb::Token>;
    type LoginStream = Events<pb::LoginEvent>;

    async fn get_token(
        &self,
        _: Request<pb::GetTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        Ok(Response::new(self.token.clone()))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        absent()
    }

    async fn watch_token(
        &self,
        _: Request<pb::WatchTokenRequest>,
    ) -> Result<Response<Self::WatchTokenStream>, Status> {
        absent()
    }

    async fn refresh(&self, _: Request<pb::RefreshRequest>) -> Result<Response<pb::Token>, Status> {
        absent()
    }

    async fn login(
        &self,
        _: Request<pb::LoginRequest>,
    ) -> Result<Response<Self::LoginStream>, Status> {
        absent()
    }

    async fn submit_code(
        &self,
        _: Request<pb::SubmitCodeRequest>,
    ) -> Result<Response<pb::SubmitCodeResponse>, Status> {
        absent()
    }

    async fn logout(
        &self,
        _: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        absent()
    }

    async fn usage(
        &self,
        _: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        absent()
    }

    async fn accounts(
        &self,
        _: Request<pb::AccountsRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        absent()
    }

    async fn use_account(
        &self,
        _: Request<pb::UseAccountRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        absent()
    }

    async fn report_limit(
        &self,
        _: Request<pb::LimitReport>,
    ) -> Result<Response<pb::Token>, Status> {
        absent()
    }

    async fn remove_account(
        &self,
        _: Request<pb::RemoveAccountRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        absent()
    }
}

/// Serves the floor on `path` until the process ends.
fn serve(path: &Path, token: pb::Token) -> anyhow::Result<()> {
    let listener = tokio::net::UnixListener::bind(path)?;
    let server = tonic::transport::Server::builder()
        .add_service(AuthServer::new(Floor { token }))
        .serve_with_incoming(UnixListenerStream::new(listener));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            eprintln!("piauth-bench: the gRPC floor stopped: {e}");
        }
    });
    Ok(())
}

/// `--serve-baselines DIR DAEMON_SOCKET`: serves the echo at `DIR/echo.sock`
/// and the floor at `DIR/floor.sock` (with a token taken from the daemon, so
/// the reply is the same size), says `ready`, and serves until killed.
pub async fn serve_baselines(dir: &Path, daemon: &Path) -> anyhow::Result<()> {
    let token = piauth_client::Client::connect(daemon)
        .await?
        .get_token("", 60)
        .await?;
    crate::latency::serve_echo(&dir.join("echo.sock"))?;
    serve(&dir.join("floor.sock"), token)?;
    println!("ready");
    std::future::pending::<()>().await;
    Ok(())
}
