//! `google.pubsub.v1.Subscriber/StreamingPull`: one bidirectional stream
//! per client stream, over the broker's Consume machinery.
//!
//! Pub/Sub layer. The first request names the subscription and is
//! authorized (`consume` on its topic); the stream then joins the group as
//! a consumer holding at most `max_outstanding_messages` leases. One task
//! sends each batch the broker hands out and settles the client's acks and
//! deadline changes (0 seconds is a nack: redelivered at once), in order.
//! A subscription's attribute filter is applied here: deliveries it
//! rejects are acked at once and never sent, as Pub/Sub does.
//! The stream ends with a status that says why: INVALID_ARGUMENT at the
//! first bad request, the broker's status when the subscription ends
//! (deleted: NOT_FOUND; shutdown: UNAVAILABLE), OK when the client closed
//! its side. Either way the consumer leaves, which releases its leases.

use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert::received;
use super::exactly_once::{self, Settling};
use super::filter::{self, Expr};
use super::subscriber::SubscriberApi;
use super::{Need, status};
use crate::auth::Action;
use crate::broker::{Batches, Broker, ConsumeOptions, Delivery, GroupInfo, Settler};
use crate::grpc::codes::at_edge;
use crate::grpc::status::to_status;
use crate::proto::google::pubsub::v1::streaming_pull_response::{
    AcknowledgeConfirmation, ModifyAckDeadlineConfirmation, SubscriptionProperties,
};
use crate::proto::google::pubsub::v1::{StreamingPullRequest, StreamingPullResponse};

const METHOD: &str = "google.pubsub.v1.Subscriber/StreamingPull";

/// Responses of one StreamingPull.
pub type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<StreamingPullResponse, Status>> + Send + 'static>>;

/// Pub/Sub's bounds of `stream_ack_deadline_seconds`.
const DEADLINE_RANGE: std::ops::RangeInclusive<i32> = 10..=600;
/// Pub/Sub's default of `max_outstanding_messages` (0 or negative).
const DEFAULT_OUTSTANDING: u32 = 1000;
/// Longest part of `client_id` kept in the consumer's name.
const CLIENT_ID_MAX: usize = 64;
/// Responses queued for a slow client before batches wait.
const OUT_DEPTH: usize = 4;

/// Opens a StreamingPull.
///
/// # Errors
/// UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND.
pub(super) async fn open(
    api: &SubscriberApi,
    request: Request<Streaming<StreamingPullRequest>>,
) -> Result<Response<ResponseStream>, Status> {
    let front = api.front();
    let caller = front.guard.caller(&request)?;
    let mut inbound = request.into_inner();
    let first =
        inbound.message().await.map_err(at_edge)?.ok_or_else(|| {
            Status::invalid_argument("The stream ended before its first request.")
        })?;
    if !DEADLINE_RANGE.contains(&first.stream_ack_deadline_seconds) {
        return Err(Status::invalid_argument(
            "Invalid stream_ack_deadline_seconds: it must be between 10 and 600.",
        ));
    }
    let (resource, group) = api.group_of(&first.subscription).await?;
    let topic = group.record.topic.clone();
    front.authorize(&caller, METHOD, Need::Do(Action::Consume), &topic)?;
    let limit = front.broker().config().max_in_flight_limit;
    let outstanding = u32::try_from(first.max_outstanding_messages)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_OUTSTANDING)
        .min(limit);
    let filter = stored_filter(&group)?;
    let consumer = consumer_name(&first.client_id);
    // The window is counted in messages; `max_outstanding_bytes` bounds
    // each response (a larger message travels alone).
    let options = ConsumeOptions {
        max_in_flight: Some(outstanding),
        max_batch_bytes: u32::try_from(first.max_outstanding_bytes)
            .ok()
            .filter(|n| *n > 0),
        ..ConsumeOptions::default()
    };
    // Messages of this stream are leased for its deadline, not the
    // subscription's, as in Pub/Sub.
    let stream_deadline =
        Duration::from_secs(u64::from(first.stream_ack_deadline_seconds.unsigned_abs()));
    let lease = (stream_deadline != group.record.settings.ack_deadline).then_some(stream_deadline);
    let (batches, settler) = front
        .broker()
        .consume(&topic, &group.record.name, &consumer, options)
        .await
        .map_err(|e| status(&resource, e))?;
    tracing::debug!(%topic, group = %group.record.name, %consumer, "consumer joined (StreamingPull)");
    let pull = Pull {
        properties: SubscriptionProperties {
            exactly_once_delivery_enabled: exactly_once::enabled(&group),
            message_ordering_enabled: group.record.settings.ordered,
        },
        broker: front.broker().clone(),
        lease,
        group,
        settler,
        filter,
        project: front.default_project.clone(),
    };
    let confirmed = pull.settle(&first).await?;
    let (out, rx) = mpsc::channel(OUT_DEPTH);
    if let Some(response) = confirmed {
        // The channel is new: there is room.
        let _ = out.try_send(Ok(response));
    }
    tokio::spawn(pull.run(batches, inbound, out));
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// One StreamingPull's consumer and what it answers with.
struct Pull {
    broker: Broker,
    group: GroupInfo,
    settler: Settler,
    filter: Option<Expr>,
    project: std::sync::Arc<str>,
    /// Sent with every batch, as Pub/Sub does.
    properties: SubscriptionProperties,
    /// The stream's ack deadline, when it is not the subscription's.
    lease: Option<Duration>,
}

/// The deliveries of `batch` the subscription's filter lets through; the
/// others are acked at once, never sent, as Pub/Sub does.
///
/// # Errors
/// The ack's status.
pub(super) async fn wanted(
    filter: Option<&Expr>,
    batch: Vec<Delivery>,
    settler: &Settler,
) -> Result<Vec<Delivery>, Status> {
    let Some(f) = filter else {
        return Ok(batch);
    };
    let (wanted, skipped): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|d| f.matches(&d.event.event.attributes));
    let ids: Vec<String> = skipped.into_iter().map(|d| d.ack_id).collect();
    if !ids.is_empty() {
        settler.ack(&ids).await.map_err(to_status)?;
    }
    Ok(wanted)
}

/// The subscription filter stored in a group's settings.
///
/// # Errors
/// INTERNAL when a stored filter no longer parses.
pub(super) fn stored_filter(group: &GroupInfo) -> Result<Option<Expr>, Status> {
    // Validated at creation; a record that no longer parses fails loudly.
    filter::parse(&group.record.settings.attribute_filter)
        .map_err(|e| Status::internal(format!("stored subscription filter: {e}")))
}

/// `pubsub:` + the client's id (cut) + a unique suffix: one client may
/// open several streams, each a consumer of its own.
pub(super) fn consumer_name(client_id: &str) -> String {
    let mut end = client_id.len().min(CLIENT_ID_MAX);
    while !client_id.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "pubsub:{}:{}",
        &client_id[..end],
        uuid::Uuid::now_v7().simple()
    )
}

type Out = mpsc::Sender<Result<StreamingPullResponse, Status>>;

impl Pull {
    async fn run(
        self,
        mut batches: Batches,
        mut inbound: Streaming<StreamingPullRequest>,
        out: Out,
    ) {
        loop {
            tokio::select! {
                next = batches.next() => match next {
                    Some(Ok(batch)) => {
                        let batch = match wanted(self.filter.as_ref(), batch, &self.settler).await {
                            Ok(batch) => batch,
                            Err(status) => {
                                let _ = out.send(Err(status)).await;
                                break;
                            }
                        };
                        if batch.is_empty() {
                            continue;
                        }
                        if let Err(status) = self.lease_for_stream(&batch).await {
                            let _ = out.send(Err(status)).await;
                            break;
                        }
                        let response = StreamingPullResponse {
                            received_messages: batch
                                .iter()
                                .map(|d| received(d, &self.project))
                                .collect(),
                            subscription_properties: Some(self.properties),
                            ..StreamingPullResponse::default()
                        };
                        if out.send(Ok(response)).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = out.send(Err(to_status(e))).await;
                        break;
                    }
                    None => break,
                },
                request = inbound.message() => match request {
                    Ok(Some(r)) => match self.settle(&r).await {
                        Ok(None) => {}
                        Ok(Some(confirmed)) => {
                            if out.send(Ok(confirmed)).await.is_err() {
                                break;
                            }
                        }
                        Err(status) => {
                            let _ = out.send(Err(status)).await;
                            break;
                        }
                    },
                    // The client closed its side: the stream ends OK.
                    Ok(None) => break,
                    Err(e) => {
                        let _ = out.send(Err(at_edge(e))).await;
                        break;
                    }
                },
                () = out.closed() => break,
            }
        }
    }

    /// Sets the deadlines of a batch about to be sent to the stream's own.
    ///
    /// # Errors
    /// The broker's failures.
    async fn lease_for_stream(&self, batch: &[Delivery]) -> Result<(), Status> {
        let Some(deadline) = self.lease else {
            return Ok(());
        };
        let ids: Vec<String> = batch.iter().map(|d| d.ack_id.clone()).collect();
        self.settler
            .extend(&ids, deadline)
            .await
            .map_err(to_status)?;
        Ok(())
    }

    /// Applies one request's acks and deadline changes; with exactly-once
    /// delivery, the confirmations to send for them.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for mismatched lists, out-of-range deadlines or
    /// (without exactly-once delivery) ack ids of another subscription; the
    /// broker's failures.
    async fn settle(
        &self,
        r: &StreamingPullRequest,
    ) -> Result<Option<StreamingPullResponse>, Status> {
        if r.modify_deadline_seconds.len() != r.modify_deadline_ack_ids.len() {
            return Err(Status::invalid_argument(
                "modify_deadline_seconds and modify_deadline_ack_ids must have the same length.",
            ));
        }
        let exactly_once = self.properties.exactly_once_delivery_enabled;
        let mut nacks = Vec::new();
        let mut extensions: Vec<(i32, Vec<String>)> = Vec::new();
        for (&seconds, id) in r
            .modify_deadline_seconds
            .iter()
            .zip(&r.modify_deadline_ack_ids)
        {
            match seconds {
                0 => nacks.push(id.clone()),
                1..=600 => match extensions.iter_mut().find(|(s, _)| *s == seconds) {
                    Some((_, ids)) => ids.push(id.clone()),
                    None => extensions.push((seconds, vec![id.clone()])),
                },
                _ => {
                    return Err(Status::invalid_argument(
                        "Invalid modify_deadline_seconds: each must be between 0 and 600.",
                    ));
                }
            }
        }
        let settler = &self.settler;
        let acks = self
            .settling(&r.ack_ids)
            .apply(async |ids| settler.ack(ids).await)
            .await?;
        let mut modified = self
            .settling(&nacks)
            .apply(async |ids| {
                let nack = settler.nack(ids, Some(Duration::ZERO), "modifyAckDeadline 0", false);
                nack.await
            })
            .await?;
        for (seconds, ids) in extensions {
            let extension = Duration::from_secs(u64::from(seconds.unsigned_abs()));
            let extended = self
                .settling(&ids)
                .apply(async |ids| settler.extend(ids, extension).await)
                .await?;
            modified.absorb(extended);
        }
        if !exactly_once || (r.ack_ids.is_empty() && r.modify_deadline_ack_ids.is_empty()) {
            return Ok(None);
        }
        Ok(Some(StreamingPullResponse {
            acknowledge_confirmation: (!r.ack_ids.is_empty()).then(|| AcknowledgeConfirmation {
                ack_ids: acks.done,
                invalid_ack_ids: acks.failed,
                ..AcknowledgeConfirmation::default()
            }),
            modify_ack_deadline_confirmation: (!r.modify_deadline_ack_ids.is_empty()).then(|| {
                ModifyAckDeadlineConfirmation {
                    ack_ids: modified.done,
                    invalid_ack_ids: modified.failed,
                    ..ModifyAckDeadlineConfirmation::default()
                }
            }),
            subscription_properties: Some(self.properties),
            ..StreamingPullResponse::default()
        }))
    }

    /// Ack ids of a request on their way to the settler: with exactly-once
    /// delivery, those that cannot be this subscription's fail one by one;
    /// otherwise all go (the settler refuses one of another group).
    fn settling(&self, ids: &[String]) -> Settling {
        if self.properties.exactly_once_delivery_enabled {
            return exactly_once::split(&self.broker, &self.group, ids);
        }
        Settling {
            try_ids: ids.to_vec(),
            ..Settling::default()
        }
    }
}
