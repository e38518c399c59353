//! `herald.v1.DeadLetterService`: list, replay and purge a group's dead
//! letters.
//!
//! gRPC layer: convert, one broker call, convert back.

use tonic::{Request, Response, Status};

use super::convert::{event_out, from_timestamp, page_size, timestamp};
use super::status::to_status;
use crate::broker::{Broker, DeadLetter, DeadLetterFilter, dead_letter::selection};
use crate::proto::dead_letter_service_server::DeadLetterService;
use crate::proto::{
    self, ListDeadLettersRequest, ListDeadLettersResponse, PurgeDeadLettersRequest,
    PurgeDeadLettersResponse, ReplayDeadLettersRequest, ReplayDeadLettersResponse,
};

/// Serves DeadLetterService.
pub struct DeadLetterApi {
    broker: Broker,
}

impl DeadLetterApi {
    /// A service over `broker`.
    pub fn new(broker: Broker) -> Self {
        DeadLetterApi { broker }
    }
}

fn filter_in(f: Option<&proto::DeadLetterFilter>) -> Result<DeadLetterFilter, Status> {
    let Some(f) = f else {
        return Ok(DeadLetterFilter::default());
    };
    Ok(DeadLetterFilter {
        types: f.types.clone(),
        start_us: f
            .start_time
            .as_ref()
            .map(|t| from_timestamp("filter.start_time", t))
            .transpose()?,
        end_us: f
            .end_time
            .as_ref()
            .map(|t| from_timestamp("filter.end_time", t))
            .transpose()?,
    })
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
        let r = request.into_inner();
        let limit = page_size(r.page_size)?;
        let filter = filter_in(r.filter.as_ref())?;
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
        let r = request.into_inner();
        let filter = filter_in(r.filter.as_ref())?;
        let selection = selection(&r.ids, r.all, filter).map_err(to_status)?;
        let counts = self
            .broker
            .replay_dead_letters(&r.topic, &r.group, selection)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ReplayDeadLettersResponse {
            replayed_count: counts.changed,
            remaining_count: counts.remaining,
        }))
    }

    async fn purge_dead_letters(
        &self,
        request: Request<PurgeDeadLettersRequest>,
    ) -> Result<Response<PurgeDeadLettersResponse>, Status> {
        let r = request.into_inner();
        let selection = selection(&r.ids, r.all, DeadLetterFilter::default()).map_err(to_status)?;
        let counts = self
            .broker
            .purge_dead_letters(&r.topic, &r.group, selection)
            .await
            .map_err(to_status)?;
        Ok(Response::new(PurgeDeadLettersResponse {
            purged_count: counts.changed,
            remaining_count: counts.remaining,
        }))
    }
}
