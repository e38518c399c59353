//! Events of the Redis backend: appends through one queue per topic (one
//! script call in flight per topic, concurrent publishes group-committed
//! into it), reads, positions and following a topic's end.
//!
//! Storage layer (Redis backend). An event is stored as the embedded log's
//! self-checking record (offset and publish time zero: the stream entry
//! carries them), so both backends share one event encoding.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::event::{Event, StoredEvent};
use crate::model::Error;
use crate::model::settings::Position;
use crate::storage::backend::{Appended, BoxFuture, TopicWatch};
use crate::storage::embedded::log::{decode_event, encode_event};
use crate::storage::not_found_topic;

use super::conn::Reply;
use super::{RedisBackend, TopicLocal, lock};

/// Bytes of events one script call carries at most (more wait for the next).
const CALL_BYTES: usize = 4 << 20;
/// Bytes of events waiting in all append queues of a node at most.
const QUEUED_BYTES: usize = 256 << 20;
/// An idle append queue ends after this.
const IDLE: Duration = Duration::from_secs(30);

/// The append queue of a topic.
pub(super) struct Appender {
    tx: mpsc::UnboundedSender<Job>,
}

struct Job {
    records: Vec<Rec>,
    bytes: usize,
    reply: oneshot::Sender<Result<Appended, Error>>,
}

/// One event as the append script takes it.
struct Rec {
    id: String,
    server: bool,
    event_type: String,
    key: String,
    record: Vec<u8>,
}

/// Records of one stream entry at most, unless one event is larger: a
/// script that needs one event of a chunk reads (and Lua hashes) all of it.
const CHUNK_BYTES: usize = 64 * 1024;

/// Events of one stream entry at most.
const CHUNK_EVENTS: usize = 128;

/// The fields of one chunk entry the append script writes (after `n` and
/// `t`, which it adds): count, record sizes, records, types and their
/// sizes, keys and their sizes; a list whose items are all equal is sent
/// once with empty sizes.
struct Chunk {
    count: String,
    fields: [Vec<u8>; 6],
}

impl Chunk {
    fn fields(&self) -> [&[u8]; 7] {
        let [z, c, y, yz, k, kz] = &self.fields;
        [self.count.as_bytes(), z, c, y, yz, k, kz]
    }
}

/// Packs `items` as one field and its comma-separated sizes.
fn pack<'a>(items: impl Iterator<Item = &'a [u8]> + Clone, same: bool) -> (Vec<u8>, Vec<u8>) {
    let mut packed = Vec::new();
    let mut sizes = Vec::new();
    if same {
        packed.extend_from_slice(items.clone().next().unwrap_or_default());
        return (packed, sizes);
    }
    for item in items {
        if !sizes.is_empty() {
            sizes.push(b',');
        }
        sizes.extend_from_slice(item.len().to_string().as_bytes());
        packed.extend_from_slice(item);
    }
    (packed, sizes)
}

/// The records split into chunks of at most [`CHUNK_EVENTS`] and about
/// [`CHUNK_BYTES`].
fn chunks(records: &[&Rec]) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let mut bytes = 0;
        let take = rest
            .iter()
            .take(CHUNK_EVENTS)
            .position(|r| {
                bytes += r.record.len();
                bytes > CHUNK_BYTES
            })
            .unwrap_or(rest.len().min(CHUNK_EVENTS))
            .max(1);
        let (part, tail) = rest.split_at(take);
        rest = tail;
        let (c, z) = pack(part.iter().map(|r| &r.record[..]), false);
        let types = part.iter().map(|r| r.event_type.as_bytes());
        let (y, yz) = pack(
            types.clone(),
            types.clone().all(|t| t == part[0].event_type.as_bytes()),
        );
        let keys = part.iter().map(|r| r.key.as_bytes());
        let (k, kz) = pack(
            keys.clone(),
            keys.clone().all(|k| k == part[0].key.as_bytes()),
        );
        out.push(Chunk {
            count: part.len().to_string(),
            fields: [z, c, y, yz, k, kz],
        });
    }
    out
}

impl RedisBackend {
    pub(super) fn append_impl(
        &self,
        topic: &str,
        events: Vec<Event>,
        server_ids: Vec<bool>,
    ) -> Result<BoxFuture<Result<Appended, Error>>, Error> {
        self.check_open()?;
        let mut bytes = 0;
        let records: Vec<Rec> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let stored = StoredEvent {
                    offset: 0,
                    publish_time_us: 0,
                    event,
                };
                let record = encode_event(&stored);
                let e = stored.event;
                let server = server_ids.get(i).copied().unwrap_or(false);
                let rec = Rec {
                    // Only ids the client chose go to the dedup window.
                    id: if server { String::new() } else { e.id },
                    server,
                    event_type: e.event_type,
                    key: e.key,
                    record,
                };
                bytes += rec.record.len();
                rec
            })
            .collect();
        let queued = self.inner.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if queued + bytes > QUEUED_BYTES && queued > 0 {
            self.inner.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Error::ResourceExhausted(
                "too many events are waiting to be written to Redis; retry later".into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        let mut job = Job {
            records,
            bytes,
            reply,
        };
        {
            let mut appenders = lock(&self.inner.appenders);
            loop {
                let a = appenders
                    .entry(topic.to_string())
                    .or_insert_with(|| self.spawn_appender(topic));
                match a.tx.send(job) {
                    Ok(()) => break,
                    Err(mpsc::error::SendError(back)) => {
                        job = back;
                        appenders.remove(topic);
                    }
                }
            }
        }
        Ok(Box::pin(async move {
            rx.await.unwrap_or_else(|_| Err(Error::shutting_down()))
        }))
    }

    fn spawn_appender(&self, topic: &str) -> Appender {
        let (tx, rx) = mpsc::unbounded_channel();
        let me = self.clone();
        let topic = topic.to_string();
        self.inner
            .tasks
            .spawn(async move { me.append_loop(&topic, rx).await });
        Appender { tx }
    }

    async fn append_loop(&self, topic: &str, mut rx: mpsc::UnboundedReceiver<Job>) {
        loop {
            let first = match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    let mut appenders = lock(&self.inner.appenders);
                    if rx.is_empty() {
                        appenders.remove(topic);
                        return;
                    }
                    continue;
                }
            };
            let mut bytes = first.bytes;
            let mut jobs = vec![first];
            while bytes < CALL_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += job.bytes;
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            let result = self.append_call(topic, &jobs).await;
            self.inner.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            match result {
                Ok(mut appended) => {
                    for job in jobs.into_iter().rev() {
                        let at = appended.offsets.len() - job.records.len();
                        let part = Appended {
                            publish_time_us: appended.publish_time_us,
                            offsets: appended.offsets.split_off(at),
                            duplicate: appended.duplicate.split_off(at),
                        };
                        let _ = job.reply.send(Ok(part));
                    }
                }
                Err(e) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// One append script call for the events of `jobs`, in order.
    async fn append_call(&self, topic: &str, jobs: &[Job]) -> Result<Appended, Error> {
        let n: usize = jobs.iter().map(|j| j.records.len()).sum();
        let records: Vec<&Rec> = jobs.iter().flat_map(|j| &j.records).collect();
        let chunks = chunks(&records);
        let count = n.to_string();
        let chosen: Vec<(String, &str)> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.server)
            .map(|(i, r)| ((i + 1).to_string(), r.id.as_str()))
            .collect();
        let chosen_count = chosen.len().to_string();
        let chunk_count = chunks.len().to_string();
        let mut args: Vec<&[u8]> = Vec::with_capacity(4 + chosen.len() * 2 + chunks.len() * 7);
        args.extend([count.as_bytes(), chosen_count.as_bytes()]);
        for (index, id) in &chosen {
            args.extend([index.as_bytes(), id.as_bytes()]);
        }
        args.push(chunk_count.as_bytes());
        for c in &chunks {
            args.extend(c.fields());
        }
        let mut reply = self.run(|s| &s.append, topic, &args).await?;
        if reply.text()? != "OK" {
            // Deleted through another node: the next publish may create it.
            lock(&self.inner.known).remove(topic);
            return Err(not_found_topic(topic));
        }
        let publish_time_us = reply.int()?;
        let mut next = reply.uint()?;
        let mut duplicates = BTreeMap::new();
        while reply.left() > 0 {
            let index = usize::try_from(reply.uint()?).unwrap_or(usize::MAX);
            duplicates.insert(index, reply.uint()?);
        }
        let mut offsets = Vec::with_capacity(n);
        let mut duplicate = Vec::with_capacity(n);
        let mut end = None;
        for index in 1..=n {
            if let Some(&original) = duplicates.get(&index) {
                offsets.push(original);
                duplicate.push(true);
            } else {
                offsets.push(next);
                duplicate.push(false);
                next += 1;
                end = Some(next);
            }
        }
        self.inner
            .link
            .wait_replicas(
                self.cfg(),
                &self.inner.keys.meta(topic),
                self.cfg().wait_replicas,
            )
            .await?;
        if let Some(end) = end {
            let stored = duplicate.iter().filter(|d| !**d).count() as u64;
            self.inner.published.fetch_add(stored, Ordering::Relaxed);
            self.topic_end(topic, end);
        }
        Ok(Appended {
            publish_time_us,
            offsets,
            duplicate,
        })
    }

    /// The topic's end moved (here or on another node).
    pub(super) fn topic_end(&self, topic: &str, end: u64) {
        if let Some(t) = lock(&self.inner.topics).get(topic) {
            t.end.send_if_modified(|e| {
                let newer = end > *e;
                if newer {
                    *e = end;
                }
                newer
            });
        }
        self.topic_wake(topic).notify_waiters();
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

    pub(super) async fn watch_impl(&self, topic: &str) -> Result<TopicWatch, Error> {
        if let Some(t) = lock(&self.inner.topics).get(topic) {
            return Ok(TopicWatch {
                end: t.end.subscribe(),
                deleted: t.deleted.clone(),
            });
        }
        let end: Option<u64> = self
            .cmd(
                redis::cmd("HGET")
                    .arg(self.inner.keys.meta(topic))
                    .arg("end"),
            )
            .await?;
        let end = end.ok_or_else(|| not_found_topic(topic))?;
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
