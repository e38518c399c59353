//! `herald.v1.DeadLetterService`. Declared in the API now; the dead-letter
//! queue itself comes with the retry/dead-letter work, until then every RPC
//! answers UNIMPLEMENTED.
//!
//! gRPC layer.

use tonic::{Request, Response, Status};

use crate::broker::Broker;
use crate::proto::dead_letter_service_server::DeadLetterService;
use crate::proto::{
    ListDeadLettersRequest, ListDeadLettersResponse, PurgeDeadLettersRequest,
    PurgeDeadLettersResponse, ReplayDeadLettersRequest, ReplayDeadLettersResponse,
};

/// Serves DeadLetterService.
pub struct DeadLetterApi {
    #[allow(dead_code)]
    broker: Broker,
}

impl DeadLetterApi {
    /// A service over `broker`.
    pub fn new(broker: Broker) -> Self {
        DeadLetterApi { broker }
    }
}

fn not_yet() -> Status {
    Status::unimplemented("dead-letter queues are not available in this version yet")
}

#[tonic::async_trait]
impl DeadLetterService for DeadLetterApi {
    async fn list_dead_letters(
        &self,
        _request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        Err(not_yet())
    }

    async fn replay_dead_letters(
        &self,
        _request: Request<ReplayDeadLettersRequest>,
    ) -> Result<Response<ReplayDeadLettersResponse>, Status> {
        Err(not_yet())
    }

    async fn purge_dead_letters(
        &self,
        _request: Request<PurgeDeadLettersRequest>,
    ) -> Result<Response<PurgeDeadLettersResponse>, Status> {
        Err(not_yet())
    }
}
