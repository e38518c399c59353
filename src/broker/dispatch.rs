//! The group state machine: which events of a group are pending, leased,
//! waiting for a retry or acknowledged, and which consumer gets what.
//!
//! Broker layer, no I/O and no clock of its own: every method that depends on
//! time takes `now`, so the owner task (`group.rs`) and tests under paused
//! tokio time drive it deterministically.
//!
//! Invariants:
//! - every offset below `floor` is done (acked, filtered or dead-lettered);
//! - `entries` holds exactly the offsets in `[floor, cursor)` that are not done;
//! - an entry is in exactly one of `ready`, `delayed` or `leases`;
//! - a consumer's `in_flight` equals the number of leases it holds.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::RetryPolicy;
use super::lease::LeaseOutcome;
use crate::event::StoredEvent;

/// Runtime id of a consumer within its group.
pub type ConsumerId = u64;

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryState {
    /// Can be handed out now.
    Ready,
    /// Waits for a retry until the instant.
    Delayed(Instant),
    /// Leased to a consumer until the deadline.
    Leased {
        lease: u64,
        consumer: ConsumerId,
        deadline: Instant,
    },
}

/// A pending (not yet done) event of the group.
#[derive(Debug)]
struct Entry {
    event: Arc<StoredEvent>,
    /// Deliveries made so far; the next delivery is attempt `attempts + 1`.
    attempts: u32,
    state: EntryState,
}

/// One delivery handed to a consumer.
#[derive(Debug, Clone)]
pub struct Handout {
    /// The event.
    pub event: Arc<StoredEvent>,
    /// Lease number (goes into the ack id).
    pub lease: u64,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Lease deadline.
    pub deadline: Instant,
}

#[derive(Debug)]
struct ConsumerSlot {
    max_in_flight: usize,
    in_flight: usize,
}

/// Counters since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Deliveries made.
    pub delivered: u64,
    /// Events acknowledged.
    pub acked: u64,
    /// Nacks accepted.
    pub nacked: u64,
    /// Deliveries with attempt > 1.
    pub redelivered: u64,
    /// Leases that ran out.
    pub expired_leases: u64,
    /// Events skipped by the filter.
    pub filtered: u64,
}

/// What is persisted of a group: enough to continue after a restart
/// redelivering only what was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Every offset below is done.
    pub floor: u64,
    /// Next offset to read from the log.
    pub cursor: u64,
    /// Offsets in `[floor, cursor)` not done yet, with their attempt counts.
    pub pending: Vec<(u64, u32)>,
}

/// The state machine of one consumer group.
#[derive(Debug)]
pub struct Dispatcher {
    floor: u64,
    cursor: u64,
    entries: BTreeMap<u64, Entry>,
    ready: BTreeSet<u64>,
    delayed: BTreeSet<(Instant, u64)>,
    leases: BTreeSet<(Instant, u64)>,
    consumers: HashMap<ConsumerId, ConsumerSlot>,
    /// Round-robin order of consumers.
    order: VecDeque<ConsumerId>,
    next_lease: u64,
    /// Most deliveries put in one batch to one consumer.
    max_batch: usize,
    counters: Counters,
    /// Set when something that is persisted changed since the last snapshot.
    dirty: bool,
}

impl Dispatcher {
    /// A group positioned at `cursor` with nothing pending.
    pub fn new(cursor: u64) -> Dispatcher {
        Dispatcher {
            floor: cursor,
            cursor,
            entries: BTreeMap::new(),
            ready: BTreeSet::new(),
            delayed: BTreeSet::new(),
            leases: BTreeSet::new(),
            consumers: HashMap::new(),
            order: VecDeque::new(),
            next_lease: 1,
            max_batch: 256,
            counters: Counters::default(),
            dirty: false,
        }
    }

    /// Restores a group from its snapshot; `events` are the pending events
    /// re-read from the log (those missing, e.g. deleted by retention, are
    /// treated as done).
    pub fn restore(snapshot: &Snapshot, events: Vec<Arc<StoredEvent>>) -> Dispatcher {
        let mut d = Dispatcher::new(snapshot.cursor);
        let attempts: HashMap<u64, u32> = snapshot.pending.iter().copied().collect();
        for event in events {
            let offset = event.offset;
            if let Some(&attempts) = attempts.get(&offset) {
                d.entries.insert(
                    offset,
                    Entry {
                        event,
                        attempts,
                        state: EntryState::Ready,
                    },
                );
                d.ready.insert(offset);
            }
        }
        d.advance_floor();
        d.dirty = d.floor != snapshot.floor;
        d
    }

    /// Next offset to read from the log.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Every offset below is done.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Number of leases out.
    pub fn in_flight(&self) -> usize {
        self.leases.len()
    }

    /// Number of pending (not done) events read from the log so far.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    /// Connected consumers.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Publish time of the oldest pending event, if any was read.
    pub fn oldest_pending_us(&self) -> Option<i64> {
        self.entries
            .values()
            .next()
            .map(|e| e.event.publish_time_us)
    }

    /// Free delivery slots over all consumers.
    pub fn credit(&self) -> usize {
        self.consumers
            .values()
            .map(|c| c.max_in_flight.saturating_sub(c.in_flight))
            .sum()
    }

    /// How many more events should be read from the log now: enough to fill
    /// every consumer's free slots, no more (so an idle group holds nothing).
    pub fn wanted(&self) -> usize {
        self.credit().saturating_sub(self.ready.len())
    }

    /// Appends events read from the log at the cursor. Events the group does
    /// not want (`wants` is false) are done at once and counted as filtered.
    pub fn add_events(
        &mut self,
        events: Vec<Arc<StoredEvent>>,
        wants: impl Fn(&StoredEvent) -> bool,
    ) {
        for event in events {
            if event.offset < self.cursor {
                continue;
            }
            self.cursor = event.offset + 1;
            if !wants(&event) {
                self.counters.filtered += 1;
                continue;
            }
            let offset = event.offset;
            self.entries.insert(
                offset,
                Entry {
                    event,
                    attempts: 0,
                    state: EntryState::Ready,
                },
            );
            self.ready.insert(offset);
        }
        self.advance_floor();
        self.dirty = true;
    }

    /// Skips the cursor forward to `offset` (events between were deleted by
    /// retention); returns how many were skipped.
    pub fn skip_to(&mut self, offset: u64) -> u64 {
        if offset <= self.cursor {
            return 0;
        }
        let skipped = offset - self.cursor;
        self.cursor = offset;
        self.advance_floor();
        self.dirty = true;
        skipped
    }

    /// Registers a consumer with its in-flight limit.
    pub fn add_consumer(&mut self, id: ConsumerId, max_in_flight: usize) {
        self.consumers.insert(
            id,
            ConsumerSlot {
                max_in_flight: max_in_flight.max(1),
                in_flight: 0,
            },
        );
        self.order.push_back(id);
    }

    /// Removes a consumer; its leases go back to ready at once (a dropped
    /// stream must not make the group wait for the deadline). Returns how
    /// many leases were released.
    pub fn remove_consumer(&mut self, id: ConsumerId) -> usize {
        if self.consumers.remove(&id).is_none() {
            return 0;
        }
        self.order.retain(|c| *c != id);
        let held: Vec<(Instant, u64)> = self
            .leases
            .iter()
            .filter(|(_, offset)| {
                matches!(self.entries.get(offset).map(|e| e.state),
                    Some(EntryState::Leased { consumer, .. }) if consumer == id)
            })
            .copied()
            .collect();
        for (deadline, offset) in &held {
            self.leases.remove(&(*deadline, *offset));
            if let Some(entry) = self.entries.get_mut(offset) {
                entry.state = EntryState::Ready;
                self.ready.insert(*offset);
            }
        }
        held.len()
    }

    /// Hands ready events to consumers with free slots, round robin, at most
    /// `max_batch` per consumer per round. Returns one batch per consumer.
    pub fn dispatch(
        &mut self,
        now: Instant,
        lease_for: Duration,
    ) -> Vec<(ConsumerId, Vec<Handout>)> {
        let mut out: Vec<(ConsumerId, Vec<Handout>)> = Vec::new();
        let mut idle_rounds = 0;
        while !self.ready.is_empty() && idle_rounds < self.order.len() {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            self.order.push_back(id);
            let Some(slot) = self.consumers.get_mut(&id) else {
                continue;
            };
            let room = slot.max_in_flight.saturating_sub(slot.in_flight);
            if room == 0 {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            let take = room.min(self.max_batch);
            let deadline = now + lease_for;
            let mut batch = Vec::with_capacity(take.min(self.ready.len()));
            while batch.len() < take {
                let Some(offset) = self.ready.pop_first() else {
                    break;
                };
                let Some(entry) = self.entries.get_mut(&offset) else {
                    continue;
                };
                let lease = self.next_lease;
                self.next_lease += 1;
                entry.attempts = entry.attempts.saturating_add(1);
                entry.state = EntryState::Leased {
                    lease,
                    consumer: id,
                    deadline,
                };
                self.leases.insert((deadline, offset));
                self.counters.delivered += 1;
                if entry.attempts > 1 {
                    self.counters.redelivered += 1;
                }
                batch.push(Handout {
                    event: entry.event.clone(),
                    lease,
                    attempt: entry.attempts,
                    deadline,
                });
            }
            slot.in_flight += batch.len();
            if !batch.is_empty() {
                self.dirty = true;
                match out.iter_mut().find(|(c, _)| *c == id) {
                    Some((_, existing)) => existing.extend(batch),
                    None => out.push((id, batch)),
                }
            }
        }
        out
    }

    /// Looks up the current lease of `offset`; `Err` is the outcome to report
    /// when `lease` is not it.
    fn current_lease(
        &self,
        offset: u64,
        lease: u64,
    ) -> Result<(ConsumerId, Instant), LeaseOutcome> {
        match self.entries.get(&offset) {
            None if offset < self.cursor => Err(LeaseOutcome::AlreadyDone),
            None => Err(LeaseOutcome::Unknown),
            Some(_) if lease == 0 || lease >= self.next_lease => Err(LeaseOutcome::Unknown),
            Some(entry) => match entry.state {
                EntryState::Leased {
                    lease: current,
                    consumer,
                    deadline,
                } if current == lease => Ok((consumer, deadline)),
                _ => Err(LeaseOutcome::Stale),
            },
        }
    }

    /// Ends the lease on `offset` if one is out, freeing the consumer's slot.
    fn drop_lease(&mut self, offset: u64) {
        if let Some(entry) = self.entries.get(&offset)
            && let EntryState::Leased {
                consumer, deadline, ..
            } = entry.state
        {
            self.leases.remove(&(deadline, offset));
            if let Some(slot) = self.consumers.get_mut(&consumer) {
                slot.in_flight = slot.in_flight.saturating_sub(1);
            }
        }
    }

    /// Acknowledges a delivery. An ack of an older lease of an event that is
    /// still pending is honoured too: the consumer did the work, so the event
    /// is done (the current holder's own ack then reports `AlreadyDone`).
    pub fn ack(&mut self, offset: u64, lease: u64) -> LeaseOutcome {
        match self.current_lease(offset, lease) {
            Ok(_) | Err(LeaseOutcome::Stale) => {
                self.drop_lease(offset);
                self.remove_entry(offset);
                self.counters.acked += 1;
                LeaseOutcome::Ok
            }
            Err(outcome) => outcome,
        }
    }

    /// Negative ack: the event is retried after `delay` (or the policy's
    /// backoff for the attempt that failed). Only the current lease counts.
    pub fn nack(
        &mut self,
        offset: u64,
        lease: u64,
        delay: Option<Duration>,
        policy: &RetryPolicy,
        now: Instant,
    ) -> LeaseOutcome {
        if let Err(outcome) = self.current_lease(offset, lease) {
            return outcome;
        }
        self.drop_lease(offset);
        self.counters.nacked += 1;
        self.schedule_retry(offset, delay, policy, now);
        LeaseOutcome::Ok
    }

    /// Pushes the deadline of the current lease to `now + extension`.
    pub fn extend(
        &mut self,
        offset: u64,
        lease: u64,
        extension: Duration,
        now: Instant,
    ) -> Result<Instant, LeaseOutcome> {
        let (consumer, old) = self.current_lease(offset, lease)?;
        let deadline = now + extension;
        self.leases.remove(&(old, offset));
        self.leases.insert((deadline, offset));
        if let Some(entry) = self.entries.get_mut(&offset) {
            entry.state = EntryState::Leased {
                lease,
                consumer,
                deadline,
            };
        }
        Ok(deadline)
    }

    /// Expires leases whose deadline has passed (retry after backoff) and
    /// moves due retries to ready. Returns the number of expired leases.
    pub fn tick(&mut self, now: Instant, policy: &RetryPolicy) -> usize {
        let mut expired = 0;
        while let Some(&(deadline, offset)) = self.leases.first() {
            if deadline > now {
                break;
            }
            self.drop_lease(offset);
            self.counters.expired_leases += 1;
            self.schedule_retry(offset, None, policy, now);
            expired += 1;
        }
        while let Some(&(due, offset)) = self.delayed.first() {
            if due > now {
                break;
            }
            self.delayed.remove(&(due, offset));
            if let Some(entry) = self.entries.get_mut(&offset) {
                entry.state = EntryState::Ready;
                self.ready.insert(offset);
            }
        }
        expired
    }

    /// When `tick` next has work: the earliest lease deadline or retry.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let lease = self.leases.first().map(|(t, _)| *t);
        let retry = self.delayed.first().map(|(t, _)| *t);
        match (lease, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn schedule_retry(
        &mut self,
        offset: u64,
        delay: Option<Duration>,
        policy: &RetryPolicy,
        now: Instant,
    ) {
        let Some(entry) = self.entries.get_mut(&offset) else {
            return;
        };
        let wait = delay.unwrap_or_else(|| policy.delay(entry.attempts));
        if wait.is_zero() {
            entry.state = EntryState::Ready;
            self.ready.insert(offset);
        } else {
            let due = now + wait;
            entry.state = EntryState::Delayed(due);
            self.delayed.insert((due, offset));
        }
        self.dirty = true;
    }

    fn remove_entry(&mut self, offset: u64) {
        if let Some(entry) = self.entries.remove(&offset) {
            match entry.state {
                EntryState::Ready => {
                    self.ready.remove(&offset);
                }
                EntryState::Delayed(due) => {
                    self.delayed.remove(&(due, offset));
                }
                EntryState::Leased { .. } => {}
            }
        }
        self.advance_floor();
        self.dirty = true;
    }

    fn advance_floor(&mut self) {
        self.floor = self.entries.keys().next().copied().unwrap_or(self.cursor);
    }

    /// The persisted form, if anything changed since the last call.
    pub fn take_snapshot(&mut self) -> Option<Snapshot> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(self.snapshot())
    }

    /// The persisted form.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            floor: self.floor,
            cursor: self.cursor,
            pending: self
                .entries
                .iter()
                .map(|(offset, e)| (*offset, e.attempts))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
