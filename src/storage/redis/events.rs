//! Events of the Redis backend: reads, positions and following a topic's
//! end (appends are in `append.rs`).

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::event::StoredEvent;
use crate::model::Error;
use crate::model::settings::Position;
use crate::storage::backend::TopicWatch;
use crate::storage::embedded::log::decode_event;
use crate::storage::not_found_topic;

use super::conn::Reply;
use super::{RedisBackend, TopicLocal, lock};

impl RedisBackend {
    /// The topic's end moved (here or on another node).
    pub(super) fn topic_end(&self, topic: &str, end: u64) {
        self.follow_end(topic, end);
        self.topic_wake(topic).notify_waiters();
    }

    /// Moves the end the topic's followers here see, if `end` is newer.
    pub(super) fn follow_end(&self, topic: &str, end: u64) {
        if let Some(t) = lock(&self.inner.topics).get(topic) {
            t.end.send_if_modified(|e| {
                let newer = end > *e;
                if newer {
                    *e = end;
                }
                newer
            });
        }
    }

    pub(super) async fn read_impl(
        &self,
        topic: &str,
        from: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let (from_s, max_s, bytes_s) = (
            from.to_string(),
            max_events.to_string(),
            max_bytes.to_string(),
        );
        let mut r = self
            .run(
                |s| &s.read,
                topic,
                &[from_s.as_bytes(), max_s.as_bytes(), bytes_s.as_bytes()],
            )
            .await?;
        match r.text()?.as_str() {
            "OK" => {}
            "RANGE" => {
                let first = r.uint()?;
                return Err(Error::OutOfRange(format!(
                    "offset {from} was deleted by retention; the first available offset is {first}"
                )));
            }
            _ => return Err(not_found_topic(topic)),
        }
        let (_start, _end) = (r.uint()?, r.uint()?);
        let mut out = Vec::with_capacity(r.left() / 3);
        while r.left() >= 3 {
            out.push(Arc::new(stored_event(&mut r)?));
        }
        Ok(out)
    }

    pub(super) async fn resolve_impl(&self, topic: &str, position: Position) -> Result<u64, Error> {
        let (kind, value) = position_args(position);
        let mut r = self
            .run(|s| &s.resolve, topic, &[kind.as_bytes(), value.as_bytes()])
            .await?;
        match r.text()?.as_str() {
            "OK" => r.uint(),
            "RANGE" => Err(out_of_range("offset", position, r.uint()?, r.uint()?)),
            _ => Err(not_found_topic(topic)),
        }
    }

    /// The topic's end offset as Redis holds it; `None` when the topic
    /// does not exist.
    pub(super) async fn stored_end(&self, topic: &str) -> Result<Option<u64>, Error> {
        self.cmd(
            redis::cmd("HGET")
                .arg(self.inner.keys.meta(topic))
                .arg("end"),
        )
        .await
    }

    pub(super) async fn watch_impl(&self, topic: &str, follow: bool) -> Result<TopicWatch, Error> {
        // A follower is listed before it reads: whatever is appended after
        // that moves the end here.
        let hold: Option<Box<dyn Send + Sync>> = if follow {
            Some(Box::new(self.watch_topic(topic).await))
        } else {
            None
        };
        if let Some(t) = lock(&self.inner.topics).get(topic) {
            return Ok(TopicWatch {
                end: t.end.subscribe(),
                deleted: t.deleted.clone(),
                hold,
            });
        }
        let end = self
            .stored_end(topic)
            .await?
            .ok_or_else(|| not_found_topic(topic))?;
        let mut topics = lock(&self.inner.topics);
        let t = topics
            .entry(topic.to_string())
            .or_insert_with(|| TopicLocal {
                end: watch::channel(end).0,
                deleted: CancellationToken::new(),
            });
        Ok(TopicWatch {
            end: t.end.subscribe(),
            deleted: t.deleted.clone(),
            hold,
        })
    }
}

/// Reads offset, publish time and record of one event from a reply.
pub(super) fn stored_event(r: &mut Reply) -> Result<StoredEvent, Error> {
    let offset = r.uint()?;
    let publish_time_us = r.int()?;
    let record = r.bytes()?;
    event_from_record(offset, publish_time_us, &record)
}

/// An event from its stored record and where it was stored.
pub(super) fn event_from_record(
    offset: u64,
    publish_time_us: i64,
    record: &[u8],
) -> Result<StoredEvent, Error> {
    let mut e = decode_event(record).map_err(|e| {
        tracing::error!(error = %e, offset, "corrupt event record in Redis");
        Error::Internal(format!("the stored event at offset {offset} is corrupt"))
    })?;
    e.offset = offset;
    e.publish_time_us = publish_time_us;
    Ok(e)
}

/// Script arguments of a position: kind (E, L, O, T) and value.
pub(super) fn position_args(position: Position) -> (&'static str, String) {
    match position {
        Position::Earliest => ("E", String::new()),
        Position::Latest => ("L", String::new()),
        Position::Offset(o) => ("O", o.to_string()),
        Position::Time(t) => ("T", t.to_string()),
    }
}

/// The error for an offset outside the retained log.
pub(super) fn out_of_range(field: &str, position: Position, start: u64, end: u64) -> Error {
    let o = match position {
        Position::Offset(o) => o,
        _ => end,
    };
    if o < start {
        Error::OutOfRange(format!(
            "{field}: offset {o} is before the first available offset {start}"
        ))
    } else {
        Error::OutOfRange(format!(
            "{field}: offset {o} is past the end of the topic ({end})"
        ))
    }
}
