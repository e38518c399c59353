//! Events of the embedded backend: appends to a topic's log, reads, and
//! following its end.
//!
//! Storage layer (embedded backend).

use std::sync::Arc;

use super::EmbeddedBackend;
use super::topics::not_found_topic;
use crate::event::{Event, StoredEvent};
use crate::model::Error;
use crate::model::settings::Position;
use crate::storage::StorageError;
use crate::storage::backend::{Appended, BoxFuture, TopicWatch};

impl EmbeddedBackend {
    pub(super) fn append_impl(
        &self,
        topic: &str,
        mut events: Vec<Event>,
        server_ids: Vec<bool>,
    ) -> Result<BoxFuture<Result<Appended, Error>>, Error> {
        let t = self.topic(topic).ok_or_else(|| not_found_topic(topic))?;
        unpin_payloads(&mut events);
        // The log orders the batch now (its writer's queue), so batches
        // handed in one after another get offsets in that order.
        let appended = t.log.append_with_server_ids(events, server_ids);
        Ok(Box::pin(async move {
            let appended = appended.await?;
            let stored = appended.duplicate.iter().filter(|d| !**d).count();
            t.published
                .fetch_add(stored as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(Appended {
                publish_time_us: appended.publish_time_us,
                offsets: appended.offsets,
                duplicate: appended.duplicate,
            })
        }))
    }

    pub(super) async fn read_impl(
        &self,
        topic: &str,
        from: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let t = self.topic(topic).ok_or_else(|| not_found_topic(topic))?;
        // Recent events come from the log's in-memory tail; older ones from
        // the page cache or the disk: short enough to do on this task.
        t.log
            .read(from, max_events, max_bytes)
            .map_err(|e| match e {
                StorageError::OutOfRange { first, .. } => Error::OutOfRange(format!(
                    "offset {from} was deleted by retention; the first available offset is {first}"
                )),
                other => other.into(),
            })
    }

    pub(super) fn resolve_impl(&self, topic: &str, position: Position) -> Result<u64, Error> {
        let t = self.topic(topic).ok_or_else(|| not_found_topic(topic))?;
        self.resolve_in(&t, position, "offset")
    }

    pub(super) fn watch_impl(&self, topic: &str) -> Result<TopicWatch, Error> {
        let t = self.topic(topic).ok_or_else(|| not_found_topic(topic))?;
        Ok(TopicWatch {
            end: t.log.watch_end(),
            deleted: t.deleted.clone(),
            hold: None,
        })
    }
}

/// Gives each event a payload of its own. Decoded payloads are slices of the
/// request's buffer, which is larger than the payload (tonic's decode buffer
/// starts at 8 KiB; a batch's holds every event): an event this backend
/// keeps in memory (tail cache, a group's pending entries) would otherwise
/// keep that whole buffer alive while memory budgets count only the event.
/// One copy per event is cheaper than the pinned memory: with 256-byte
/// one-event publishes, copying cut the server's resident memory from about
/// 3 KiB per cached event to its footprint, and the heap growth behind it.
/// (The Redis backend encodes the events at once and keeps none.)
fn unpin_payloads(events: &mut [Event]) {
    for event in events {
        event.data = bytes::Bytes::copy_from_slice(&event.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event whose payload is `len` bytes in the middle of an 8 KiB
    /// buffer, as tonic decodes a small request.
    fn sliced(buffer: &bytes::Bytes, at: usize, len: usize) -> Event {
        Event {
            data: buffer.slice(at..at + len),
            ..Event::default()
        }
    }

    fn inside(data: &bytes::Bytes, buffer: &bytes::Bytes) -> bool {
        let start = buffer.as_ptr() as usize;
        let at = data.as_ptr() as usize;
        at >= start && at < start + buffer.len()
    }

    #[test]
    fn every_payload_stops_sharing_the_request_buffer() {
        let buffer = bytes::Bytes::from((0..8192).map(|i| i as u8).collect::<Vec<u8>>());
        for batch in [1, 3] {
            let mut events: Vec<Event> = (0..batch)
                .map(|i| sliced(&buffer, 100 + i * 256, 256))
                .collect();
            unpin_payloads(&mut events);
            for (i, event) in events.iter().enumerate() {
                assert_eq!(event.data, buffer.slice(100 + i * 256..356 + i * 256));
                assert!(
                    !inside(&event.data, &buffer),
                    "a batch of {batch}: event {i} still points into the request buffer"
                );
            }
        }
    }
}
