//! What of a group is written to disk, and when a delivery may go out.
//!
//! Storage layer (embedded backend), pure; part of the [`Dispatcher`]. The stored form
//! (`storage::embedded::meta::state`) is a header (cursor, first-delivery reservation)
//! plus one row per pending entry that needs one; each flush writes what
//! changed since the last one:
//!
//! - **Young entries get no row.** An offset read since the last flush
//!   that has not failed is covered by the header's cursor, which stays at
//!   or below the oldest such entry; most entries are acked before they
//!   age, so a consumer that keeps up costs one small header per flush. An
//!   entry that lives through a flush gets its row at the next one. After a
//!   crash, acks of the last flush interval may be redelivered
//!   (at-least-once).
//! - **Attempts never go backwards.** A first delivery (attempt 1) may go
//!   out only for an offset below the durable *reservation*, raised ahead
//!   of the cursor in bulk; any later delivery only when the entry's
//!   durable row already counts it (a failed entry's row is written with
//!   `attempts + 1`, the retry it waits for). After a crash, offsets below
//!   the reservation and every row count at least one delivery. So an
//!   event may count one attempt more after a crash, never one fewer.
//! - **One flush in flight** per group; its outcome ([`Dispatcher::durable`])
//!   makes rows and the reservation count, or puts the changes back to be
//!   written again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::super::meta::{StateDelta, StateHeader, StoredEntry};
use super::{Dispatcher, Entry, EntryState, REPLAY_BIT};
use crate::event::StoredEvent;

/// First deliveries reserved at once, ahead of the cursor.
const RESERVE_AHEAD: u64 = 4096;

/// How soon a group should flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flush {
    /// Nothing to write.
    Idle,
    /// Something changed: within the flush interval.
    Soon,
    /// A delivery waits for it: now.
    Now,
}

/// What the flush in flight writes.
#[derive(Debug, Default)]
pub struct FlushTicket {
    /// Rows written, with the attempts they count.
    writes: Vec<(u64, u32)>,
    /// Rows deleted.
    deletes: Vec<u64>,
    /// The reservation it writes.
    reserved: u64,
}

/// Persistence bookkeeping of a dispatcher.
#[derive(Debug)]
pub(super) struct Persist {
    generation: u64,
    /// Entries whose row must be (re)written.
    changed: BTreeSet<u64>,
    /// Rows to delete.
    deleted: BTreeSet<u64>,
    /// Live log entries without a row, read since the last flush.
    fresh: BTreeSet<u64>,
    /// Live log entries without a row, read before the last flush.
    aged: BTreeSet<u64>,
    /// First deliveries are reserved on disk below this offset.
    reserved: u64,
    /// Offsets below this may have been delivered once before a crash.
    maybe_delivered_below: u64,
    /// Header fields changed.
    dirty: bool,
    /// The last run ended with a graceful shutdown.
    clean: bool,
    in_flight: Option<FlushTicket>,
}

impl Persist {
    pub(super) fn new(cursor: u64) -> Persist {
        Persist {
            generation: 0,
            changed: BTreeSet::new(),
            deleted: BTreeSet::new(),
            fresh: BTreeSet::new(),
            aged: BTreeSet::new(),
            reserved: cursor,
            maybe_delivered_below: 0,
            dirty: false,
            clean: true,
            in_flight: None,
        }
    }

    pub(super) fn reserved(&self) -> u64 {
        self.reserved
    }

    pub(super) fn maybe_delivered_below(&self) -> u64 {
        self.maybe_delivered_below
    }

    /// The deliveries a stored row stands for: exact after a graceful
    /// shutdown, at least one after a crash.
    pub(super) fn restored_attempts(&self, stored: u32) -> u32 {
        if self.clean { stored } else { stored.max(1) }
    }

    /// A new entry. Log entries start without a row; replays get one at the
    /// next flush (their dead-letter record alone does not say they are
    /// being replayed).
    pub(super) fn added(&mut self, key: u64) {
        if key & REPLAY_BIT == 0 {
            self.fresh.insert(key);
        } else {
            self.changed.insert(key);
        }
        self.deleted.remove(&key);
    }

    /// An entry's row must be rewritten.
    pub(super) fn changed(&mut self, key: u64) {
        self.changed.insert(key);
    }

    /// An entry is gone; its row (if it has one, or one is being written)
    /// must go too.
    pub(super) fn removed(&mut self, key: u64, stored: bool) {
        self.changed.remove(&key);
        self.fresh.remove(&key);
        self.aged.remove(&key);
        let writing = self
            .in_flight
            .as_ref()
            .is_some_and(|t| t.writes.iter().any(|(k, _)| *k == key));
        if stored || writing {
            self.deleted.insert(key);
        }
    }

    /// The header changed (cursor or floor moved).
    pub(super) fn touch(&mut self) {
        self.dirty = true;
    }

    /// The cursor moved to `offset` by seek or retention.
    pub(super) fn reserve_from(&mut self, _offset: u64) {
        self.dirty = true;
    }
}

/// Whether the delivery an entry would make next is covered on disk.
pub(super) fn covered(entry: &Entry) -> bool {
    entry.attempts == 0 || entry.durable > entry.attempts
}

/// The attempts an entry's row counts: the deliveries made, plus the retry
/// it waits for (so that retry may go out before the next write). At a
/// clean shutdown, exactly the deliveries made.
fn row_attempts(entry: &Entry, exact: bool) -> u32 {
    match entry.state {
        _ if exact || entry.attempts == 0 => entry.attempts,
        EntryState::Leased { .. } => entry.attempts,
        _ => entry.attempts.saturating_add(1),
    }
}

impl Dispatcher {
    /// A group restored from its stored header, with no entries yet: add
    /// them with [`add_restored`](Self::add_restored) (log entries in offset
    /// order, so the first pending event of a key holds it again) and
    /// [`add_cold_replay`](Self::add_cold_replay). After an unclean stop
    /// (`clean` false), every row and every offset below the stored
    /// reservation counts at least one delivery.
    pub fn restore(header: &StateHeader, clean: bool, ordered: bool) -> Dispatcher {
        let mut d = Dispatcher::new(header.cursor);
        d.ordered = ordered;
        d.persist.generation = header.generation;
        d.persist.reserved = header.reserved;
        d.persist.clean = clean;
        if !clean {
            d.persist.maybe_delivered_below = header.reserved;
        }
        d.persist.dirty = true;
        d
    }

    /// Adds an entry from its row and its event (re-read from the log, or
    /// the dead-letter copy of a replay). Retry times are wall clock on disk
    /// and mapped onto `now`; a retry due in the past is ready at once.
    pub fn add_restored(
        &mut self,
        row: &StoredEntry,
        event: Arc<StoredEvent>,
        now: Instant,
        now_us: i64,
    ) {
        let mut entry = Entry::new(event);
        entry.attempts = self.persist.restored_attempts(row.attempts);
        entry.durable = row.attempts;
        entry.stored = true;
        entry.first_failure_us = row.first_failure_us;
        entry.last_reason = row.last_reason.clone();
        if let Some(due_us) = row.due_us.filter(|due| *due > now_us) {
            let wait = u64::try_from(due_us - now_us).unwrap_or(0);
            entry.state = EntryState::Delayed(now + Duration::from_micros(wait));
        }
        self.enqueue(row.key, entry);
        self.advance_floor();
    }

    /// A stored row whose event is gone (deleted by retention, or a purged
    /// dead letter): the row goes too.
    pub fn drop_row(&mut self, key: u64) {
        self.persist.deleted.insert(key);
    }

    /// Tests: first deliveries reserved without a flush.
    #[cfg(test)]
    pub(super) fn reserve_all_for_test(&mut self) {
        self.persist.reserved = u64::MAX / 2;
    }

    /// Sets the group's generation (written into every header).
    pub fn set_generation(&mut self, generation: u64) {
        self.persist.generation = generation;
    }

    /// How soon the group should write: now when a delivery waits for it
    /// (a retry to cover, or reading stopped at the reservation while
    /// consumers have room), soon when anything changed.
    pub fn flush_need(&self) -> Flush {
        let p = &self.persist;
        if p.in_flight.is_some() {
            return Flush::Idle;
        }
        let starved = self.cursor >= p.reserved && self.credit() > 0;
        if !self.awaiting.is_empty() || starved {
            return Flush::Now;
        }
        let low = p.reserved.saturating_sub(self.cursor) < RESERVE_AHEAD / 2 && self.credit() > 0;
        if p.dirty
            || low
            || !p.changed.is_empty()
            || !p.deleted.is_empty()
            || !p.fresh.is_empty()
            || !p.aged.is_empty()
        {
            return Flush::Soon;
        }
        Flush::Idle
    }

    /// The writes of the next flush, or `None` when one is in flight or
    /// there is nothing to write. `exact` (graceful shutdown) writes every
    /// entry with the deliveries made, and the exact cursor.
    pub fn take_delta(&mut self, now: Instant, now_us: i64, exact: bool) -> Option<StateDelta> {
        if self.persist.in_flight.is_some() {
            return None;
        }
        if !exact && self.flush_need() == Flush::Idle {
            return None;
        }
        let p = &mut self.persist;
        let mut keys = std::mem::take(&mut p.changed);
        keys.append(&mut p.aged);
        if exact {
            // Every row says exactly what was delivered: rows written ahead
            // for a retry count one more.
            keys.append(&mut p.fresh);
            keys.extend(
                self.entries
                    .iter()
                    .filter(|(_, e)| e.stored && e.durable != e.attempts)
                    .map(|(k, _)| *k),
            );
        }
        for k in &keys {
            p.fresh.remove(k);
        }
        let mut upserts = Vec::with_capacity(keys.len());
        let mut writes = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(e) = self.entries.get(&key) else {
                if let Some(cold) = self.cold.get(&key) {
                    writes.push((key, cold.row.attempts));
                    upserts.push(cold.row.clone());
                }
                continue;
            };
            let attempts = row_attempts(e, exact);
            writes.push((key, attempts));
            upserts.push(StoredEntry {
                key,
                attempts,
                due_us: match e.state {
                    EntryState::Delayed(due) => {
                        let wait = due.saturating_duration_since(now).as_micros();
                        Some(now_us.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)))
                    }
                    _ => None,
                },
                first_failure_us: e.first_failure_us,
                last_reason: e.last_reason.clone(),
            });
        }
        let deletes: Vec<u64> = std::mem::take(&mut p.deleted).into_iter().collect();
        // What is still without a row is covered by the cursor.
        let cursor = p
            .fresh
            .first()
            .map_or(self.cursor, |k| (*k).min(self.cursor));
        p.aged = std::mem::take(&mut p.fresh);
        let reserved = if p.reserved.saturating_sub(self.cursor) < RESERVE_AHEAD / 2 {
            p.reserved.max(self.cursor + RESERVE_AHEAD)
        } else {
            p.reserved
        };
        p.dirty = false;
        p.in_flight = Some(FlushTicket {
            writes,
            deletes: deletes.clone(),
            reserved,
        });
        Some(StateDelta {
            header: StateHeader {
                generation: p.generation,
                floor: self.floor.min(cursor),
                cursor,
                reserved,
            },
            deletes,
            upserts,
        })
    }

    /// The outcome of the flush in flight: when durable, its rows and
    /// reservation count (and deliveries waiting for them may go); when it
    /// failed, everything it carried is written again with the next flush.
    pub fn durable(&mut self, ok: bool) {
        let Some(ticket) = self.persist.in_flight.take() else {
            return;
        };
        if !ok {
            let p = &mut self.persist;
            for (key, _) in ticket.writes {
                let live = self.entries.contains_key(&key) || self.cold.contains_key(&key);
                if live && !p.deleted.contains(&key) {
                    p.changed.insert(key);
                }
            }
            p.deleted.extend(ticket.deletes);
            p.dirty = true;
            return;
        }
        self.persist.reserved = self.persist.reserved.max(ticket.reserved);
        for (key, attempts) in ticket.writes {
            if self.persist.deleted.contains(&key) {
                continue;
            }
            if let Some(e) = self.entries.get_mut(&key) {
                e.stored = true;
                e.durable = e.durable.max(attempts);
            } else if let Some(cold) = self.cold.get_mut(&key) {
                cold.stored = true;
            }
        }
        let now_covered: Vec<u64> = self
            .awaiting
            .iter()
            .copied()
            .filter(|k| self.entries.get(k).is_some_and(covered))
            .collect();
        for key in now_covered {
            self.awaiting.remove(&key);
            self.ready.insert(key);
        }
    }
}
