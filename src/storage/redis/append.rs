//! Appends of the Redis backend: one queue per topic (a task, ended after
//! 30 s idle), one script call in flight per topic, concurrent publishes
//! group-committed into it (at most [`CALL_BYTES`] a call, [`QUEUED_BYTES`]
//! queued per node).
//!
//! Storage layer (Redis backend). An event is stored as the embedded log's
//! self-checking record (offset and publish time zero: the stream entry
//! carries them), so both backends share one event encoding.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::event::{Event, StoredEvent};
use crate::model::Error;
use crate::storage::backend::{Appended, BoxFuture};
use crate::storage::embedded::log::encode_event;
use crate::storage::not_found_topic;

use super::chunk_cache::{CachedChunk, nonce};
use super::{RedisBackend, lock};

/// Bytes of events one script call carries at most (more wait for the next).
const CALL_BYTES: usize = 4 << 20;
/// Bytes of events waiting in all append queues of a node at most.
const QUEUED_BYTES: usize = 256 << 20;

/// An idle append queue ends after this.
const IDLE: Duration = Duration::from_secs(30);

/// The append queue of a topic: a task that writes its jobs, one script
/// call at a time, group-committing the jobs that wait.
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
/// once with empty sizes. The records go to the topic's payload hash, the
/// script gets their length.
struct Chunk {
    count: String,
    len: String,
    fields: [Vec<u8>; 6],
    /// Where each record starts in the records field, then their end.
    bounds: Vec<usize>,
}

/// What one append script call stored: offsets, the chunks it sent, its
/// nonce and the topic's generation.
struct Call {
    appended: Appended,
    chunks: Vec<Chunk>,
    nonce: String,
    generation: String,
}

impl Chunk {
    /// The script's arguments for this chunk.
    fn args(&self) -> [&[u8]; 7] {
        let [z, _, y, yz, k, kz] = &self.fields;
        [self.count.as_bytes(), z, self.len.as_bytes(), y, yz, k, kz]
    }
}

/// Packs `items` as one field and its comma-separated sizes.
fn pack<'a>(items: impl Iterator<Item = &'a [u8]> + Clone, same: bool) -> (Vec<u8>, Vec<u8>) {
    if same {
        return (
            items.clone().next().unwrap_or_default().to_vec(),
            Vec::new(),
        );
    }
    // Sized once: the records field may be kept (chunk cache), which counts
    // its length.
    let mut packed = Vec::with_capacity(items.clone().map(<[u8]>::len).sum());
    let mut sizes = Vec::new();
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
        let mut bounds = Vec::with_capacity(part.len() + 1);
        bounds.push(0);
        for r in part {
            bounds.push(bounds[bounds.len() - 1] + r.record.len());
        }
        out.push(Chunk {
            count: part.len().to_string(),
            len: c.len().to_string(),
            bounds,
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
            let Call {
                mut appended,
                chunks,
                nonce,
                generation,
            } = match result {
                Ok(r) => r,
                Err(e) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                    continue;
                }
            };
            self.appended(topic, &generation, &appended, chunks, &nonce);
            let replies: Vec<_> = jobs
                .into_iter()
                .map(|job| (job.records.len(), job.reply))
                .collect();
            if let Err(e) = self.wait_replicas(topic).await {
                for (_, reply) in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                continue;
            }
            for (len, reply) in replies.into_iter().rev() {
                let at = appended.offsets.len() - len;
                let part = Appended {
                    publish_time_us: appended.publish_time_us,
                    offsets: appended.offsets.split_off(at),
                    duplicate: appended.duplicate.split_off(at),
                };
                let _ = reply.send(Ok(part));
            }
        }
    }

    /// One append script call for the events of `jobs`, in order; with the
    /// chunks it sent and the call's nonce.
    async fn append_call(&self, topic: &str, jobs: &[Job]) -> Result<Call, Error> {
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
        let mut args: Vec<&[u8]> = Vec::with_capacity(6 + chosen.len() * 2 + chunks.len() * 7);
        args.extend([count.as_bytes(), chosen_count.as_bytes()]);
        for (index, id) in &chosen {
            args.extend([index.as_bytes(), id.as_bytes()]);
        }
        args.push(chunk_count.as_bytes());
        for c in &chunks {
            args.extend(c.args());
        }
        args.push(self.inner.node.as_bytes());
        args.push(if self.inner.older_nodes.load(Ordering::Relaxed) {
            b"1"
        } else {
            b"0"
        });
        let nonce = nonce();
        args.push(nonce.as_bytes());
        // The records go in by a plain HSET in one transaction with the
        // script: Lua would hash every byte of them as an argument.
        let mut payload = redis::pipe();
        let hset = payload.cmd("HSET").arg(self.inner.keys.payloads(topic));
        for (i, c) in chunks.iter().enumerate() {
            hset.arg(format!("{nonce}:{}", i + 1)).arg(&c.fields[1]);
        }
        payload.ignore();
        let mut reply = self.run_after(payload, |s| &s.append, topic, &args).await?;
        match reply.text()?.as_str() {
            "OK" => {}
            "LOST" => {
                return Err(Error::Unavailable(
                    "the events' records were not in Redis when the append ran (another \
                     client changed the topic's payload hash); nothing was stored, retry"
                        .into(),
                ));
            }
            "AGAIN" => {
                return Err(Error::Unavailable(
                    "the events were stored, but Redis's answer was lost on the way (its \
                     connection dropped); publishing them again stores them again unless the \
                     topic's dedup window holds their ids"
                        .into(),
                ));
            }
            _ => {
                // Deleted through another node: the next publish may create it.
                lock(&self.inner.known).remove(topic);
                return Err(not_found_topic(topic));
            }
        }
        let publish_time_us = reply.int()?;
        let mut next = reply.uint()?;
        let generation = reply.text()?;
        let mut duplicates = BTreeMap::new();
        while reply.left() > 0 {
            let index = usize::try_from(reply.uint()?).unwrap_or(usize::MAX);
            duplicates.insert(index, reply.uint()?);
        }
        let mut offsets = Vec::with_capacity(n);
        let mut duplicate = Vec::with_capacity(n);
        for index in 1..=n {
            if let Some(&original) = duplicates.get(&index) {
                offsets.push(original);
                duplicate.push(true);
            } else {
                offsets.push(next);
                duplicate.push(false);
                next += 1;
            }
        }
        Ok(Call {
            appended: Appended {
                publish_time_us,
                offsets,
                duplicate,
            },
            chunks,
            nonce,
            generation,
        })
    }

    /// After an append call: its chunks go to the chunk cache (when no
    /// event was a duplicate: then the stored chunks are the ones sent),
    /// and this node's waiters look at once, as the other nodes' do, before
    /// `WAIT` (the events are stored whatever it says).
    fn appended(
        &self,
        topic: &str,
        generation: &str,
        appended: &Appended,
        chunks: Vec<Chunk>,
        nonce: &str,
    ) {
        let stored = appended.duplicate.iter().filter(|d| !**d).count();
        let Some(&first) = appended.offsets.first() else {
            return;
        };
        if stored == appended.offsets.len() && self.inner.chunks.enabled() {
            let nonce: Arc<str> = nonce.into();
            let generation: Arc<str> = generation.into();
            let mut at = first;
            let cached = chunks
                .into_iter()
                .map(|chunk| {
                    let events = chunk.bounds.len() - 1;
                    let [_, records, ..] = chunk.fields;
                    let cached = CachedChunk {
                        first: at,
                        publish_time_us: appended.publish_time_us,
                        bounds: chunk.bounds,
                        records,
                        call: first,
                        nonce: Arc::clone(&nonce),
                        generation: Arc::clone(&generation),
                    };
                    at += events as u64;
                    cached
                })
                .collect();
            self.inner.chunks.insert(topic, cached);
        }
        if stored > 0 {
            self.inner
                .published
                .fetch_add(stored as u64, Ordering::Relaxed);
            let end = appended
                .offsets
                .iter()
                .zip(&appended.duplicate)
                .filter(|(_, d)| !**d)
                .map(|(o, _)| o + 1)
                .max()
                .unwrap_or(first);
            self.topic_end(topic, end);
        }
    }
}
