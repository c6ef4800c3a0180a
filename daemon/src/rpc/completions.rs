//! The `piauth.v1.Completions` service. The Codex relay is not built yet;
//! both calls say so plainly.

use std::pin::Pin;

use piauth_proto::v1 as pb;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::error::not_yet;

#[derive(Debug, Clone, Default)]
pub struct CompletionsService;

#[tonic::async_trait]
impl pb::completions_server::Completions for CompletionsService {
    type StreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::CompletionEvent, Status>> + Send + 'static>>;

    async fn stream(
        &self,
        _req: Request<pb::CompletionRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        Err(not_yet("Completions.Stream (the Codex Responses relay)"))
    }

    async fn list_models(
        &self,
        _req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        Err(not_yet("Completions.ListModels"))
    }
}
