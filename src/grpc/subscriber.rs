//! `herald.v1.SubscriberService`: Subscribe, Ack, Nack, ExtendDeadline, Read.
//!
//! gRPC layer: convert, one broker call, convert back.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert::{delivery_out, event_out, from_duration, from_timestamp, lease_results};
use super::status::{invalid, to_status};
use crate::broker::{Broker, Position};
use crate::proto::subscriber_service_server::SubscriberService;
use crate::proto::{
    AckRequest, AckResponse, ExtendDeadlineRequest, ExtendDeadlineResponse, NackRequest,
    NackResponse, ReadRequest, ReadResponse, SubscribeRequest, SubscribeResponse,
};

/// Serves SubscriberService.
pub struct SubscriberApi {
    broker: Broker,
}

impl SubscriberApi {
    /// A service over `broker`.
    pub fn new(broker: Broker) -> Self {
        SubscriberApi { broker }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SubscriberService for SubscriberApi {
    type SubscribeStream = BoxStream<SubscribeResponse>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = request.into_inner();
        let subscription = self
            .broker
            .subscribe(&r.topic, &r.group, r.max_in_flight)
            .await
            .map_err(to_status)?;
        tracing::debug!(topic = %r.topic, group = %r.group, consumer = %r.consumer,
            id = subscription.consumer(), "consumer joined");
        let topic = r.topic;
        // Dropping this stream (the client left) drops the subscription,
        // which releases the consumer's leases at once.
        let stream = subscription.map(move |batch| {
            Ok(SubscribeResponse {
                deliveries: batch.iter().map(|d| delivery_out(&topic, d)).collect(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let r = request.into_inner();
        let results = self.broker.ack(&r.ack_ids).await.map_err(to_status)?;
        let acked_count = results
            .iter()
            .filter(|r| r.outcome == crate::broker::LeaseOutcome::Ok)
            .count() as u32;
        Ok(Response::new(AckResponse {
            results: lease_results(results),
            acked_count,
        }))
    }

    async fn nack(&self, request: Request<NackRequest>) -> Result<Response<NackResponse>, Status> {
        let r = request.into_inner();
        let delay = r
            .delay
            .as_ref()
            .map(|d| from_duration("delay", d))
            .transpose()?;
        let results = self
            .broker
            .nack(&r.ack_ids, delay, &r.reason, r.dead_letter)
            .await
            .map_err(to_status)?;
        Ok(Response::new(NackResponse {
            results: lease_results(results),
        }))
    }

    async fn extend_deadline(
        &self,
        request: Request<ExtendDeadlineRequest>,
    ) -> Result<Response<ExtendDeadlineResponse>, Status> {
        let r = request.into_inner();
        let extension = r
            .extension
            .as_ref()
            .ok_or_else(|| invalid("extension", "is required"))
            .and_then(|d| from_duration("extension", d))?;
        let results = self
            .broker
            .extend(&r.ack_ids, extension)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ExtendDeadlineResponse {
            results: lease_results(results),
        }))
    }

    type ReadStream = BoxStream<ReadResponse>;

    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        use crate::proto::read_request::Start;
        let r = request.into_inner();
        let start = match &r.start {
            None => None,
            Some(Start::Offset(o)) => Some(Position::Offset(*o)),
            Some(Start::Time(t)) => Some(Position::Time(from_timestamp("time", t)?)),
        };
        let stream = self
            .broker
            .read(
                &r.topic,
                crate::broker::ReadRequest {
                    start,
                    types: r.types,
                    follow: r.follow,
                    max_events: r.max_events,
                },
            )
            .await
            .map_err(to_status)?;
        let topic = r.topic;
        Ok(Response::new(Box::pin(stream.map(move |batch| {
            batch.map_err(to_status).map(|events| ReadResponse {
                events: events.iter().map(|e| event_out(&topic, e)).collect(),
            })
        }))))
    }
}
