//! `herald.v1.PublisherService`: Publish and the pipelined PublishStream.
//!
//! gRPC layer: convert, one broker call, convert back.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert::{event_in, timestamp};
use super::status::to_status;
use crate::broker::{Broker, Published};
use crate::event::Event;
use crate::proto::publisher_service_server::PublisherService;
use crate::proto::{
    PublishRequest, PublishResponse, PublishResult, PublishStreamRequest, PublishStreamResponse,
};

/// Requests of one PublishStream that may be in flight (enqueued, awaiting
/// their durable append) at once; the reader waits when it is reached.
const PIPELINE_DEPTH: usize = 256;

/// Serves PublisherService.
pub struct PublisherApi {
    broker: Broker,
}

impl PublisherApi {
    /// A service over `broker`.
    pub fn new(broker: Broker) -> Self {
        PublisherApi { broker }
    }
}

fn events_in(events: Vec<crate::proto::Event>) -> Result<Vec<Event>, Status> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| event_in(i, e))
        .collect()
}

fn results_out(p: &Published) -> Vec<PublishResult> {
    p.events
        .iter()
        .map(|e| PublishResult {
            id: e.id.clone(),
            offset: e.offset,
            duplicate: e.duplicate,
        })
        .collect()
}

#[tonic::async_trait]
impl PublisherService for PublisherApi {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let r = request.into_inner();
        let events = events_in(r.events)?;
        let published = self
            .broker
            .publish(&r.topic, events)
            .await
            .map_err(to_status)?;
        Ok(Response::new(PublishResponse {
            results: results_out(&published),
            publish_time: Some(timestamp(published.publish_time_us)),
        }))
    }

    type PublishStreamStream =
        Pin<Box<dyn Stream<Item = Result<PublishStreamResponse, Status>> + Send + 'static>>;

    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishStreamRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let broker = self.broker.clone();
        // Reader: enqueue each request's append in arrival order (so offsets
        // follow request order), hand its ticket to the responder.
        let (tickets, mut pending) = mpsc::channel(PIPELINE_DEPTH);
        tokio::spawn(async move {
            while let Some(next) = inbound.next().await {
                let Ok(req) = next else { break };
                let ticket = match events_in(req.events) {
                    Ok(events) => broker.submit(&req.topic, events).await.map_err(to_status),
                    Err(status) => Err(status),
                };
                if tickets.send((req.request_id, ticket)).await.is_err() {
                    break;
                }
            }
        });
        // Responder: await tickets in order, one response per request.
        let (out, rx) = mpsc::channel(PIPELINE_DEPTH);
        tokio::spawn(async move {
            while let Some((request_id, ticket)) = pending.recv().await {
                let result = match ticket {
                    Ok(ticket) => ticket.await.map_err(to_status),
                    Err(status) => Err(status),
                };
                let response = match result {
                    Ok(p) => PublishStreamResponse {
                        request_id,
                        results: results_out(&p),
                        error_code: 0,
                        error_message: String::new(),
                        publish_time: Some(timestamp(p.publish_time_us)),
                    },
                    Err(status) => PublishStreamResponse {
                        request_id,
                        results: Vec::new(),
                        error_code: status.code() as i32,
                        error_message: status.message().to_string(),
                        publish_time: None,
                    },
                };
                if out.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
