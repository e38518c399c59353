//! History reads: stream a topic from an offset or a time, optionally
//! filtered by type and following the live tail, with no group state.
//!
//! Broker layer.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Broker;
use super::error::{BrokerError, echo};
use super::filter::Matcher;
use super::names::check_name;
use super::settings::{Filter, Position};
use crate::event::StoredEvent;
use crate::storage::backend::TopicWatch;

/// Events per batch sent to a reader.
const READ_BATCH: usize = 1000;

/// What to read.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// Where to start; the first retained event when `None`.
    pub start: Option<Position>,
    /// Type patterns (group-filter syntax); all when empty.
    pub types: Vec<String>,
    /// Keep streaming new events.
    pub follow: bool,
    /// Stop after this many events; 0 = unlimited.
    pub max_events: u64,
}

/// The longest prefix of `batch` within `max_bytes` of events, and at
/// least its first event (which then travels alone).
pub(crate) fn within_bytes(
    mut batch: Vec<Arc<StoredEvent>>,
    max_bytes: usize,
) -> Vec<Arc<StoredEvent>> {
    let mut total = 0usize;
    let keep = batch
        .iter()
        .position(|e| {
            total += e.event.size();
            total > max_bytes
        })
        .unwrap_or(batch.len())
        .max(1);
    batch.truncate(keep);
    batch
}

/// A stream of event batches in offset order.
pub type ReadStream = ReceiverStream<Result<Vec<Arc<StoredEvent>>, BrokerError>>;

impl Broker {
    /// Streams `topic` as asked.
    ///
    /// # Errors
    /// `NotFound` (topic), `InvalidArgument` (patterns), `OutOfRange` when
    /// the start is before the first retained event (the message names the
    /// first available offset).
    pub async fn read(&self, topic: &str, req: ReadRequest) -> Result<ReadStream, BrokerError> {
        check_name("topic", topic)?;
        let matcher = Matcher::compile(&Filter {
            types: Vec::new(),
            patterns: req.types.clone(),
        })
        .map_err(|e| BrokerError::InvalidArgument {
            field: e.field.replace("group.filter.patterns", "types"),
            description: e.description,
        })?;
        let backend = self.inner.backend.clone();
        let mut cursor = match req.start {
            // An offset past the end is fine for a reader: it waits for it.
            Some(Position::Offset(o)) => {
                let first = backend.resolve(topic, Position::Earliest).await?;
                if o < first {
                    return Err(BrokerError::OutOfRange(format!(
                        "offset: {o} is before the first available offset {first}"
                    )));
                }
                o
            }
            start => {
                backend
                    .resolve(topic, start.unwrap_or(Position::Earliest))
                    .await?
            }
        };
        let TopicWatch {
            mut end,
            deleted,
            hold,
        } = backend.watch(topic, req.follow).await?;
        // One batch waits in the channel while the transport sends the
        // previous one: a reader holds at most two batches.
        let (tx, rx) = mpsc::channel(1);
        let max_bytes = self.inner.config.max_batch_bytes;
        let stop = self.inner.stopping.clone();
        let topic_name = topic.to_string();
        let mut left = if req.max_events == 0 {
            u64::MAX
        } else {
            req.max_events
        };
        self.inner.readers.spawn(async move {
            let _hold = hold;
            while left > 0 {
                if deleted.is_cancelled() {
                    let _ = tx
                        .send(Err(BrokerError::NotFound(format!(
                            "topic {} was deleted",
                            echo(&topic_name)
                        ))))
                        .await;
                    return;
                }
                let wanted = READ_BATCH.min(usize::try_from(left).unwrap_or(usize::MAX));
                let batch = match backend.read(&topic_name, cursor, wanted, max_bytes).await {
                    Ok(batch) => within_bytes(batch, max_bytes),
                    Err(e) => {
                        // Retention overtook a slow reader, or the topic
                        // went: say so and stop.
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if let Some(last) = batch.last() {
                    cursor = last.offset + 1;
                    let wanted: Vec<Arc<StoredEvent>> = batch
                        .into_iter()
                        .filter(|e| matcher.matches(&e.event.event_type))
                        .collect();
                    if wanted.is_empty() {
                        continue;
                    }
                    left = left.saturating_sub(wanted.len() as u64);
                    tokio::select! {
                        sent = tx.send(Ok(wanted)) => if sent.is_err() { return },
                        _ = stop.cancelled() => return,
                    }
                    continue;
                }
                if !req.follow {
                    return;
                }
                let seen = *end.borrow_and_update();
                if seen > cursor {
                    continue;
                }
                tokio::select! {
                    // A backend may drop the end of a deleted topic before
                    // (or while) cancelling `deleted`.
                    changed = end.changed() => if changed.is_err() && !deleted.is_cancelled() {
                        return;
                    },
                    _ = tx.closed() => return,
                    _ = stop.cancelled() => {
                        let _ = tx.send(Err(BrokerError::shutting_down())).await;
                        return;
                    }
                    _ = deleted.cancelled() => {}
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
