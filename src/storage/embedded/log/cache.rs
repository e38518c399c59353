//! In-memory tail of the log and the read budget shared by every read path.
//!
//! The writer pushes each committed batch as `Arc<StoredEvent>` before it
//! publishes the new end offset, so consumers that keep up are served from
//! here without touching the files or decoding anything. The cache is
//! bounded in events and bytes per log and by a byte budget shared by all
//! logs ([`TailCacheMemory`]); an idle log releases it altogether
//! (`idle.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::event::StoredEvent;

/// How much a read may still return. The event that reaches `max_bytes` is
/// included, so a read always makes progress.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    events_left: usize,
    bytes_left: usize,
}

impl Budget {
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Budget {
            events_left: max_events,
            // Even `max_bytes == 0` lets one event through.
            bytes_left: max_bytes.max(1),
        }
    }

    /// Accounts for one more event of `size` bytes ([`Event::size`]); false
    /// once the read must stop.
    ///
    /// [`Event::size`]: crate::event::Event::size
    pub fn take(&mut self, size: usize) -> bool {
        self.events_left = self.events_left.saturating_sub(1);
        self.bytes_left = self.bytes_left.saturating_sub(size);
        !self.exhausted()
    }

    pub fn exhausted(&self) -> bool {
        self.events_left == 0 || self.bytes_left == 0
    }

    pub fn events_left(&self) -> usize {
        self.events_left
    }

    pub fn bytes_left(&self) -> usize {
        self.bytes_left
    }
}

/// Memory shared by the tail caches of every log opened with the same
/// [`LogOptions`](super::LogOptions) (clones share it): the server-wide
/// budget, in bytes, and how much of it the caches hold now.
#[derive(Clone)]
pub struct TailCacheMemory {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    limit: usize,
    used: AtomicUsize,
}

impl TailCacheMemory {
    /// A budget of `limit` bytes, none of it used (0 disables every cache
    /// that draws on it).
    pub fn new(limit: usize) -> Self {
        TailCacheMemory {
            inner: Arc::new(MemoryInner {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes the caches hold now (never more than [`limit`](Self::limit)).
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, or says how many bytes are missing.
    fn try_reserve(&self, bytes: usize) -> Result<(), usize> {
        let limit = self.inner.limit;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .map(drop)
            .map_err(|used| used.saturating_add(bytes).saturating_sub(limit).max(1))
    }

    fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}

impl std::fmt::Debug for TailCacheMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailCacheMemory")
            .field("limit", &self.limit())
            .field("used", &self.used())
            .finish()
    }
}

/// Approximate heap bytes one cached event keeps alive: the `Arc` with the
/// event's fixed part, every string and the payload, and the attribute
/// vector. What the byte limits count.
pub fn footprint(event: &StoredEvent) -> usize {
    // Strong and weak counts of the Arc.
    const ARC_COUNTS: usize = 16;
    ARC_COUNTS
        + size_of::<StoredEvent>()
        + event.event.size()
        + event.event.attributes.len() * size_of::<(String, String)>()
}

/// The most recent committed events, densely by offset, within three
/// limits: at most `max_events` events and `max_bytes` bytes
/// ([`footprint`]) of its own, and no more than the shared
/// [`TailCacheMemory`] has left. A commit that does not fit evicts this
/// cache's oldest events first; when even an empty cache leaves no room,
/// the oldest of the new events are not cached (readers then go to the
/// files), so the shared total never exceeds its limit.
#[derive(Debug)]
pub struct TailCache {
    max_events: usize,
    max_bytes: usize,
    memory: TailCacheMemory,
    /// Offset of `events[0]` (or of the next event, when empty).
    first: u64,
    /// Sum of the footprints of `events`, all of it taken from `memory`.
    bytes: usize,
    events: VecDeque<Arc<StoredEvent>>,
}

impl TailCache {
    /// An empty cache whose next event will be `next_offset`.
    pub fn new(
        max_events: usize,
        max_bytes: usize,
        memory: TailCacheMemory,
        next_offset: u64,
    ) -> Self {
        TailCache {
            max_events,
            max_bytes,
            memory,
            first: next_offset,
            bytes: 0,
            events: VecDeque::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_events > 0 && self.max_bytes > 0 && self.memory.limit() > 0
    }

    /// Bytes held ([`footprint`]s).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends freshly committed events (consecutive offsets) within the
    /// limits. Returns the evicted ones (and the fresh ones left out) so the
    /// caller can drop them after releasing its lock.
    pub fn extend(&mut self, fresh: &mut Vec<Arc<StoredEvent>>) -> Vec<Arc<StoredEvent>> {
        let mut evicted = Vec::new();
        let Some(head) = fresh.first().map(|e| e.offset) else {
            return evicted;
        };
        if !self.enabled() {
            evicted.append(fresh);
            return evicted;
        }
        if head != self.first + self.events.len() as u64 {
            // Not contiguous with what we hold (cannot happen with one
            // writer); start over rather than serve wrong offsets.
            evicted.extend(self.release_all());
            self.first = head;
        }
        let mut fresh_bytes: usize = fresh.iter().map(|e| footprint(e)).sum();
        // Fresh events left out, from the front; only once `events` is empty.
        let mut skip = 0;
        // Evicted bytes not yet given back to the shared memory.
        let mut freed = 0;
        // Bytes to evict before asking the shared memory again.
        let mut shortfall = 0;
        loop {
            let count = self.events.len() + fresh.len() - skip;
            let fits_here = count <= self.max_events && self.bytes + fresh_bytes <= self.max_bytes;
            if fits_here && freed >= shortfall {
                self.memory.release(std::mem::take(&mut freed));
                match self.memory.try_reserve(fresh_bytes) {
                    Ok(()) => break,
                    Err(missing) => shortfall = missing,
                }
            }
            if let Some(old) = self.events.pop_front() {
                let size = footprint(&old);
                self.bytes -= size;
                freed += size;
                self.first += 1;
                evicted.push(old);
            } else if let Some(new) = fresh.get(skip) {
                fresh_bytes -= footprint(new);
                skip += 1;
                // Nothing of ours is left to free: ask again for less.
                shortfall = 0;
            } else {
                break;
            }
        }
        self.memory.release(freed);
        evicted.extend(fresh.drain(..skip));
        if self.events.is_empty() {
            self.first = head + skip as u64;
        }
        self.bytes += fresh_bytes;
        self.events.extend(fresh.drain(..));
        evicted
    }

    /// Empties the cache (the next event keeps its offset) and gives its
    /// memory back, including the queue's capacity. Returns the events so
    /// the caller can drop them after releasing its lock.
    pub fn release_all(&mut self) -> VecDeque<Arc<StoredEvent>> {
        self.first += self.events.len() as u64;
        self.memory.release(std::mem::take(&mut self.bytes));
        std::mem::take(&mut self.events)
    }

    /// Copies events in `[from, end)` into `out` within `budget`. Returns
    /// false (and copies nothing) when `from` is older than the cache.
    pub fn read(
        &self,
        from: u64,
        end: u64,
        budget: &mut Budget,
        out: &mut Vec<Arc<StoredEvent>>,
    ) -> bool {
        if !self.enabled() || from < self.first {
            return false;
        }
        let skip = usize::try_from(from - self.first).unwrap_or(usize::MAX);
        for event in self.events.iter().skip(skip) {
            if event.offset >= end {
                break;
            }
            out.push(Arc::clone(event));
            if !budget.take(event.event.size()) {
                break;
            }
        }
        // Events past what the cache holds have not been committed yet
        // (the cache is filled before the end offset moves), so this is a
        // complete answer.
        true
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        self.memory.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn events(range: std::ops::Range<u64>) -> Vec<Arc<StoredEvent>> {
        range
            .map(|offset| {
                Arc::new(StoredEvent {
                    offset,
                    publish_time_us: 0,
                    event: Event {
                        data: bytes::Bytes::from(vec![0; 10]),
                        ..Event::default()
                    },
                })
            })
            .collect()
    }

    fn offsets(out: &[Arc<StoredEvent>]) -> Vec<u64> {
        out.iter().map(|e| e.offset).collect()
    }

    fn cache(max_events: usize, next: u64) -> TailCache {
        TailCache::new(
            max_events,
            usize::MAX,
            TailCacheMemory::new(usize::MAX),
            next,
        )
    }

    #[test]
    fn keeps_the_most_recent_events() {
        let mut cache = cache(5, 0);
        assert!(cache.extend(&mut events(0..3)).is_empty());
        let evicted = cache.extend(&mut events(3..7));
        assert_eq!(offsets(&evicted), vec![0, 1]);
        let evicted = cache.extend(&mut events(7..20));
        assert_eq!(evicted.len(), 13);
        let mut out = Vec::new();
        assert!(!cache.read(14, 20, &mut Budget::new(100, 1000), &mut out));
        assert!(cache.read(15, 20, &mut Budget::new(100, 1000), &mut out));
        assert_eq!(offsets(&out), vec![15, 16, 17, 18, 19]);
    }

    #[test]
    fn reads_respect_end_and_budget() {
        let mut cache = cache(100, 10);
        cache.extend(&mut events(10..30));
        let mut out = Vec::new();
        assert!(cache.read(12, 15, &mut Budget::new(100, 1000), &mut out));
        assert_eq!(offsets(&out), vec![12, 13, 14]);
        out.clear();
        assert!(cache.read(12, 30, &mut Budget::new(4, 1000), &mut out));
        assert_eq!(offsets(&out), vec![12, 13, 14, 15]);
        out.clear();
        // 10 bytes each: the third event reaches 25 and is included.
        assert!(cache.read(12, 30, &mut Budget::new(100, 25), &mut out));
        assert_eq!(offsets(&out), vec![12, 13, 14]);
    }

    #[test]
    fn disabled_cache_holds_nothing() {
        let mut cache = cache(0, 0);
        let mut fresh = events(0..3);
        cache.extend(&mut fresh);
        assert!(fresh.is_empty());
        assert!(!cache.read(0, 3, &mut Budget::new(10, 10), &mut Vec::new()));
    }

    fn sized(range: std::ops::Range<u64>, data: usize) -> Vec<Arc<StoredEvent>> {
        range
            .map(|offset| {
                Arc::new(StoredEvent {
                    offset,
                    publish_time_us: 0,
                    event: Event {
                        data: bytes::Bytes::from(vec![1; data]),
                        ..Event::default()
                    },
                })
            })
            .collect()
    }

    #[test]
    fn a_log_keeps_at_most_its_byte_limit() {
        let one = footprint(&sized(0..1, 1000)[0]);
        let memory = TailCacheMemory::new(usize::MAX);
        let mut cache = TailCache::new(1000, 3 * one + 10, memory.clone(), 0);
        let evicted = cache.extend(&mut sized(0..2, 1000));
        assert!(evicted.is_empty());
        let evicted = cache.extend(&mut sized(2..10, 1000));
        assert_eq!(offsets(&evicted), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(cache.bytes(), 3 * one);
        assert_eq!(memory.used(), 3 * one);
        let mut out = Vec::new();
        assert!(!cache.read(6, 10, &mut Budget::new(100, usize::MAX), &mut out));
        assert!(cache.read(7, 10, &mut Budget::new(100, usize::MAX), &mut out));
        assert_eq!(offsets(&out), vec![7, 8, 9]);
        // One event larger than the whole limit is not cached at all.
        let evicted = cache.extend(&mut sized(10..11, 4 * 1000));
        assert_eq!(offsets(&evicted), vec![7, 8, 9, 10]);
        assert_eq!((cache.bytes(), memory.used()), (0, 0));
        assert!(cache.read(11, 11, &mut Budget::new(1, 1), &mut Vec::new()));
    }

    #[test]
    fn logs_share_one_memory_budget_and_evict_their_own_first() {
        let one = footprint(&sized(0..1, 500)[0]);
        let memory = TailCacheMemory::new(4 * one);
        let mut a = TailCache::new(1000, usize::MAX, memory.clone(), 0);
        let mut b = TailCache::new(1000, usize::MAX, memory.clone(), 100);
        a.extend(&mut sized(0..3, 500));
        assert_eq!(memory.used(), 3 * one);
        // B has nothing to evict: only the newest of its batch fits.
        let evicted = b.extend(&mut sized(100..103, 500));
        assert_eq!(offsets(&evicted), vec![100, 101]);
        assert_eq!(memory.used(), 4 * one);
        let mut out = Vec::new();
        assert!(!b.read(101, 103, &mut Budget::new(10, usize::MAX), &mut out));
        assert!(b.read(102, 103, &mut Budget::new(10, usize::MAX), &mut out));
        assert_eq!(offsets(&out), vec![102]);
        // A makes room from its own oldest events.
        let evicted = a.extend(&mut sized(3..5, 500));
        assert_eq!(offsets(&evicted), vec![0, 1]);
        assert_eq!(a.bytes(), 3 * one);
        assert_eq!(memory.used(), 4 * one, "never over the budget");
        // Releasing gives the memory back and keeps the offsets going.
        drop(a.release_all());
        assert_eq!(memory.used(), one);
        assert!(a.extend(&mut sized(5..6, 500)).is_empty());
        out.clear();
        assert!(a.read(5, 6, &mut Budget::new(10, usize::MAX), &mut out));
        assert_eq!(offsets(&out), vec![5]);
        drop(a);
        drop(b);
        assert_eq!(memory.used(), 0, "dropped caches give their memory back");
    }
}
