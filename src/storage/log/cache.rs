//! In-memory tail of the log and the read budget shared by every read path.
//!
//! The writer pushes each committed batch as `Arc<StoredEvent>` before it
//! publishes the new end offset, so consumers that keep up are served from
//! here without touching the files or decoding anything.

use std::collections::VecDeque;
use std::sync::Arc;

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

/// The most recent `capacity` events, densely by offset.
#[derive(Debug)]
pub struct TailCache {
    capacity: usize,
    /// Offset of `events[0]` (or of the next event, when empty).
    first: u64,
    events: VecDeque<Arc<StoredEvent>>,
}

impl TailCache {
    /// An empty cache whose next event will be `next_offset`.
    pub fn new(capacity: usize, next_offset: u64) -> Self {
        TailCache {
            capacity,
            first: next_offset,
            events: VecDeque::with_capacity(capacity.min(4096)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Appends freshly committed events (consecutive offsets). Returns the
    /// evicted ones so the caller can drop them after releasing its lock.
    pub fn extend(&mut self, fresh: &mut Vec<Arc<StoredEvent>>) -> Vec<Arc<StoredEvent>> {
        let mut evicted = Vec::new();
        let Some(head) = fresh.first() else {
            return evicted;
        };
        if !self.enabled() {
            fresh.clear();
            return evicted;
        }
        if head.offset != self.first + self.events.len() as u64 {
            // Not contiguous with what we hold (cannot happen with one
            // writer); start over rather than serve wrong offsets.
            evicted.extend(self.events.drain(..));
            self.first = head.offset;
        }
        let overflow = (self.events.len() + fresh.len()).saturating_sub(self.capacity);
        let from_old = overflow.min(self.events.len());
        evicted.extend(self.events.drain(..from_old));
        self.first += from_old as u64;
        let from_fresh = overflow - from_old;
        self.first += from_fresh as u64;
        evicted.extend(fresh.drain(..from_fresh));
        self.events.extend(fresh.drain(..));
        evicted
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

    #[test]
    fn keeps_the_most_recent_events() {
        let mut cache = TailCache::new(5, 0);
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
        let mut cache = TailCache::new(100, 10);
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
        let mut cache = TailCache::new(0, 0);
        let mut fresh = events(0..3);
        cache.extend(&mut fresh);
        assert!(fresh.is_empty());
        assert!(!cache.read(0, 3, &mut Budget::new(10, 10), &mut Vec::new()));
    }
}
