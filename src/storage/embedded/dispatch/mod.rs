//! The group state machine: which events of a group are pending, leased,
//! waiting for a retry or acknowledged, which consumer gets what, and when an
//! event is given up on (dead-lettered).
//!
//! Storage layer (embedded backend), no I/O and no clock of its own: every method that depends on
//! time takes `now` (monotonic) and `now_us` (wall clock, for records), so
//! the owner task (`group/`) and tests under paused tokio time drive it
//! deterministically. Per-key ordering is in `ordering.rs`; what is persisted
//! and when a delivery may go out is in `persist.rs`.
//!
//! Entries are keyed by the event's offset, or, for events replayed from the
//! dead-letter queue, by [`REPLAY_BIT`] | dead-letter id (a replayed event is
//! a copy that lives beside the log; its offset is long done).
//!
//! Invariants:
//! - every offset below `floor` is done (acked, filtered or dead-lettered);
//! - `entries` holds exactly the offsets in `[floor, cursor)` that are not
//!   done, plus the pending replays;
//! - an entry is in exactly one of `ready`, `awaiting`, `delayed`, `leases`,
//!   or blocked behind its key;
//! - a consumer's `in_flight` equals the number of leases it holds;
//! - `held_bytes` is the sum of the sizes of the entries' events;
//! - a delivery goes out only when the attempt it makes is covered on disk
//!   (see `persist.rs`), so `delivery_attempt` never goes backwards after a
//!   crash.

mod ordering;
mod persist;
mod replay;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::event::StoredEvent;
use crate::model::backoff::RetryPolicy;
use crate::model::results::LeaseOutcome;

pub use super::meta::REPLAY_BIT;
pub use crate::model::results::BlockedKey;
pub use persist::{Flush, FlushTicket};

/// Runtime id of a consumer within its group.
pub type ConsumerId = u64;

/// Reason recorded when a lease runs out.
pub const REASON_EXPIRED: &str = "ack deadline exceeded";
/// Reason recorded when a consumer's stream ends while it holds a lease.
pub const REASON_DISCONNECTED: &str = "consumer disconnected";

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryState {
    /// Can be handed out now (in `ready`), or as soon as its next attempt is
    /// covered on disk (in `awaiting`).
    Ready,
    /// Waits for a retry until the instant.
    Delayed(Instant),
    /// Leased to a consumer until the deadline.
    Leased {
        lease: u64,
        consumer: ConsumerId,
        deadline: Instant,
    },
    /// Ordered groups: waits behind an earlier event with the same key.
    Blocked,
}

/// A pending (not yet done) event of the group.
#[derive(Debug)]
struct Entry {
    event: Arc<StoredEvent>,
    /// Deliveries made so far; the next delivery is attempt `attempts + 1`.
    /// Every delivery but the first follows a failure (nack, expiry or
    /// release), so once delivered this is 1 + failures.
    attempts: u32,
    state: EntryState,
    /// When the first attempt failed (µs since the epoch), 0 if none did.
    first_failure_us: i64,
    /// Why the last attempt failed.
    last_reason: String,
    /// Attempts its durable row covers (0 without a row).
    durable: u32,
    /// It has a durable row.
    stored: bool,
}

impl Entry {
    fn new(event: Arc<StoredEvent>) -> Entry {
        Entry {
            event,
            attempts: 0,
            state: EntryState::Ready,
            first_failure_us: 0,
            last_reason: String::new(),
            durable: 0,
            stored: false,
        }
    }
}

/// An event the group gave up on, handed to the owner task to store.
#[derive(Debug, Clone)]
pub struct Dead {
    /// Entry key (an offset, or a replay key).
    pub key: u64,
    /// The event.
    pub event: Arc<StoredEvent>,
    /// Deliveries made.
    pub attempts: u32,
    /// Last failure reason.
    pub reason: String,
    /// First failure, µs since the epoch.
    pub first_failure_us: i64,
    /// Last failure, µs since the epoch.
    pub last_failure_us: i64,
}

/// One delivery handed to a consumer.
#[derive(Debug, Clone)]
pub struct Handout {
    /// The event.
    pub event: Arc<StoredEvent>,
    /// Entry key (goes into the ack id).
    pub key: u64,
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
    /// Events moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Events dropped unacknowledged for being older than the group's
    /// `max_message_age`.
    pub too_old: u64,
}

/// Size limits of what a group holds and hands out.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most entries held in memory (bounds a group whose keys are stuck).
    pub max_pending: usize,
    /// Most bytes of events held in memory; reading stops at this.
    pub max_bytes: usize,
    /// Most deliveries in one batch.
    pub max_batch: usize,
    /// Most bytes of events in one batch (a larger event travels alone).
    pub max_batch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pending: 100_000,
            max_bytes: 64 << 20,
            max_batch: 256,
            max_batch_bytes: 3 << 20,
        }
    }
}

/// The state machine of one consumer group.
#[derive(Debug)]
pub struct Dispatcher {
    floor: u64,
    cursor: u64,
    entries: BTreeMap<u64, Entry>,
    ready: BTreeSet<u64>,
    /// Ready, but the attempt they would make is not yet covered on disk.
    awaiting: BTreeSet<u64>,
    delayed: BTreeSet<(Instant, u64)>,
    leases: BTreeSet<(Instant, u64)>,
    consumers: HashMap<ConsumerId, ConsumerSlot>,
    /// Round-robin order of consumers.
    order: VecDeque<ConsumerId>,
    next_lease: u64,
    /// Leases below this were issued before the last seek: unknown now.
    lease_floor: u64,
    limits: Limits,
    /// Bytes of the events of all entries.
    held_bytes: usize,
    /// Backoff after failures.
    retry: RetryPolicy,
    /// Deliveries after which a failure dead-letters the event; 0 = never.
    max_attempts: u32,
    /// Events published longer ago than this (µs) are dropped, not
    /// delivered; `None`: kept for the topic's retention.
    max_age_us: Option<i64>,
    /// Events given up on, waiting for the owner task to store them.
    dead: Vec<Dead>,
    /// Replays acknowledged, whose dead-letter records can go.
    acked_replays: Vec<u64>,
    /// Per-key ordering on.
    ordered: bool,
    /// Ordered groups: who holds each key.
    holds: HashMap<String, ordering::KeyHold>,
    counters: Counters,
    /// What must be written, and what is durable (`persist.rs`).
    persist: persist::Persist,
    /// Replays waiting for their events (`replay.rs`).
    cold: BTreeMap<u64, replay::ColdReplay>,
}

impl Dispatcher {
    /// A group positioned at `cursor` with nothing pending, default retry
    /// policy and limits, no attempt limit, and first deliveries reserved
    /// up to `cursor` (reserve more with a flush before reading).
    pub fn new(cursor: u64) -> Dispatcher {
        Dispatcher {
            floor: cursor,
            cursor,
            entries: BTreeMap::new(),
            ready: BTreeSet::new(),
            awaiting: BTreeSet::new(),
            delayed: BTreeSet::new(),
            leases: BTreeSet::new(),
            consumers: HashMap::new(),
            order: VecDeque::new(),
            next_lease: 1,
            lease_floor: 1,
            limits: Limits::default(),
            held_bytes: 0,
            retry: RetryPolicy::default(),
            max_attempts: 0,
            max_age_us: None,
            dead: Vec::new(),
            acked_replays: Vec::new(),
            ordered: false,
            holds: HashMap::new(),
            counters: Counters::default(),
            persist: persist::Persist::new(cursor),
            cold: BTreeMap::new(),
        }
    }

    /// Numbers this run's leases from `first` (a clock reading, so leases
    /// are unique across restarts: a lease of an earlier run is an older
    /// lease, and its late ack of a still pending event is honoured).
    pub fn start_leases_at(&mut self, first: u64) {
        self.next_lease = first.max(self.next_lease);
    }

    /// Sets the retry policy and the attempt limit (0 = never dead-letter).
    pub fn set_policy(&mut self, retry: RetryPolicy, max_attempts: u32) {
        self.retry = retry;
        self.max_attempts = max_attempts;
    }

    /// Sets the age past which an unacknowledged event is dropped instead
    /// of delivered (`None`: never). Replays of dead letters are exempt.
    pub fn set_max_age(&mut self, max_age: Option<Duration>) {
        self.max_age_us = max_age.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    }

    /// Events published before this (µs) are too old; `None`: no limit.
    fn oldest_us(&self) -> Option<i64> {
        self.max_age_us
            .map(|age| crate::event::now_us().saturating_sub(age))
    }

    /// Sets the size limits.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Turns per-key ordering on. Call before any event is added (the mode
    /// of a group is fixed at creation).
    pub fn set_ordered(&mut self, ordered: bool) {
        self.ordered = ordered;
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

    /// Number of pending (not done) entries.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of events held.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Connected consumers.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Publish time of the oldest pending event, if any.
    pub fn oldest_pending_us(&self) -> Option<i64> {
        self.entries.values().map(|e| e.event.publish_time_us).min()
    }

    /// Dead-letter ids of the replays still pending (loaded or not).
    pub fn pending_replays(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries
            .range(REPLAY_BIT..)
            .map(|(k, _)| k)
            .chain(self.cold.keys())
            .map(|k| k & !REPLAY_BIT)
    }

    /// Events given up on since the last call.
    pub fn take_dead(&mut self) -> Vec<Dead> {
        std::mem::take(&mut self.dead)
    }

    /// Replays acknowledged since the last call (dead-letter ids).
    pub fn take_acked_replays(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.acked_replays)
    }

    /// Free delivery slots over all consumers.
    pub fn credit(&self) -> usize {
        self.consumers
            .values()
            .map(|c| c.max_in_flight.saturating_sub(c.in_flight))
            .sum()
    }

    /// How many more events should be read from the log now: enough to fill
    /// every consumer's free slots, no more (so an idle group holds nothing),
    /// and none once the group holds its limit of entries or bytes, or has
    /// read as far as first deliveries are reserved.
    pub fn wanted(&self) -> usize {
        if self.held_bytes >= self.limits.max_bytes || self.cursor >= self.persist.reserved() {
            return 0;
        }
        self.credit()
            .saturating_sub(self.ready.len() + self.awaiting.len())
            .min(self.limits.max_pending.saturating_sub(self.entries.len()))
    }

    /// Bytes the next read may bring in (the read takes at least one event).
    pub fn room_bytes(&self) -> usize {
        self.limits.max_bytes.saturating_sub(self.held_bytes)
    }

    /// The offset reading must stop before: first deliveries are reserved
    /// on disk only that far.
    pub fn read_limit(&self) -> u64 {
        self.persist.reserved()
    }

    /// Appends events read from the log at the cursor. Events the group does
    /// not want (`wants` is false) are done at once and counted as filtered;
    /// events past the group's max age are done at once too (they take no
    /// consumer slot, so a backlog of them is passed over quickly).
    pub fn add_events(
        &mut self,
        events: Vec<Arc<StoredEvent>>,
        wants: impl Fn(&StoredEvent) -> bool,
    ) {
        let oldest_us = self.oldest_us();
        for event in events {
            if event.offset < self.cursor || event.offset >= self.persist.reserved() {
                continue;
            }
            self.cursor = event.offset + 1;
            if oldest_us.is_some_and(|oldest| event.publish_time_us < oldest) {
                self.counters.too_old += 1;
                continue;
            }
            if !wants(&event) {
                self.counters.filtered += 1;
                continue;
            }
            let offset = event.offset;
            let mut entry = Entry::new(event);
            // After a crash, an offset below the reservation of the last run
            // may have been handed out once already.
            if offset < self.persist.maybe_delivered_below() {
                entry.attempts = 1;
            }
            self.persist.added(offset);
            self.enqueue(offset, entry);
        }
        self.advance_floor();
        self.persist.touch();
    }

    /// Skips the cursor forward to `offset` (events between were deleted by
    /// retention); returns how many were skipped.
    pub fn skip_to(&mut self, offset: u64) -> u64 {
        if offset <= self.cursor {
            return 0;
        }
        let skipped = offset - self.cursor;
        self.cursor = offset;
        self.persist.reserve_from(offset);
        self.advance_floor();
        self.persist.touch();
        skipped
    }

    /// Moves the group to `offset`: everything before counts as acked,
    /// everything from it on as pending. Leases out are forgotten (their
    /// acks report `Unknown`), retries and key holds are cleared; pending
    /// replays of dead letters are kept. Returns how many entries were dropped.
    pub fn seek(&mut self, offset: u64) -> usize {
        let replays = self.entries.split_off(&REPLAY_BIT);
        let dropped = std::mem::replace(&mut self.entries, replays);
        for (key, entry) in &dropped {
            self.held_bytes = self.held_bytes.saturating_sub(entry.event.event.size());
            self.persist.removed(*key, entry.stored);
        }
        self.ready.retain(|k| k & REPLAY_BIT != 0);
        self.awaiting.retain(|k| k & REPLAY_BIT != 0);
        self.delayed.retain(|(_, k)| k & REPLAY_BIT != 0);
        self.leases.retain(|(_, k)| k & REPLAY_BIT != 0);
        for slot in self.consumers.values_mut() {
            slot.in_flight = 0;
        }
        for entry in self.entries.values() {
            if let EntryState::Leased { consumer, .. } = entry.state
                && let Some(slot) = self.consumers.get_mut(&consumer)
            {
                slot.in_flight += 1;
            }
        }
        self.holds.clear();
        self.lease_floor = self.next_lease;
        self.cursor = offset;
        self.persist.reserve_from(offset);
        self.advance_floor();
        self.persist.touch();
        dropped.len()
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

    /// Removes a consumer; its leases end at once and the events are
    /// redelivered without waiting for the deadline or a backoff (a dropped
    /// stream must not make the group wait). Each release counts as a failed
    /// attempt, so an event that keeps crashing its consumers is
    /// dead-lettered like any other. Returns how many leases were released.
    /// Leases of the entries in `keep` (what a unary pull's consumer took)
    /// stay until they are settled or their deadlines pass.
    pub fn remove_consumer(
        &mut self,
        id: ConsumerId,
        keep: &HashSet<u64>,
        now: Instant,
        now_us: i64,
    ) -> usize {
        if self.consumers.remove(&id).is_none() {
            return 0;
        }
        self.order.retain(|c| *c != id);
        let held: Vec<(Instant, u64)> = self
            .leases
            .iter()
            .filter(|(_, key)| {
                !keep.contains(key)
                    && matches!(self.entries.get(key).map(|e| e.state),
                    Some(EntryState::Leased { consumer, .. }) if consumer == id)
            })
            .copied()
            .collect();
        for (deadline, key) in &held {
            self.leases.remove(&(*deadline, *key));
            self.fail(
                *key,
                Some(Duration::ZERO),
                REASON_DISCONNECTED,
                false,
                now,
                now_us,
            );
        }
        held.len()
    }

    /// Hands ready events to consumers with free slots, round robin, at most
    /// `max_batch` deliveries and about `max_batch_bytes` per batch (an
    /// event larger than that goes alone). Returns the batches, possibly
    /// several per consumer.
    pub fn dispatch(
        &mut self,
        now: Instant,
        lease_for: Duration,
    ) -> Vec<(ConsumerId, Vec<Handout>)> {
        let mut out: Vec<(ConsumerId, Vec<Handout>)> = Vec::new();
        let mut idle_rounds = 0;
        let deadline = now + lease_for;
        let oldest_us = self.oldest_us();
        while !self.ready.is_empty() && idle_rounds < self.order.len() {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            self.order.push_back(id);
            let Some(slot) = self.consumers.get(&id) else {
                continue;
            };
            let room = slot.max_in_flight.saturating_sub(slot.in_flight);
            if room == 0 {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            let take = room.min(self.limits.max_batch);
            let mut batch = Vec::with_capacity(take.min(self.ready.len()));
            let mut bytes = 0;
            while batch.len() < take && (bytes < self.limits.max_batch_bytes || batch.is_empty()) {
                let Some(&key) = self.ready.first() else {
                    break;
                };
                let Some(entry) = self.entries.get_mut(&key) else {
                    self.ready.pop_first();
                    continue;
                };
                if oldest_us.is_some_and(|oldest| entry.event.publish_time_us < oldest)
                    && key & REPLAY_BIT == 0
                {
                    self.counters.too_old += 1;
                    self.remove_entry(key);
                    continue;
                }
                let size = entry.event.event.size();
                if !batch.is_empty() && bytes + size > self.limits.max_batch_bytes {
                    break;
                }
                self.ready.pop_first();
                bytes += size;
                let lease = self.next_lease;
                self.next_lease += 1;
                entry.attempts = entry.attempts.saturating_add(1);
                entry.state = EntryState::Leased {
                    lease,
                    consumer: id,
                    deadline,
                };
                self.leases.insert((deadline, key));
                self.counters.delivered += 1;
                if entry.attempts > 1 {
                    self.counters.redelivered += 1;
                }
                batch.push(Handout {
                    event: entry.event.clone(),
                    key,
                    lease,
                    attempt: entry.attempts,
                    deadline,
                });
            }
            if let Some(slot) = self.consumers.get_mut(&id) {
                slot.in_flight += batch.len();
            }
            if !batch.is_empty() {
                out.push((id, batch));
            }
        }
        out
    }

    /// Looks up the current lease of `key`; `Err` is the outcome to report
    /// when `lease` is not it.
    fn current_lease(&self, key: u64, lease: u64) -> Result<(ConsumerId, Instant), LeaseOutcome> {
        match self.entries.get(&key) {
            None if key & REPLAY_BIT == 0 && key < self.cursor => Err(LeaseOutcome::AlreadyDone),
            None if key & REPLAY_BIT != 0 && lease > 0 && lease < self.next_lease => {
                Err(LeaseOutcome::AlreadyDone)
            }
            None => Err(LeaseOutcome::Unknown),
            Some(_) if lease < self.lease_floor || lease >= self.next_lease => {
                Err(LeaseOutcome::Unknown)
            }
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

    /// Ends the lease on `key` if one is out, freeing the consumer's slot.
    fn drop_lease(&mut self, key: u64) {
        if let Some(entry) = self.entries.get(&key)
            && let EntryState::Leased {
                consumer, deadline, ..
            } = entry.state
        {
            self.leases.remove(&(deadline, key));
            if let Some(slot) = self.consumers.get_mut(&consumer) {
                slot.in_flight = slot.in_flight.saturating_sub(1);
            }
        }
    }

    /// Acknowledges a delivery. An ack of an older lease of an event that is
    /// still pending is honoured too: the consumer did the work, so the event
    /// is done (the current holder's own ack then reports `AlreadyDone`).
    pub fn ack(&mut self, key: u64, lease: u64) -> LeaseOutcome {
        match self.current_lease(key, lease) {
            Ok(_) | Err(LeaseOutcome::Stale) => {
                self.drop_lease(key);
                self.remove_entry(key);
                self.counters.acked += 1;
                if key & REPLAY_BIT != 0 {
                    self.acked_replays.push(key & !REPLAY_BIT);
                }
                LeaseOutcome::Ok
            }
            Err(outcome) => outcome,
        }
    }

    /// Negative ack: the event is retried after `delay` (or the policy's
    /// backoff for the attempt that failed), or dead-lettered when
    /// `dead_letter` is set or the attempt limit is reached. Only the
    /// current lease counts.
    #[allow(clippy::too_many_arguments)]
    pub fn nack(
        &mut self,
        key: u64,
        lease: u64,
        delay: Option<Duration>,
        reason: &str,
        dead_letter: bool,
        now: Instant,
        now_us: i64,
    ) -> LeaseOutcome {
        if let Err(outcome) = self.current_lease(key, lease) {
            return outcome;
        }
        self.drop_lease(key);
        self.counters.nacked += 1;
        let reason = if reason.is_empty() { "nacked" } else { reason };
        self.fail(key, delay, reason, dead_letter, now, now_us);
        LeaseOutcome::Ok
    }

    /// Pushes the deadline of the current lease to `now + extension`.
    pub fn extend(
        &mut self,
        key: u64,
        lease: u64,
        extension: Duration,
        now: Instant,
    ) -> Result<Instant, LeaseOutcome> {
        let (consumer, old) = self.current_lease(key, lease)?;
        let deadline = now + extension;
        self.leases.remove(&(old, key));
        self.leases.insert((deadline, key));
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.state = EntryState::Leased {
                lease,
                consumer,
                deadline,
            };
        }
        Ok(deadline)
    }

    /// Expires leases whose deadline has passed (retry after backoff, or
    /// dead-letter at the attempt limit) and moves due retries to ready.
    /// Returns the number of expired leases.
    pub fn tick(&mut self, now: Instant, now_us: i64) -> usize {
        let mut expired = 0;
        while let Some(&(deadline, key)) = self.leases.first() {
            if deadline > now {
                break;
            }
            self.drop_lease(key);
            self.counters.expired_leases += 1;
            self.fail(key, None, REASON_EXPIRED, false, now, now_us);
            expired += 1;
        }
        while let Some(&(due, key)) = self.delayed.first() {
            if due > now {
                break;
            }
            self.delayed.remove(&(due, key));
            if self.entries.contains_key(&key) {
                self.make_ready(key);
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

    /// Puts an entry up for delivery: ready when the attempt it would make
    /// is covered on disk, otherwise awaiting the write that covers it.
    fn make_ready(&mut self, key: u64) {
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        entry.state = EntryState::Ready;
        if persist::covered(entry) {
            self.ready.insert(key);
        } else {
            self.awaiting.insert(key);
            self.persist.changed(key);
        }
    }

    /// Records a failed attempt of an entry whose lease has ended: schedules
    /// the retry, or moves the event to `dead` when asked to or when the
    /// attempt limit is reached.
    fn fail(
        &mut self,
        key: u64,
        delay: Option<Duration>,
        reason: &str,
        dead_letter: bool,
        now: Instant,
        now_us: i64,
    ) {
        let max_attempts = self.max_attempts;
        let retry = self.retry;
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        if entry.first_failure_us == 0 {
            entry.first_failure_us = now_us;
        }
        entry.last_reason.clear();
        entry.last_reason.push_str(reason);
        if dead_letter || (max_attempts > 0 && entry.attempts >= max_attempts) {
            let dead = Dead {
                key,
                event: entry.event.clone(),
                attempts: entry.attempts,
                reason: entry.last_reason.clone(),
                first_failure_us: entry.first_failure_us,
                last_failure_us: now_us,
            };
            entry.state = EntryState::Ready;
            self.dead.push(dead);
            self.counters.dead_lettered += 1;
            self.remove_entry(key);
            return;
        }
        let wait = delay.unwrap_or_else(|| retry.delay(entry.attempts));
        self.persist.changed(key);
        if wait.is_zero() {
            self.make_ready(key);
        } else {
            let due = now + wait;
            entry.state = EntryState::Delayed(due);
            self.delayed.insert((due, key));
        }
    }

    fn remove_entry(&mut self, key: u64) {
        if let Some(entry) = self.entries.remove(&key) {
            match entry.state {
                EntryState::Ready => {
                    self.ready.remove(&key);
                    self.awaiting.remove(&key);
                }
                EntryState::Delayed(due) => {
                    self.delayed.remove(&(due, key));
                }
                EntryState::Leased { .. } | EntryState::Blocked => {}
            }
            self.held_bytes = self.held_bytes.saturating_sub(entry.event.event.size());
            self.persist.removed(key, entry.stored);
            self.release_key(key, &entry.event);
        }
        self.advance_floor();
        self.persist.touch();
    }

    fn advance_floor(&mut self) {
        self.floor = self
            .entries
            .range(..REPLAY_BIT)
            .next()
            .map(|(k, _)| *k)
            .unwrap_or(self.cursor);
    }
}
