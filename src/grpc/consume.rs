//! `SubscriberService.Consume`: one bidirectional stream per consumer.
//!
//! gRPC layer. The first request opens the subscription and is authorized
//! like Subscribe (`consume` on the topic, and `manage` when it creates the
//! topic or group). Then two tasks feed the response stream: the pump
//! sends the broker's delivery batches; the settler takes the client's
//! acks, nacks and extensions in order, one broker call each, and answers
//! with a confirmation when asked (confirmations go ahead of queued
//! batches, so they do not wait behind a window's worth of deliveries).
//! The stream ends with a status that says
//! why: INVALID_ARGUMENT naming the field (`ack.ack_ids[2]`) at the first
//! bad request, the broker's status when a call fails or the subscription
//! ends (group deleted: NOT_FOUND; shutdown: UNAVAILABLE), OK when the
//! client closed its side (after its requests were settled). Either way the
//! subscription is dropped, which releases the consumer's leases at once.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::codes::at_edge;
use super::convert::lease_results;
use super::guard::{Guard, Guarded};
use super::requests::{self, ConsumeStep, Settle};
use super::status::{invalid, to_status, to_status_in};
use super::subscriber::{BoxStream, Outbound, failed, ok_count, settle_span};
use crate::broker::{Batches, Broker, LeaseResult, Settler};
use crate::proto::consume_request::Kind;
use crate::proto::{ConsumeConfirmation, ConsumeRequest, ConsumeResponse};

/// Batches queued for the client; deliveries beyond them wait in the
/// group, within the consumer's window. Confirmations have a queue of the
/// same depth.
const OUT_DEPTH: usize = 16;

type Item = Result<ConsumeResponse, Status>;
type Out = mpsc::Sender<Item>;

/// Opens the subscription with the stream's first request and starts its
/// pump and settler.
///
/// # Errors
/// What the open request gets: INVALID_ARGUMENT (no open request first, or
/// a bad field of it, as `open.<field>`), UNAUTHENTICATED,
/// PERMISSION_DENIED, NOT_FOUND (auto-create off), UNAVAILABLE.
pub(super) async fn consume(
    broker: &Broker,
    guard: &Guard,
    request: Request<Streaming<ConsumeRequest>>,
) -> Result<Response<BoxStream<ConsumeResponse>>, Status> {
    let caller = guard.caller(&request)?;
    // The stream's metadata is the trace context of each of its settlements.
    let metadata = request.metadata().clone();
    let mut inbound = request.into_inner();
    let first = inbound.message().await.map_err(at_edge)?.ok_or_else(|| {
        invalid(
            "open",
            "is required: the stream ended before its first request",
        )
    })?;
    let not_open = || invalid("open", "the first request must open the subscription");
    if !matches!(first.kind, Some(Kind::Open(_))) {
        return Err(not_open());
    }
    guard.authorize(&caller, &first)?;
    let ConsumeStep::Open { open, options } = requests::consume(first)? else {
        return Err(not_open());
    };
    let creates = guard
        .check_create(&caller, &open.topic, Some(&open.group))
        .await?;
    let (batches, settler) = broker
        .consume(&open.topic, &open.group, &open.consumer, options)
        .await
        .map_err(|e| to_status_in("open", e))?;
    if creates {
        let method = ConsumeRequest::RPC.method;
        super::audit::implicit_create(&caller, method, &open.topic, Some(&open.group));
    }
    tracing::debug!(topic = %open.topic, group = %open.group, consumer = %open.consumer, "consumer joined (Consume)");
    let outbound = Outbound::new(open.topic, open.group, open.consumer);
    let (batches_out, batches_rx) = mpsc::channel(OUT_DEPTH);
    let (confirmations_out, confirmations_rx) = mpsc::channel(OUT_DEPTH);
    let done = CancellationToken::new();
    let pump = tokio::spawn(pump(batches, outbound, batches_out, done.clone()));
    let settling = Settling {
        broker: broker.clone(),
        settler,
        metadata,
        confirm_all: open.confirm,
    };
    tokio::spawn(settling.run(inbound, confirmations_out, done, pump));
    let responses = Responses {
        confirmations: Some(confirmations_rx),
        batches: Some(batches_rx),
    };
    Ok(Response::new(Box::pin(responses)))
}

/// The response stream: confirmations (and the settler's final status)
/// before batches, so a confirmation does not wait behind a window's worth
/// of deliveries. It ends after the first error, or when both queues are
/// closed.
struct Responses {
    confirmations: Option<mpsc::Receiver<Item>>,
    batches: Option<mpsc::Receiver<Item>>,
}

impl Stream for Responses {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = &mut *self;
        let mut ended = false;
        let mut next = None;
        for queue in [&mut this.confirmations, &mut this.batches] {
            let Some(rx) = queue else { continue };
            match rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    ended = item.is_err();
                    next = Some(item);
                    break;
                }
                Poll::Ready(None) => *queue = None,
                Poll::Pending => {}
            }
        }
        if let Some(item) = next {
            if ended {
                this.confirmations = None;
                this.batches = None;
            }
            return Poll::Ready(Some(item));
        }
        if this.confirmations.is_none() && this.batches.is_none() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// Sends `item` unless the stream is ending; false when it is, or the
/// client left.
async fn send(out: &Out, done: &CancellationToken, item: Result<ConsumeResponse, Status>) -> bool {
    tokio::select! {
        biased;
        _ = done.cancelled() => false,
        sent = out.send(item) => sent.is_ok(),
    }
}

/// Sends the consumer's batches until the stream ends; the broker's error
/// ends it. Dropping `batches` on the way out releases the leases.
async fn pump(mut batches: Batches, outbound: Outbound, out: Out, done: CancellationToken) {
    loop {
        let next = tokio::select! {
            biased;
            _ = done.cancelled() => break,
            next = batches.next() => next,
        };
        let item = match next {
            Some(Ok(batch)) => Ok(ConsumeResponse {
                deliveries: outbound.deliveries(batch),
                confirmation: None,
            }),
            Some(Err(e)) => Err(to_status(e)),
            None => break,
        };
        let last = item.is_err();
        if !send(&out, &done, item).await || last {
            break;
        }
    }
    done.cancel();
}

/// The settling half of a stream.
struct Settling {
    broker: Broker,
    settler: Settler,
    metadata: MetadataMap,
    /// The open request asked for a confirmation of everything.
    confirm_all: bool,
}

impl Settling {
    /// Settles the client's requests in order until the stream ends.
    async fn run(
        self,
        mut inbound: Streaming<ConsumeRequest>,
        out: Out,
        done: CancellationToken,
        pump: JoinHandle<()>,
    ) {
        let end = loop {
            let next = tokio::select! {
                biased;
                _ = done.cancelled() => break None,
                next = inbound.message() => next,
            };
            let request = match next {
                Ok(Some(request)) => request,
                // The client closed its side: done, with OK.
                Ok(None) => break None,
                Err(status) => break Some(at_edge(status)),
            };
            match self.settle(request).await {
                Ok(None) => {}
                Ok(Some(confirmation)) => {
                    let response = ConsumeResponse {
                        deliveries: Vec::new(),
                        confirmation: Some(confirmation),
                    };
                    if !send(&out, &done, Ok(response)).await {
                        break None;
                    }
                }
                Err(status) => break Some(status),
            }
        };
        // Stop the pump first: no batch follows the end, and the client
        // sees the end only after the subscription (its leases) is dropped.
        done.cancel();
        let _ = pump.await;
        if let Some(status) = end {
            tracing::debug!(code = ?status.code(), message = status.message(), "Consume stream ended");
            let _ = out.send(Err(status)).await;
        }
    }

    /// One request after the open one: its broker call, and its
    /// confirmation when one is asked for.
    async fn settle(&self, request: ConsumeRequest) -> Result<Option<ConsumeConfirmation>, Status> {
        let s = &self.settler;
        let (settle, results) = match requests::consume(request)? {
            ConsumeStep::Open { .. } => {
                return Err(invalid(
                    "open",
                    "the subscription is already open: only the first request opens it",
                ));
            }
            ConsumeStep::Ack(settle) => {
                let span = settle_span(&self.broker, &self.metadata, &settle.ack_ids, false);
                let results = s
                    .ack(&settle.ack_ids)
                    .instrument(span.clone())
                    .await
                    .map_err(|e| failed(&span, to_status_in("ack", e)))?;
                span.record("acked", ok_count(&results));
                (settle, results)
            }
            ConsumeStep::Nack {
                settle,
                delay,
                dead_letter,
                reason,
            } => {
                let span = settle_span(&self.broker, &self.metadata, &settle.ack_ids, true);
                span.record("dead_letter", dead_letter);
                let results = s
                    .nack(&settle.ack_ids, delay, &reason, dead_letter)
                    .instrument(span.clone())
                    .await
                    .map_err(|e| failed(&span, to_status_in("nack", e)))?;
                span.record("nacked", ok_count(&results));
                (settle, results)
            }
            ConsumeStep::Extend { settle, extension } => {
                let results = s
                    .extend(&settle.ack_ids, extension)
                    .await
                    .map_err(|e| to_status_in("extend", e))?;
                (settle, results)
            }
        };
        Ok(self.confirmation(settle, results))
    }

    fn confirmation(
        &self,
        settle: Settle,
        results: Vec<LeaseResult>,
    ) -> Option<ConsumeConfirmation> {
        (settle.confirm || self.confirm_all).then(|| ConsumeConfirmation {
            request_id: settle.request_id,
            results: lease_results(results),
        })
    }
}
