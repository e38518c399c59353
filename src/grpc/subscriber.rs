//! `herald.v1.SubscriberService`: Subscribe, Ack, Nack, ExtendDeadline, Read,
//! and Consume (in `consume.rs`).
//!
//! gRPC layer: authorize, convert, one broker call, convert back. Ack,
//! Nack and ExtendDeadline are authorized on the topic of each ack id's
//! group; subscribing to a topic or group that does not exist
//! (auto-create) also needs `manage` on the topic.
//!
//! Telemetry: one `deliver` span per delivered event, made here as each
//! batch leaves the group for the consumer's stream (not in the group task:
//! that single task serves every consumer of the group, while this code runs
//! on each consumer's own stream, in parallel, and knows the wire form). The
//! span is a child of the trace context stored with the event, so the
//! publisher's trace continues through Herald to the consumer. Ack and Nack
//! run in `ack` / `nack` spans.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::convert::{delivery_out, event_out, lease_results};
use super::guard::{Guard, Guarded};
use super::requests;
use super::status::to_status;
use crate::broker::{Broker, Delivery, LeaseOutcome, LeaseResult};
use crate::event::now_us;
use crate::proto::subscriber_service_server::SubscriberService;
use crate::proto::{
    AckRequest, AckResponse, ConsumeRequest, ConsumeResponse, ExtendDeadlineRequest,
    ExtendDeadlineResponse, NackRequest, NackResponse, ReadRequest, ReadResponse, SubscribeRequest,
    SubscribeResponse,
};
use crate::telemetry::MESSAGING_SYSTEM;
use crate::telemetry::metrics::GroupMetrics;
use crate::telemetry::propagation::{event_context, request_context};

/// Serves SubscriberService.
pub struct SubscriberApi {
    broker: Broker,
    guard: Guard,
}

impl SubscriberApi {
    /// A service over `broker`, authorizing with `guard`.
    pub fn new(broker: Broker, guard: Guard) -> Self {
        SubscriberApi { broker, guard }
    }

    /// Checks an Ack, Nack or ExtendDeadline: the caller is authenticated,
    /// then this node learns the groups of `ack_ids` it does not know yet
    /// (the topic of each id's group is what is authorized), then the call
    /// is authorized.
    ///
    /// # Errors
    /// UNAUTHENTICATED, PERMISSION_DENIED.
    async fn check_settling<R: Guarded>(
        &self,
        request: &Request<R>,
        ack_ids: &[String],
    ) -> Result<(), Status> {
        let caller = self.guard.caller(request)?;
        self.broker.learn_ack_id_groups(ack_ids).await;
        self.guard.authorize(&caller, request.get_ref())
    }
}

pub(super) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Opens and closes the `deliver` span of one delivery: it marks the moment
/// the event leaves for the consumer, as a child of the event's stored
/// trace context.
fn deliver_span(topic: &str, group: &str, consumer: &str, d: &Delivery) {
    let e = &d.event;
    let span = tracing::debug_span!(
        "deliver",
        messaging.system = MESSAGING_SYSTEM,
        messaging.operation.type = "receive",
        messaging.operation.name = "deliver",
        messaging.destination.name = topic,
        messaging.consumer.group.name = group,
        messaging.message.id = e.event.id.as_str(),
        topic,
        group,
        event.type = e.event.event_type.as_str(),
        event.id = e.event.id.as_str(),
        offset = e.offset,
        delivery_attempt = d.attempt,
        consumer,
    );
    if !span.is_disabled()
        && let Some(parent) = event_context(&e.event.attributes)
    {
        // Fails only when the OpenTelemetry layer is not installed.
        let _ = span.set_parent(parent);
    }
}

/// What turns one consumer's batches into their wire form: a `deliver`
/// span per delivery, and the delivery latency of first deliveries.
pub(super) struct Outbound {
    topic: String,
    group: String,
    consumer: String,
    metrics: GroupMetrics,
}

impl Outbound {
    /// For the consumer `consumer` of `group` of `topic`.
    pub(super) fn new(topic: String, group: String, consumer: String) -> Outbound {
        let metrics = GroupMetrics::new(&topic, &group);
        Outbound {
            topic,
            group,
            consumer,
            metrics,
        }
    }

    /// The wire form of `batch`.
    pub(super) fn deliveries(&self, batch: Vec<Delivery>) -> Vec<crate::proto::Delivery> {
        let now = self.metrics.enabled().then(now_us);
        batch
            .into_iter()
            .map(|d| {
                deliver_span(&self.topic, &self.group, &self.consumer, &d);
                // First deliveries only: a redelivery's wait is the
                // consumer's nack delay or deadline, not Herald's.
                if let Some(now) = now
                    && d.attempt == 1
                {
                    self.metrics.delivery_latency(d.event.publish_time_us, now);
                }
                delivery_out(&self.topic, d)
            })
            .collect()
    }
}

/// The `ack` or `nack` span of a call: a child of the request's trace
/// context, naming the group of its first ack id (the ids of one call
/// nearly always share a group).
pub(super) fn settle_span(
    broker: &Broker,
    request: &tonic::metadata::MetadataMap,
    ack_ids: &[String],
    nack: bool,
) -> tracing::Span {
    let span = if nack {
        tracing::debug_span!(
            "nack",
            otel.kind = "server",
            otel.status_code = Empty,
            error.type = Empty,
            messaging.system = MESSAGING_SYSTEM,
            messaging.operation.type = "settle",
            messaging.operation.name = "nack",
            messaging.batch.message_count = ack_ids.len(),
            messaging.destination.name = Empty,
            messaging.consumer.group.name = Empty,
            topic = Empty,
            group = Empty,
            event.count = ack_ids.len(),
            nacked = Empty,
            dead_letter = Empty,
        )
    } else {
        tracing::debug_span!(
            "ack",
            otel.kind = "server",
            otel.status_code = Empty,
            error.type = Empty,
            messaging.system = MESSAGING_SYSTEM,
            messaging.operation.type = "settle",
            messaging.operation.name = "ack",
            messaging.batch.message_count = ack_ids.len(),
            messaging.destination.name = Empty,
            messaging.consumer.group.name = Empty,
            topic = Empty,
            group = Empty,
            event.count = ack_ids.len(),
            acked = Empty,
        )
    };
    if span.is_disabled() {
        return span;
    }
    if let Some(parent) = request_context(request) {
        let _ = span.set_parent(parent);
    }
    if let Some((topic, group)) = ack_ids.first().and_then(|id| broker.ack_id_group(id)) {
        span.record("messaging.destination.name", topic.as_str());
        span.record("topic", topic.as_str());
        span.record("messaging.consumer.group.name", group.as_str());
        span.record("group", group.as_str());
    }
    span
}

/// Marks `span` as failed with `status`, and passes the status on.
pub(super) fn failed(span: &tracing::Span, status: Status) -> Status {
    if !span.is_disabled() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", format!("{:?}", status.code()));
    }
    status
}

pub(super) fn ok_count(results: &[LeaseResult]) -> u32 {
    results
        .iter()
        .filter(|r| r.outcome == LeaseOutcome::Ok)
        .count() as u32
}

#[tonic::async_trait]
impl SubscriberService for SubscriberApi {
    type SubscribeStream = BoxStream<SubscribeResponse>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = self.guard.check(&request)?;
        let r = request.into_inner();
        let creates = self
            .guard
            .check_create(&caller, &r.topic, Some(&r.group))
            .await?;
        let subscription = self
            .broker
            .subscribe_as(&r.topic, &r.group, &r.consumer, r.max_in_flight)
            .await
            .map_err(to_status)?;
        if creates {
            let method = SubscribeRequest::RPC.method;
            super::audit::implicit_create(&caller, method, &r.topic, Some(&r.group));
        }
        tracing::debug!(topic = %r.topic, group = %r.group, consumer = %r.consumer, "consumer joined");
        let outbound = Outbound::new(r.topic, r.group, r.consumer);
        // Dropping this stream (the client left) drops the subscription,
        // which releases the consumer's leases at once.
        let stream = subscription.map(move |batch| {
            let batch = batch.map_err(to_status)?;
            Ok(SubscribeResponse {
                deliveries: outbound.deliveries(batch),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        self.check_settling(&request, &request.get_ref().ack_ids)
            .await?;
        let span = settle_span(
            &self.broker,
            request.metadata(),
            &request.get_ref().ack_ids,
            false,
        );
        let r = request.into_inner();
        let results = self
            .broker
            .ack(&r.ack_ids)
            .instrument(span.clone())
            .await
            .map_err(|e| failed(&span, to_status(e)))?;
        let acked_count = ok_count(&results);
        span.record("acked", acked_count);
        Ok(Response::new(AckResponse {
            results: lease_results(results),
            acked_count,
        }))
    }

    async fn nack(&self, request: Request<NackRequest>) -> Result<Response<NackResponse>, Status> {
        self.check_settling(&request, &request.get_ref().ack_ids)
            .await?;
        let span = settle_span(
            &self.broker,
            request.metadata(),
            &request.get_ref().ack_ids,
            true,
        );
        let r = request.into_inner();
        span.record("dead_letter", r.dead_letter);
        let delay = requests::nack_delay(&r)?;
        let results = self
            .broker
            .nack(&r.ack_ids, delay, &r.reason, r.dead_letter)
            .instrument(span.clone())
            .await
            .map_err(|e| failed(&span, to_status(e)))?;
        span.record("nacked", ok_count(&results));
        Ok(Response::new(NackResponse {
            results: lease_results(results),
        }))
    }

    async fn extend_deadline(
        &self,
        request: Request<ExtendDeadlineRequest>,
    ) -> Result<Response<ExtendDeadlineResponse>, Status> {
        self.check_settling(&request, &request.get_ref().ack_ids)
            .await?;
        let r = request.into_inner();
        let extension = requests::extension(&r)?;
        let results = self
            .broker
            .extend(&r.ack_ids, extension)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ExtendDeadlineResponse {
            results: lease_results(results),
        }))
    }

    type ConsumeStream = BoxStream<ConsumeResponse>;

    async fn consume(
        &self,
        request: Request<Streaming<ConsumeRequest>>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        super::consume::consume(&self.broker, &self.guard, request).await
    }

    type ReadStream = BoxStream<ReadResponse>;

    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        self.guard.check(&request)?;
        let mut r = request.into_inner();
        let topic = std::mem::take(&mut r.topic);
        let read = requests::read(r)?;
        let stream = self.broker.read(&topic, read).await.map_err(to_status)?;
        Ok(Response::new(Box::pin(stream.map(move |batch| {
            batch.map_err(to_status).map(|events| ReadResponse {
                events: events.iter().map(|e| event_out(&topic, e)).collect(),
            })
        }))))
    }
}
