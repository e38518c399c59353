//! The idempotent-publish index of one log: which event ids were stored
//! within the dedup window, and at which offset.
//!
//! Storage layer, owned by the writer thread (`writer.rs`), so checking an id
//! and storing it is one step: two concurrent appends of the same id cannot
//! both store it. When the window is zero the index is off and holds nothing.
//!
//! **Compact.** Ids are not kept, only a 128-bit keyed hash of each
//! ([`IdHasher`]: SipHash-1-3 with 128-bit output under a random key chosen
//! per log when it is opened). The entries (hash, offset, publish time: 32
//! bytes) sit in a queue in publish-time order, for expiry from the front,
//! and a hash table of 4-byte sequence numbers points into the queue: about
//! 40 bytes per id whatever the id's length, against 130–140 bytes for a
//! UUID-sized id (more for longer ids) when the ids themselves were kept.
//! Two different ids are taken for the same one only if their hashes
//! collide: with 128 bits that takes about 2^64 ids in one window, and the
//! secret key keeps a client from choosing ids that collide on purpose (an
//! unkeyed or 64-bit hash would allow either).
//!
//! **Capped.** At most `max_ids` entries ([`LogOptions::dedup_max_ids`]):
//! when the cap is reached the oldest entry goes first, so the effective
//! window shrinks to what the cap holds under a high publish rate (the
//! writer logs a warning, at most once per ten minutes per log).
//!
//! "Within the window" means: an entry stored at publish time `p` still
//! counts for a batch whose publish time is `t` when `p >= t - window`.
//!
//! [`LogOptions::dedup_max_ids`]: super::LogOptions::dedup_max_ids

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use siphasher::sip128::{Hasher128, SipHasher13};

/// The 128-bit keyed hash of an event id.
pub type IdHash = u128;

/// Hashes event ids for the index: SipHash-1-3, 128-bit output, under a
/// random 128-bit key.
#[derive(Clone)]
pub struct IdHasher {
    k0: u64,
    k1: u64,
}

impl IdHasher {
    /// A hasher with a fresh random key, taken from the standard library's
    /// randomly seeded `RandomState` (itself SipHash under keys from the OS).
    pub fn random() -> Self {
        let state = std::collections::hash_map::RandomState::new();
        IdHasher {
            k0: state.hash_one(0x5eed_u64),
            k1: state.hash_one(0x1d_u64),
        }
    }

    pub fn hash(&self, id: &str) -> IdHash {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(id.as_bytes());
        h.finish128().as_u128()
    }
}

/// One stored id.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: IdHash,
    offset: u64,
    publish_time_us: i64,
}

/// Ids stored within the window, with their offsets.
#[derive(Debug)]
pub struct DedupIndex {
    /// The window in microseconds; 0 means the index is off.
    window_us: i64,
    /// Most entries kept; the oldest go first beyond it.
    max_ids: usize,
    /// In publish-time (and offset) order.
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`; the entry at index `i` has number
    /// `head + i` (wrapping; `max_ids` stays below 2^32).
    head: u32,
    /// Sequence numbers of every entry, hashed by the low 64 bits of its
    /// hash.
    table: HashTable<u32>,
    /// Entries dropped by the cap (rather than by expiry) since open.
    evicted: u64,
}

/// The hash table's hash of an entry (the id hash is already uniform).
fn table_hash(hash: IdHash) -> u64 {
    hash as u64
}

impl DedupIndex {
    /// An index that is off, keeping at most `max_ids` (at most `u32::MAX`)
    /// entries once on.
    pub fn new(max_ids: usize) -> Self {
        DedupIndex {
            window_us: 0,
            max_ids: max_ids.min(u32::MAX as usize),
            entries: VecDeque::new(),
            head: 0,
            table: HashTable::new(),
            evicted: 0,
        }
    }

    /// Whether appends are checked at all.
    pub fn enabled(&self) -> bool {
        self.window_us > 0
    }

    /// The window in microseconds (0 when off).
    pub fn window_us(&self) -> i64 {
        self.window_us
    }

    /// Forgets every id and switches to `window_us` (0 turns the index off);
    /// releases the memory.
    pub fn reset(&mut self, window_us: i64) {
        *self = DedupIndex {
            window_us: window_us.max(0),
            evicted: self.evicted,
            ..DedupIndex::new(self.max_ids)
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
        while self
            .entries
            .front()
            .is_some_and(|e| e.publish_time_us < cutoff)
        {
            self.pop_front();
        }
    }

    /// Position in `entries` of the entry for `hash`.
    fn find(&self, hash: IdHash) -> Option<usize> {
        let head = self.head;
        self.table
            .find(table_hash(hash), |&seq| {
                self.entries
                    .get(seq.wrapping_sub(head) as usize)
                    .is_some_and(|e| e.hash == hash)
            })
            .map(|&seq| seq.wrapping_sub(head) as usize)
    }

    /// Offset of the stored copy of the id hashed to `hash`, if indexed.
    #[cfg(test)]
    pub fn get(&self, hash: IdHash) -> Option<u64> {
        self.find(hash)
            .and_then(|i| self.entries.get(i))
            .map(|e| e.offset)
    }

    /// Checks and records in one step: returns the original's offset when
    /// the id hashed to `hash` is indexed at an offset `>= start` (a
    /// duplicate); otherwise records it at `offset`, published at
    /// `publish_time_us`, and returns `None`. An entry below `start` (its
    /// event was deleted by retention) is taken over by the new copy.
    /// Calls must come in publish-time order.
    pub fn check_and_insert(
        &mut self,
        hash: IdHash,
        offset: u64,
        publish_time_us: i64,
        start: u64,
    ) -> Option<u64> {
        if let Some(i) = self.find(hash) {
            let entry = self.entries.get_mut(i)?;
            if entry.offset >= start {
                return Some(entry.offset);
            }
            // Keeps its place (and so expires a little early).
            entry.offset = offset;
            return None;
        }
        if self.max_ids == 0 {
            return None;
        }
        if self.entries.len() >= self.max_ids {
            self.pop_front();
            self.evicted += 1;
        }
        if self.entries.len() == self.entries.capacity() {
            // Grow by doubling, but never past the cap.
            let want = (self.entries.len() * 2).max(64).min(self.max_ids);
            self.entries
                .reserve_exact(want.saturating_sub(self.entries.len()));
        }
        let seq = self.head.wrapping_add(self.entries.len() as u32);
        self.entries.push_back(Entry {
            hash,
            offset,
            publish_time_us,
        });
        let (entries, head) = (&self.entries, self.head);
        self.table.insert_unique(table_hash(hash), seq, |&s| {
            entries
                .get(s.wrapping_sub(head) as usize)
                .map_or(0, |e| table_hash(e.hash))
        });
        None
    }

    /// Forgets the entries at offsets `>= from` (a batch that was indexed
    /// but never written). They are the newest, at the back.
    pub fn forget_from(&mut self, from: u64) {
        while self.entries.back().is_some_and(|e| e.offset >= from) {
            let seq = self
                .head
                .wrapping_add(self.entries.len().saturating_sub(1) as u32);
            if let Some(e) = self.entries.pop_back()
                && let Ok(found) = self.table.find_entry(table_hash(e.hash), |&s| s == seq)
            {
                found.remove();
            }
        }
    }

    fn pop_front(&mut self) {
        let seq = self.head;
        if let Some(e) = self.entries.pop_front() {
            if let Ok(found) = self.table.find_entry(table_hash(e.hash), |&s| s == seq) {
                found.remove();
            }
            self.head = self.head.wrapping_add(1);
        }
    }

    /// Number of ids indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries dropped by the cap since the log was opened.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Publish time of the oldest entry: with the cap reached, the index
    /// covers `now - this` instead of the whole window.
    pub fn oldest_publish_time(&self) -> Option<i64> {
        self.entries.front().map(|e| e.publish_time_us)
    }

    /// The cap.
    pub fn max_ids(&self) -> usize {
        self.max_ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(window_us: i64, max_ids: usize) -> (DedupIndex, IdHasher) {
        let mut index = DedupIndex::new(max_ids);
        index.reset(window_us);
        (index, IdHasher::random())
    }

    #[test]
    fn entries_expire_once_older_than_the_window() {
        let (mut index, h) = index(100, 1000);
        assert_eq!(index.check_and_insert(h.hash("a"), 0, 1_000, 0), None);
        assert_eq!(index.check_and_insert(h.hash("b"), 1, 1_050, 0), None);
        assert_eq!(
            index.check_and_insert(h.hash("a"), 7, 1_060, 0),
            Some(0),
            "the first copy is the original"
        );
        index.expire(1_100);
        assert_eq!(
            index.get(h.hash("a")),
            Some(0),
            "exactly at the window's edge counts"
        );
        index.expire(1_101);
        assert_eq!(index.get(h.hash("a")), None);
        assert_eq!(index.get(h.hash("b")), Some(1));
        index.expire(1_151);
        assert_eq!(index.len(), 0);
        assert!(index.table.is_empty());
    }

    #[test]
    fn a_reinserted_id_is_not_dropped_by_its_old_entry() {
        let (mut index, h) = index(10, 1000);
        index.check_and_insert(h.hash("x"), 0, 100, 0);
        index.expire(111);
        index.check_and_insert(h.hash("x"), 5, 111, 0);
        index.expire(115);
        assert_eq!(index.get(h.hash("x")), Some(5));
    }

    #[test]
    fn shrinking_keeps_entries_and_an_original_before_start_is_replaced() {
        let (mut index, h) = index(1_000, 1000);
        index.check_and_insert(h.hash("y"), 1, 10, 0);
        index.shrink(50);
        assert_eq!(index.window_us(), 50);
        assert_eq!(index.get(h.hash("y")), Some(1));
        // Retention deleted offset 1: the id is new again, at 9.
        assert_eq!(index.check_and_insert(h.hash("y"), 9, 20, 5), None);
        assert_eq!(index.check_and_insert(h.hash("y"), 10, 21, 5), Some(9));
        index.expire(61);
        assert_eq!(index.get(h.hash("y")), None);
        index.reset(0);
        assert!(!index.enabled());
    }

    #[test]
    fn the_cap_drops_the_oldest_first_and_lookups_stay_right() {
        let (mut index, h) = index(i64::MAX, 100);
        for i in 0..1000u64 {
            assert_eq!(
                index.check_and_insert(h.hash(&format!("id{i}")), i, i as i64, 0),
                None
            );
            assert!(index.len() <= 100);
        }
        assert_eq!(index.len(), 100);
        assert_eq!(index.evicted(), 900);
        assert_eq!(index.oldest_publish_time(), Some(900));
        for i in 0..1000u64 {
            let expected = (i >= 900).then_some(i);
            assert_eq!(index.get(h.hash(&format!("id{i}"))), expected, "id{i}");
        }
        assert_eq!(index.table.len(), 100);
        assert!(
            index.entries.capacity() <= 100,
            "the queue never outgrows the cap"
        );
    }

    #[test]
    fn forgetting_a_failed_batch_drops_only_its_entries() {
        let (mut index, h) = index(i64::MAX, 1000);
        for i in 0..10u64 {
            index.check_and_insert(h.hash(&format!("id{i}")), i, 1, 0);
        }
        index.forget_from(7);
        assert_eq!(index.len(), 7);
        assert_eq!(index.get(h.hash("id6")), Some(6));
        assert_eq!(index.get(h.hash("id7")), None);
        assert_eq!(index.check_and_insert(h.hash("id8"), 7, 2, 0), None);
        assert_eq!(index.get(h.hash("id8")), Some(7));
    }

    #[test]
    fn hashes_are_keyed_per_hasher() {
        let (a, b) = (IdHasher::random(), IdHasher::random());
        assert_eq!(a.hash("order-1"), a.hash("order-1"));
        assert_ne!(a.hash("order-1"), a.hash("order-2"));
        assert_ne!(a.hash("order-1"), b.hash("order-1"), "a fresh key per log");
    }
}

#[cfg(test)]
mod memory {
    //! Measures the heap bytes per indexed id with a counting allocator
    //! (per thread, so concurrent tests do not disturb it).
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use super::{DedupIndex, IdHasher};

    struct Counting;

    thread_local! {
        static NET: Cell<isize> = const { Cell::new(0) };
    }

    fn add(n: isize) {
        let _ = NET.try_with(|c| c.set(c.get() + n));
    }

    // SAFETY: forwards every call to the system allocator unchanged; the
    // counter is a const-initialised thread-local without a destructor, so
    // touching it never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
            add(new as isize - layout.size() as isize);
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Heap bytes per id of an index holding `n` UUID-sized ids.
    fn bytes_per_id(n: u64, max_ids: usize) -> f64 {
        let hasher = IdHasher::random();
        let hashes: Vec<u128> = (0..n)
            .map(|i| hasher.hash(&format!("0192f0c4-7d1e-7000-8000-{i:012}")))
            .collect();
        let before = NET.with(Cell::get);
        let mut index = DedupIndex::new(max_ids);
        index.reset(i64::MAX);
        for (i, hash) in hashes.iter().enumerate() {
            index.check_and_insert(*hash, i as u64, i as i64, 0);
        }
        let after = NET.with(Cell::get);
        assert_eq!(index.len() as u64, n.min(max_ids as u64));
        (after - before) as f64 / index.len() as f64
    }

    #[test]
    fn an_id_costs_well_under_64_bytes() {
        let default_cap = crate::storage::embedded::log::LogOptions::default().dedup_max_ids;
        for n in [100_000, 200_000, 500_000] {
            let per_id = bytes_per_id(n, default_cap);
            eprintln!("dedup index: {n} ids, {per_id:.1} bytes per id");
            assert!(per_id < 64.0, "{per_id} bytes per id at {n} ids");
        }
        // Full at the default cap: the whole index stays under 64 MiB.
        let per_id = bytes_per_id(default_cap as u64, default_cap);
        let total = per_id * default_cap as f64;
        eprintln!(
            "dedup index at the default cap of {default_cap} ids: {per_id:.1} bytes per id, {:.1} MiB",
            total / f64::from(1 << 20)
        );
        assert!(total < f64::from(64 << 20), "{total} bytes");
    }
}
