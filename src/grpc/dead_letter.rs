//! `herald.v1.DeadLetterService`: list, replay and purge a group's dead
//! letters.
//!
//! gRPC layer: authorize (`dead_letters` on the topic), convert, one
//! broker call, convert back. Replays and purges go to the audit log.

use tonic::{Request, Response, Status};

use super::convert::{event_out, timestamp};
use super::guard::{Guard, Guarded};
use super::requests;
use super::status::to_status;
use crate::broker::{Broker, DeadLetter};
use crate::proto::dead_letter_service_server::DeadLetterService;
use crate::proto::{
    self, ListDeadLettersRequest, ListDeadLettersResponse, PurgeDeadLettersRequest,
    PurgeDeadLettersResponse, ReplayDeadLettersRequest, ReplayDeadLettersResponse,
};

/// Serves DeadLetterService.
pub struct DeadLetterApi {
    broker: Broker,
    guard: Guard,
}

impl DeadLetterApi {
    /// A service over `broker`, authorizing with `guard`.
    pub fn new(broker: Broker, guard: Guard) -> Self {
        DeadLetterApi { broker, guard }
    }
}

fn dead_letter_out(topic: &str, group: &str, dl: &DeadLetter) -> proto::DeadLetter {
    proto::DeadLetter {
        id: dl.id.to_string(),
        topic: topic.to_string(),
        group: group.to_string(),
        event: Some(event_out(topic, &dl.event)),
        attempts: dl.attempts,
        last_reason: dl.last_reason.clone(),
        first_failure_time: Some(timestamp(dl.first_failure_us)),
        last_failure_time: Some(timestamp(dl.last_failure_us)),
        dead_letter_time: Some(timestamp(dl.dead_letter_us)),
    }
}

#[tonic::async_trait]
impl DeadLetterService for DeadLetterApi {
    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        self.guard.check(&request)?;
        let r = request.into_inner();
        let (limit, filter) = requests::list_dead_letters(&r)?;
        let page = self
            .broker
            .list_dead_letters(
                &r.topic,
                &r.group,
                limit,
                &r.page_token,
                r.oldest_first,
                &filter,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters: page
                .entries
                .iter()
                .map(|dl| dead_letter_out(&r.topic, &r.group, dl))
                .collect(),
            next_page_token: page.next_token.unwrap_or_default(),
            total_count: page.total,
        }))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<ReplayDeadLettersRequest>,
    ) -> Result<Response<ReplayDeadLettersResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let r = request.into_inner();
        let selection = requests::replay(&r)?;
        let result = self
            .broker
            .replay_dead_letters(&r.topic, &r.group, selection)
            .await
            .map_err(to_status);
        let method = ReplayDeadLettersRequest::RPC.method;
        super::audit::done(&caller, method, &r.topic, Some(&r.group), &result);
        let counts = result?;
        Ok(Response::new(ReplayDeadLettersResponse {
            replayed_count: counts.changed,
            remaining_count: counts.remaining,
        }))
    }

    async fn purge_dead_letters(
        &self,
        request: Request<PurgeDeadLettersRequest>,
    ) -> Result<Response<PurgeDeadLettersResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let r = request.into_inner();
        let selection = requests::purge(&r)?;
        let result = self
            .broker
            .purge_dead_letters(&r.topic, &r.group, selection)
            .await
            .map_err(to_status);
        let method = PurgeDeadLettersRequest::RPC.method;
        super::audit::done(&caller, method, &r.topic, Some(&r.group), &result);
        let counts = result?;
        Ok(Response::new(PurgeDeadLettersResponse {
            purged_count: counts.changed,
            remaining_count: counts.remaining,
        }))
    }
}
