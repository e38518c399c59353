//! History reads: stream a topic from an offset or a time, optionally
//! filtered by type and following the live tail, with no group state.
//!
//! Broker layer.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Broker;
use super::admin::not_found_topic;
use super::error::{BrokerError, echo};
use super::filter::Matcher;
use super::names::check_name;
use super::settings::{Filter, Position};
use crate::event::StoredEvent;
use crate::storage::StorageError;

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
        let t = self.topic(topic).ok_or_else(|| not_found_topic(topic))?;
        let matcher = Matcher::compile(&Filter {
            types: Vec::new(),
            patterns: req.types.clone(),
        })
        .map_err(|e| BrokerError::InvalidArgument {
            field: e.field.replace("group.filter.patterns", "types"),
            description: e.description,
        })?;
        let log = t.log.clone();
        let first = log.start_offset();
        let mut cursor = match req.start {
            None | Some(Position::Earliest) => first,
            Some(Position::Latest) => log.end_offset(),
            Some(Position::Offset(o)) if o < first => {
                return Err(BrokerError::OutOfRange(format!(
                    "offset: {o} is before the first available offset {first}"
                )));
            }
            Some(Position::Offset(o)) => o,
            Some(Position::Time(t_us)) => log.offset_for_time(t_us)?,
        };
        // One batch waits in the channel while the transport sends the
        // previous one: a reader holds at most two batches.
        let (tx, rx) = mpsc::channel(1);
        let max_bytes = self.inner.config.group_limits.max_batch_bytes;
        let stop = self.inner.groups_stop.clone();
        let deleted = t.deleted.clone();
        let topic_name = topic.to_string();
        drop(t);
        let mut end = log.watch_end();
        let mut left = if req.max_events == 0 {
            u64::MAX
        } else {
            req.max_events
        };
        self.inner.group_tasks.spawn(async move {
            while left > 0 {
                let batch = match log.read(cursor, READ_BATCH.min(left as usize), max_bytes) {
                    Ok(batch) => within_bytes(batch, max_bytes),
                    Err(StorageError::OutOfRange { first, .. }) => {
                        // Retention overtook a slow reader: say so and stop.
                        let _ = tx
                            .send(Err(BrokerError::OutOfRange(format!(
                                "offset {cursor} was deleted by retention; the first available offset is {first}"
                            ))))
                            .await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
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
                end.borrow_and_update();
                if log.end_offset() > cursor {
                    continue;
                }
                tokio::select! {
                    changed = end.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = stop.cancelled() => {
                        let _ = tx.send(Err(BrokerError::shutting_down())).await;
                        return;
                    }
                    _ = deleted.cancelled() => {
                        let _ = tx
                            .send(Err(BrokerError::NotFound(format!(
                                "topic {} was deleted",
                                echo(&topic_name)
                            ))))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
