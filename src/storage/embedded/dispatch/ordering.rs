//! Per-key ordering of a group's entries (DESIGN §1.6): the earliest pending
//! event of a key holds it while it is in flight or waiting for a retry;
//! later events of the key wait behind it; other keys flow freely.
//!
//! Storage layer (embedded backend), pure; part of the [`Dispatcher`].

use std::collections::VecDeque;

use super::{Dispatcher, Entry, EntryState, REPLAY_BIT};
use crate::event::StoredEvent;
use crate::model::results::BlockedKey;

/// The event that holds a key (in flight, waiting for a retry, or next to
/// go) and the later events of that key behind it.
#[derive(Debug, Default)]
pub(super) struct KeyHold {
    holder: u64,
    waiting: VecDeque<u64>,
}

impl Dispatcher {
    /// Ordered groups: the key an entry takes part in ordering with.
    fn order_key(&self, key: u64, event: &StoredEvent) -> Option<String> {
        (self.ordered && key & REPLAY_BIT == 0 && !event.event.key.is_empty())
            .then(|| event.event.key.clone())
    }

    /// Queues a new entry: behind the holder of its key, waiting for its
    /// retry, or ready (when its next delivery is covered on disk).
    pub(super) fn enqueue(&mut self, key: u64, mut entry: Entry) {
        self.held_bytes += entry.event.event.size();
        if let Some(k) = self.order_key(key, &entry.event) {
            match self.holds.get_mut(&k) {
                Some(hold) => {
                    hold.waiting.push_back(key);
                    entry.state = EntryState::Blocked;
                    self.entries.insert(key, entry);
                    return;
                }
                None => {
                    self.holds.insert(
                        k,
                        KeyHold {
                            holder: key,
                            waiting: VecDeque::new(),
                        },
                    );
                }
            }
        }
        let delayed = match entry.state {
            EntryState::Delayed(due) => Some(due),
            _ => None,
        };
        self.entries.insert(key, entry);
        match delayed {
            Some(due) => {
                self.delayed.insert((due, key));
            }
            None => self.make_ready(key),
        }
    }

    /// An entry is done: the next event of its key (if any) may go.
    pub(super) fn release_key(&mut self, key: u64, event: &StoredEvent) {
        let Some(k) = self.order_key(key, event) else {
            return;
        };
        let Some(hold) = self.holds.get_mut(&k) else {
            return;
        };
        if hold.holder != key {
            hold.waiting.retain(|w| *w != key);
            return;
        }
        match hold.waiting.pop_front() {
            Some(next) => {
                hold.holder = next;
                if self.entries.contains_key(&next) {
                    self.make_ready(next);
                }
            }
            None => {
                self.holds.remove(&k);
            }
        }
    }

    /// Keys whose holder has failed at least once while later events of the
    /// key wait behind it: (count, the `limit` oldest).
    pub fn blocked_keys(&self, limit: usize) -> (u64, Vec<BlockedKey>) {
        let mut blocked: Vec<BlockedKey> = self
            .holds
            .iter()
            .filter(|(_, h)| !h.waiting.is_empty())
            .filter_map(|(k, h)| {
                let e = self.entries.get(&h.holder)?;
                (e.first_failure_us != 0).then(|| BlockedKey {
                    key: k.clone(),
                    offset: h.holder,
                    attempts: e.attempts,
                    waiting: h.waiting.len() as u64,
                    since_us: e.first_failure_us,
                })
            })
            .collect();
        let count = blocked.len() as u64;
        blocked.sort_by_key(|b| b.offset);
        blocked.truncate(limit);
        (count, blocked)
    }
}
