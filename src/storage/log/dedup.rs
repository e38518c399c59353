//! The idempotent-publish index of one log: which event ids were stored
//! within the dedup window, and at which offset.
//!
//! Storage layer, owned by the writer thread (`writer.rs`), so checking an id
//! and storing it is one step: two concurrent appends of the same id cannot
//! both store it. Entries are kept in publish-time order next to the map and
//! expired from the front as time moves on, so memory stays bounded by the
//! number of ids stored within one window. When the window is zero the index
//! is off and holds nothing.
//!
//! "Within the window" means: an entry stored at publish time `p` still
//! counts for a batch whose publish time is `t` when `p >= t - window`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Ids stored within the window, with their offsets.
#[derive(Debug, Default)]
pub struct DedupIndex {
    /// The window in microseconds; 0 means the index is off.
    window_us: i64,
    /// Id → offset of its first stored copy within the window.
    ids: HashMap<Arc<str>, u64>,
    /// `(publish_time_us, offset, id)` in publish-time order, for expiry.
    by_time: VecDeque<(i64, u64, Arc<str>)>,
}

impl DedupIndex {
    /// Whether appends are checked at all.
    pub fn enabled(&self) -> bool {
        self.window_us > 0
    }

    /// The window in microseconds (0 when off).
    pub fn window_us(&self) -> i64 {
        self.window_us
    }

    /// Forgets every id and switches to `window_us` (0 turns the index off
    /// and releases its memory).
    pub fn reset(&mut self, window_us: i64) {
        *self = DedupIndex {
            window_us: window_us.max(0),
            ..DedupIndex::default()
        };
    }

    /// Narrows the window without forgetting anything still inside it; the
    /// next [`expire`](Self::expire) drops what fell out.
    pub fn shrink(&mut self, window_us: i64) {
        self.window_us = self.window_us.min(window_us.max(0));
    }

    /// Drops the entries stored before `now_us - window`: they no longer
    /// count for a batch published at `now_us`. Amortised O(1) per entry.
    pub fn expire(&mut self, now_us: i64) {
        let cutoff = now_us.saturating_sub(self.window_us);
        while let Some((time, _, _)) = self.by_time.front() {
            if *time >= cutoff {
                break;
            }
            if let Some((_, offset, id)) = self.by_time.pop_front()
                && self.ids.get(&id) == Some(&offset)
            {
                self.ids.remove(&id);
            }
        }
    }

    /// Offset of the stored copy of `id`, if it is still in the index.
    /// Empty ids are never indexed: they mean "no id".
    pub fn get(&self, id: &str) -> Option<u64> {
        self.ids.get(id).copied()
    }

    /// Records that `id` was stored at `offset` at `publish_time_us`. Calls
    /// must come in publish-time order. When `id` is already indexed (the
    /// log held it twice, e.g. from a time the index was off), the first copy
    /// stays the original.
    pub fn insert(&mut self, id: &str, offset: u64, publish_time_us: i64) {
        if id.is_empty() || self.ids.contains_key(id) {
            return;
        }
        let id: Arc<str> = Arc::from(id);
        self.ids.insert(Arc::clone(&id), offset);
        self.by_time.push_back((publish_time_us, offset, id));
    }

    /// Number of ids indexed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_once_older_than_the_window() {
        let mut index = DedupIndex::default();
        assert!(!index.enabled());
        index.reset(100);
        index.insert("a", 0, 1_000);
        index.insert("b", 1, 1_050);
        index.insert("a", 7, 1_060);
        assert_eq!(index.get("a"), Some(0), "the first copy is the original");
        index.expire(1_100);
        assert_eq!(
            index.get("a"),
            Some(0),
            "exactly at the window's edge counts"
        );
        index.expire(1_101);
        assert_eq!(index.get("a"), None);
        assert_eq!(index.get("b"), Some(1));
        index.expire(1_151);
        assert_eq!(index.len(), 0);
        assert!(index.by_time.is_empty());
    }

    #[test]
    fn a_reinserted_id_is_not_dropped_by_its_old_entry() {
        let mut index = DedupIndex::default();
        index.reset(10);
        index.insert("x", 0, 100);
        index.expire(111);
        index.insert("x", 5, 111);
        index.expire(115);
        assert_eq!(index.get("x"), Some(5));
    }

    #[test]
    fn empty_ids_are_never_indexed_and_shrinking_keeps_entries() {
        let mut index = DedupIndex::default();
        index.reset(1_000);
        index.insert("", 0, 10);
        assert_eq!(index.get(""), None);
        index.insert("y", 1, 10);
        index.shrink(50);
        assert_eq!(index.window_us(), 50);
        assert_eq!(index.get("y"), Some(1));
        index.expire(61);
        assert_eq!(index.get("y"), None);
        index.reset(0);
        assert!(!index.enabled());
    }
}
