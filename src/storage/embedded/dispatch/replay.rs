//! Replays of dead letters inside the state machine: a replay is an entry
//! keyed `REPLAY_BIT | dead-letter id` whose event is the dead letter's
//! copy. A replay waits *cold* (a row, no event in memory) until the owner
//! task loads its event within the group's memory budget, so replaying a
//! million dead letters holds a million small rows, not a million events.
//!
//! Storage layer (embedded backend), pure; part of the [`Dispatcher`].

use std::sync::Arc;

use tokio::time::Instant;

use super::super::meta::StoredEntry;
use super::{Dispatcher, Entry, REPLAY_BIT};
use crate::event::StoredEvent;

/// A replay whose event is not loaded yet.
#[derive(Debug, Clone)]
pub(super) struct ColdReplay {
    /// Its row as written (or to be written).
    pub row: StoredEntry,
    /// The row is durable.
    pub stored: bool,
    /// The row was read at start-up (its attempts follow the restore rule).
    pub restored: bool,
}

impl Dispatcher {
    /// Puts a replayed dead letter back into the flow with attempts reset,
    /// its event in hand. Returns false when that replay is already pending.
    pub fn add_replay(&mut self, dead_letter_id: u64, event: Arc<StoredEvent>) -> bool {
        let key = REPLAY_BIT | dead_letter_id;
        if self.entries.contains_key(&key) || self.cold.contains_key(&key) {
            return false;
        }
        self.persist.added(key);
        self.enqueue(key, Entry::new(event));
        true
    }

    /// Queues a replay whose event is loaded later
    /// ([`warm_replay`](Self::warm_replay)); its row is written with the
    /// next flush. Returns false when that replay is already pending.
    pub fn queue_replay(&mut self, dead_letter_id: u64) -> bool {
        let key = REPLAY_BIT | dead_letter_id;
        if self.entries.contains_key(&key) || self.cold.contains_key(&key) {
            return false;
        }
        let row = StoredEntry {
            key,
            ..StoredEntry::default()
        };
        self.cold.insert(
            key,
            ColdReplay {
                row,
                stored: false,
                restored: false,
            },
        );
        self.persist.changed(key);
        true
    }

    /// A replay row read at start-up, waiting for its event.
    pub fn add_cold_replay(&mut self, row: StoredEntry) {
        self.cold.insert(
            row.key,
            ColdReplay {
                row,
                stored: true,
                restored: true,
            },
        );
    }

    /// Dead-letter ids of up to `limit` replays waiting for their events.
    pub fn cold_replays(&self, limit: usize) -> Vec<u64> {
        self.cold
            .keys()
            .take(limit)
            .map(|k| k & !REPLAY_BIT)
            .collect()
    }

    /// Number of replays waiting for their events.
    pub fn cold_count(&self) -> usize {
        self.cold.len()
    }

    /// The event of a waiting replay was loaded: it joins the flow.
    pub fn warm_replay(
        &mut self,
        dead_letter_id: u64,
        event: Arc<StoredEvent>,
        now: Instant,
        now_us: i64,
    ) {
        let key = REPLAY_BIT | dead_letter_id;
        let Some(cold) = self.cold.remove(&key) else {
            return;
        };
        if cold.restored {
            self.add_restored(&cold.row, event, now, now_us);
            return;
        }
        let mut entry = Entry::new(event);
        entry.stored = cold.stored;
        self.enqueue(key, entry);
    }

    /// A waiting replay whose dead letter is gone: forgotten, row deleted.
    pub fn drop_cold_replay(&mut self, dead_letter_id: u64) {
        let key = REPLAY_BIT | dead_letter_id;
        if let Some(cold) = self.cold.remove(&key) {
            self.persist.removed(key, cold.stored);
        }
    }
}
