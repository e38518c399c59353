//! Stream chunks this node appended, kept (bounded in bytes) so that a
//! claim of them needs not read them back: the node names the chunks it
//! holds from where a group's cursor is expected to be ("hints"), and a
//! claim that takes one of them whole answers with its first offset only
//! ('H' in claiming.lua). Redis 7's Lua hashes every byte of every string a
//! script reads, so a chunk read back costs the script more than all its
//! other work in a plain consume.
//!
//! A hint is checked in the script against the append call it came from:
//! each call sends a random nonce, which the script keeps in the topic's
//! `bn` set scored with the call's first offset (trimmed with the events). A chunk
//! that retention deleted, or that Redis lost (a failover, a restart that
//! lost the last writes) and then stored anew at the same offsets, has no
//! or another nonce there, so it is read, not taken from the hint. (The
//! publish time would not do: while the Redis clock is behind the topic's
//! last publish, every append gets that same time.) A chunk is offered
//! only to groups of the topic generation it was appended to, so a topic
//! deleted and created again never gets the old one's chunks.
//!
//! Storage layer (Redis backend).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::event::StoredEvent;
use crate::model::Error;

use super::events::event_from_record;
use super::lock;

/// Hints sent with one claim at most.
const MOST_HINTS: usize = 8;

/// What a chunk costs the cache beyond its records (its bounds and its
/// place in the maps), and each of its events.
const CHUNK_OVERHEAD: usize = 256;
const EVENT_OVERHEAD: usize = 8;

/// One stream chunk as this node appended it: its records as the stream
/// entry holds them (the bytes this node sent), decoded when claimed.
#[derive(Debug)]
pub(super) struct CachedChunk {
    pub(super) first: u64,
    pub(super) publish_time_us: i64,
    /// Where each record starts in `records`, then their end.
    pub(super) bounds: Vec<usize>,
    pub(super) records: Vec<u8>,
    /// The first offset of its append call, and the call's nonce.
    pub(super) call: u64,
    pub(super) nonce: Arc<str>,
    /// The topic's generation it was appended to: only claims of groups of
    /// that generation are offered it.
    pub(super) generation: Arc<str>,
}

impl CachedChunk {
    /// Its events.
    fn len(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    /// The chunk's hint argument: `first,count,bytes,call,nonce`.
    fn hint(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.first,
            self.len(),
            self.records.len(),
            self.call,
            self.nonce
        )
    }

    fn cost(&self) -> usize {
        self.records.capacity() + CHUNK_OVERHEAD + self.len() * EVENT_OVERHEAD
    }

    /// The event at `offset`, decoded; `None` when the chunk does not hold
    /// it.
    pub(super) fn event(&self, offset: u64) -> Option<Result<StoredEvent, Error>> {
        let i = usize::try_from(offset.checked_sub(self.first)?).ok()?;
        let (&start, &end) = (self.bounds.get(i)?, self.bounds.get(i + 1)?);
        let record = self.records.get(start..end)?;
        Some(event_from_record(offset, self.publish_time_us, record))
    }
}

/// A fresh nonce for an append call (hex).
pub(super) fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Chunks to offer one claim, and their hint argument ('' none).
#[derive(Debug, Default)]
pub(super) struct Hints {
    pub(super) chunks: Vec<Arc<CachedChunk>>,
    pub(super) arg: String,
}

impl Hints {
    /// The offered chunk that starts at `first`.
    pub(super) fn chunk(&self, first: u64) -> Option<&Arc<CachedChunk>> {
        self.chunks.iter().find(|c| c.first == first)
    }
}

/// The cache: chunks by topic and first offset, evicted oldest first.
pub(super) struct ChunkCache {
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, BTreeMap<u64, Arc<CachedChunk>>>,
    /// Insertion order, for eviction (entries of forgotten chunks are
    /// skipped).
    order: VecDeque<(String, u64)>,
    bytes: usize,
    /// Where each group's next claim is expected to start.
    cursors: HashMap<u64, u64>,
}

/// What keeping a chunk of `topic` costs (the topic's name is kept with
/// it in the eviction order).
fn cost(topic: &str, chunk: &CachedChunk) -> usize {
    chunk.cost() + topic.len()
}

impl ChunkCache {
    /// A cache of at most `max_bytes` (0: off).
    pub(super) fn new(max_bytes: usize) -> ChunkCache {
        ChunkCache {
            max_bytes,
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// Keeps the chunks of one append of `topic`, evicting the oldest.
    pub(super) fn insert(&self, topic: &str, chunks: Vec<CachedChunk>) {
        if !self.enabled() {
            return;
        }
        let mut s = lock(&self.state);
        for chunk in chunks {
            let added = cost(topic, &chunk);
            if added > self.max_bytes {
                continue;
            }
            while s.bytes + added > self.max_bytes {
                let Some((t, first)) = s.order.pop_front() else {
                    break;
                };
                s.remove(&t, first);
            }
            let first = chunk.first;
            let map = s.topics.entry(topic.to_string()).or_default();
            let old = map.insert(first, Arc::new(chunk)).map(|c| cost(topic, &c));
            s.bytes = s.bytes + added - old.unwrap_or(0);
            if old.is_none() {
                s.order.push_back((topic.to_string(), first));
            }
        }
    }

    /// Forgets a topic's chunks (deleted through this node).
    pub(super) fn forget_topic(&self, topic: &str) {
        let mut s = lock(&self.state);
        if let Some(map) = s.topics.remove(topic) {
            let freed: usize = map.values().map(|c| cost(topic, c)).sum();
            s.bytes -= freed;
            s.order.retain(|(t, _)| t != topic);
        }
    }

    /// Notes where group `gid`'s next claim should start.
    pub(super) fn claimed(&self, gid: u64, next: u64) {
        if self.enabled() {
            lock(&self.state).cursors.insert(gid, next);
        }
    }

    /// Forgets group `gid`'s expected cursor (the group is gone).
    pub(super) fn forget_group(&self, gid: u64) {
        lock(&self.state).cursors.remove(&gid);
    }

    /// The chunks of `topic` (its generation `generation`) that follow on
    /// from group `gid`'s expected cursor, up to `most` events and
    /// `max_bytes` of records.
    pub(super) fn hints(
        &self,
        topic: &str,
        generation: &str,
        gid: u64,
        most: usize,
        max_bytes: usize,
    ) -> Hints {
        if !self.enabled() {
            return Hints::default();
        }
        let s = lock(&self.state);
        let (Some(&cursor), Some(map)) = (s.cursors.get(&gid), s.topics.get(topic)) else {
            return Hints::default();
        };
        let mut chunks = Vec::new();
        let (mut next, mut events, mut bytes) = (cursor, 0, 0);
        while let Some(c) = map.get(&next)
            && &*c.generation == generation
        {
            events += c.len();
            bytes += c.records.len();
            if chunks.len() == MOST_HINTS || events > most || bytes > max_bytes {
                break;
            }
            next += c.len() as u64;
            chunks.push(Arc::clone(c));
        }
        let arg = chunks
            .iter()
            .map(|c| c.hint())
            .collect::<Vec<_>>()
            .join(";");
        Hints { chunks, arg }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }
}

impl State {
    fn remove(&mut self, topic: &str, first: u64) {
        let Some(map) = self.topics.get_mut(topic) else {
            return;
        };
        if let Some(c) = map.remove(&first) {
            self.bytes -= cost(topic, &c);
        }
        if map.is_empty() {
            self.topics.remove(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk of `n` events whose records take `bytes` in all.
    fn chunk(first: u64, n: usize, bytes: usize) -> CachedChunk {
        let mut bounds: Vec<usize> = (0..n).map(|i| i * (bytes / n)).collect();
        bounds.push(bytes);
        CachedChunk {
            first,
            publish_time_us: 7,
            bounds,
            records: vec![0; bytes],
            call: first,
            nonce: "9f".into(),
            generation: "1".into(),
        }
    }

    #[test]
    fn hints_follow_on_from_the_expected_cursor_within_the_limits() {
        let cache = ChunkCache::new(1 << 20);
        cache.insert(
            "t",
            vec![chunk(0, 10, 100), chunk(10, 10, 100), chunk(30, 10, 100)],
        );
        assert!(
            cache.hints("t", "1", 1, 100, 1000).chunks.is_empty(),
            "no cursor yet"
        );
        cache.claimed(1, 0);
        let h = cache.hints("t", "1", 1, 100, 1000);
        assert_eq!(h.chunks.len(), 2, "a gap at 20 ends the run");
        assert_eq!(h.arg, "0,10,100,0,9f;10,10,100,10,9f");
        assert_eq!(h.chunk(10).map(|c| c.first), Some(10));
        assert!(
            cache.hints("t", "2", 1, 100, 1000).chunks.is_empty(),
            "a re-created topic"
        );
        assert!(h.chunk(10).and_then(|c| c.event(19)).is_some());
        assert!(h.chunk(10).and_then(|c| c.event(20)).is_none());
        assert_eq!(cache.hints("t", "1", 1, 15, 1000).chunks.len(), 1, "events");
        assert_eq!(cache.hints("t", "1", 1, 100, 150).chunks.len(), 1, "bytes");
        cache.claimed(1, 5);
        assert!(
            cache.hints("t", "1", 1, 100, 1000).chunks.is_empty(),
            "mid-chunk"
        );
        assert!(
            cache.hints("u", "1", 1, 100, 1000).chunks.is_empty(),
            "other topic"
        );
    }

    #[test]
    fn the_cache_stays_within_its_bytes_evicting_the_oldest_chunks() {
        let cost = cost("t", &chunk(0, 10, 1000));
        let cache = ChunkCache::new(cost * 3);
        for i in 0..5 {
            cache.insert("t", vec![chunk(i * 10, 10, 1000)]);
            assert!(cache.bytes() <= cost * 3);
        }
        assert_eq!(cache.bytes(), cost * 3);
        cache.claimed(1, 0);
        assert!(
            cache.hints("t", "1", 1, 100, 1 << 20).chunks.is_empty(),
            "evicted"
        );
        cache.claimed(1, 20);
        assert_eq!(cache.hints("t", "1", 1, 100, 1 << 20).chunks.len(), 3);
        cache.insert("t", vec![chunk(100, 10, cost * 4)]);
        assert_eq!(
            cache.bytes(),
            cost * 3,
            "a chunk larger than the cache is not kept"
        );
        cache.forget_topic("t");
        assert_eq!(cache.bytes(), 0);
        cache.insert("t", vec![chunk(50, 10, 1000)]);
        assert_eq!(cache.bytes(), cost);
    }

    #[test]
    fn a_cache_of_zero_bytes_keeps_nothing() {
        let cache = ChunkCache::new(0);
        cache.insert("t", vec![chunk(0, 1, 1)]);
        cache.claimed(1, 0);
        assert!(cache.hints("t", "1", 1, 100, 1000).arg.is_empty());
        assert_eq!(cache.bytes(), 0);
    }
}
