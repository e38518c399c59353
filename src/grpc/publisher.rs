//! `herald.v1.PublisherService`: Publish and the pipelined PublishStream.
//!
//! gRPC layer: authorize, convert, one broker call, convert back. A
//! PublishStream is authorized request by request (each names its topic);
//! a refused request gets its PERMISSION_DENIED in its response and the
//! stream goes on. Publishing to a topic that does not exist (auto-create)
//! also needs `manage` on it. Each Publish call and
//! each PublishStream request runs in a `publish` span (a child of the
//! request's `traceparent`, if any) and stores that `traceparent` in its
//! events; see [`crate::telemetry`].

use std::pin::Pin;
use std::time::Instant;

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::convert::timestamp;
use super::guard::{Guard, Guarded};
use super::publish_stream::PublishFlow;
use super::requests::events as events_in;
use super::status::to_status;
use crate::broker::{Broker, Published};
use crate::event::Event;
use crate::proto::publisher_service_server::PublisherService;
use crate::proto::{
    PublishRequest, PublishResponse, PublishResult, PublishStreamRequest, PublishStreamResponse,
};
use crate::telemetry::MESSAGING_SYSTEM;
use crate::telemetry::metrics::metrics;
use crate::telemetry::propagation::TraceHeaders;

/// Serves PublisherService.
pub struct PublisherApi {
    broker: Broker,
    guard: Guard,
}

impl PublisherApi {
    /// A service over `broker`, authorizing with `guard`.
    pub fn new(broker: Broker, guard: Guard) -> Self {
        PublisherApi { broker, guard }
    }
}

/// The `publish` span of one request of `events` to `topic`: a child of the
/// request's trace context when it has one. Returns the span and the trace
/// context to store in the events: the request's, or else the span's own
/// when it is exported, or none.
pub(super) fn publish_span(
    topic: &str,
    events: &[Event],
    request: Option<&TraceHeaders>,
) -> (tracing::Span, Option<TraceHeaders>) {
    let single = (events.len() == 1).then(|| &events[0]);
    let span = tracing::debug_span!(
        "publish",
        otel.kind = "server",
        otel.status_code = Empty,
        messaging.system = MESSAGING_SYSTEM,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = topic,
        messaging.batch.message_count = events.len(),
        messaging.message.id = Empty,
        topic,
        event.count = events.len(),
        event.type = single.map(|e| e.event_type.as_str()),
        event.id = Empty,
        error.type = Empty,
    );
    if span.is_disabled() {
        return (span, request.cloned());
    }
    if let Some(request) = request {
        // Fails only when the OpenTelemetry layer is not installed.
        let _ = span.set_parent(request.context.clone());
        return (span, Some(request.clone()));
    }
    let own = TraceHeaders::of_span(&span);
    (span, own)
}

/// Stores `trace` in every event that has no `traceparent` of its own.
pub(super) fn stamp(events: &mut [Event], trace: Option<&TraceHeaders>) {
    if let Some(trace) = trace {
        for event in events {
            trace.stamp(&mut event.attributes);
        }
    }
}

/// Records the outcome of a publish on its span and in the metrics.
pub(super) fn finish(
    span: &tracing::Span,
    topic: &str,
    started: Instant,
    result: &Result<Published, Status>,
) {
    match result {
        Ok(p) => {
            if let [single] = p.events.as_slice() {
                span.record("event.id", single.id.as_str());
                span.record("messaging.message.id", single.id.as_str());
            }
            if metrics().enabled() {
                let stored = p.events.iter().filter(|e| !e.duplicate).count() as u64;
                metrics().published(topic, stored, started.elapsed());
            }
        }
        Err(status) if !span.is_disabled() => {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", format!("{:?}", status.code()));
        }
        Err(_) => {}
    }
}

pub(super) fn results_out(p: &Published) -> Vec<PublishResult> {
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
        let started = Instant::now();
        let caller = self.guard.check(&request)?;
        let trace = TraceHeaders::from_metadata(request.metadata());
        let r = request.into_inner();
        let creates = self.guard.check_create(&caller, &r.topic, None).await?;
        let mut events = events_in(r.events)?;
        let (span, stored) = publish_span(&r.topic, &events, trace.as_ref());
        stamp(&mut events, stored.as_ref());
        let result = self
            .broker
            .publish(&r.topic, events)
            .instrument(span.clone())
            .await
            .map_err(to_status);
        finish(&span, &r.topic, started, &result);
        if creates && result.is_ok() {
            super::audit::implicit_create(&caller, PublishRequest::RPC.method, &r.topic, None);
        }
        let published = result?;
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
        let caller = self.guard.caller(&request)?;
        // The stream's metadata is the trace context of each of its requests.
        let trace = TraceHeaders::from_metadata(request.metadata());
        let flow = PublishFlow::new(
            self.broker.clone(),
            self.guard.clone(),
            caller,
            trace,
            request.into_inner(),
        );
        Ok(Response::new(Box::pin(flow)))
    }
}
