//! The group state machine: which events of a group are pending, leased,
//! waiting for a retry or acknowledged, which consumer gets what, and when an
//! event is given up on (dead-lettered).
//!
//! Broker layer, no I/O and no clock of its own: every method that depends on
//! time takes `now` (monotonic) and `now_us` (wall clock, for records), so
//! the owner task (`group.rs`) and tests under paused tokio time drive it
//! deterministically.
//!
//! Entries are keyed by the event's offset, or, for events replayed from the
//! dead-letter queue, by [`REPLAY_BIT`] | dead-letter id (a replayed event is
//! a copy that lives beside the log; its offset is long done).
//!
//! Invariants:
//! - every offset below `floor` is done (acked, filtered or dead-lettered);
//! - `entries` holds exactly the offsets in `[floor, cursor)` that are not
//!   done, plus the pending replays;
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

/// Marks entry keys of replayed dead letters (key = `REPLAY_BIT | id`).
pub const REPLAY_BIT: u64 = 1 << 63;

/// Reason recorded when a lease runs out.
pub const REASON_EXPIRED: &str = "ack deadline exceeded";
/// Reason recorded when a consumer's stream ends while it holds a lease.
pub const REASON_DISCONNECTED: &str = "consumer disconnected";

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
    /// Ordered groups: waits behind an earlier event with the same key.
    Blocked,
}

/// Ordered groups: the event that holds a key (in flight, waiting for a
/// retry, or next to go) and the later events of that key behind it.
#[derive(Debug, Default)]
struct KeyHold {
    holder: u64,
    waiting: VecDeque<u64>,
}

/// A key blocked behind a failing event (for stats and GetGroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedKey {
    /// The key.
    pub key: String,
    /// Offset of the event holding it.
    pub offset: u64,
    /// Deliveries of that event so far.
    pub attempts: u32,
    /// Events of the key waiting behind it.
    pub waiting: u64,
    /// When that event first failed, µs since the epoch.
    pub since_us: i64,
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
}

impl Entry {
    fn new(event: Arc<StoredEvent>) -> Entry {
        Entry {
            event,
            attempts: 0,
            state: EntryState::Ready,
            first_failure_us: 0,
            last_reason: String::new(),
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
}

/// What is persisted of a group: enough to continue after a restart
/// redelivering only what was not acknowledged, with attempt counts and the
/// retry schedule intact.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Every offset below is done.
    pub floor: u64,
    /// Next offset to read from the log.
    pub cursor: u64,
    /// Entries not done yet.
    pub pending: Vec<PendingEntry>,
}

/// One pending entry in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PendingEntry {
    /// Offset, or replay key.
    #[serde(rename = "k")]
    pub key: u64,
    /// Deliveries made.
    #[serde(rename = "a")]
    pub attempts: u32,
    /// Wall-clock time of the next retry (µs since the epoch), if waiting.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub due_us: Option<i64>,
    /// First failure time, 0 if none.
    #[serde(rename = "f", default, skip_serializing_if = "is_zero")]
    pub first_failure_us: i64,
    /// Last failure reason.
    #[serde(rename = "r", default, skip_serializing_if = "String::is_empty")]
    pub last_reason: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
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
    /// Leases below this were issued before the last seek: unknown now.
    lease_floor: u64,
    /// Most deliveries put in one batch to one consumer.
    max_batch: usize,
    /// Backoff after failures.
    retry: RetryPolicy,
    /// Deliveries after which a failure dead-letters the event; 0 = never.
    max_attempts: u32,
    /// Events given up on, waiting for the owner task to store them.
    dead: Vec<Dead>,
    /// Replays acknowledged, whose dead-letter records can go.
    acked_replays: Vec<u64>,
    /// Per-key ordering on.
    ordered: bool,
    /// Ordered groups: who holds each key.
    holds: HashMap<String, KeyHold>,
    /// Most entries held in memory (bounds a group whose keys are stuck).
    max_pending: usize,
    counters: Counters,
    /// Set when something that is persisted changed since the last snapshot.
    dirty: bool,
}

impl Dispatcher {
    /// A group positioned at `cursor` with nothing pending, default retry
    /// policy and no attempt limit.
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
            lease_floor: 1,
            max_batch: 256,
            retry: RetryPolicy::default(),
            max_attempts: 0,
            dead: Vec::new(),
            acked_replays: Vec::new(),
            ordered: false,
            holds: HashMap::new(),
            max_pending: 100_000,
            counters: Counters::default(),
            dirty: false,
        }
    }

    /// Sets the retry policy and the attempt limit (0 = never dead-letter).
    pub fn set_policy(&mut self, retry: RetryPolicy, max_attempts: u32) {
        self.retry = retry;
        self.max_attempts = max_attempts;
    }

    /// Turns per-key ordering on. Call before any event is added (the mode
    /// of a group is fixed at creation).
    pub fn set_ordered(&mut self, ordered: bool) {
        self.ordered = ordered;
    }

    /// Ordered groups: the key an entry takes part in ordering with.
    fn order_key(&self, key: u64, event: &StoredEvent) -> Option<String> {
        (self.ordered && key & REPLAY_BIT == 0 && !event.event.key.is_empty())
            .then(|| event.event.key.clone())
    }

    /// Queues a new entry as ready, or behind the holder of its key.
    fn enqueue(&mut self, key: u64, mut entry: Entry) {
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
        match entry.state {
            EntryState::Delayed(due) => {
                self.delayed.insert((due, key));
            }
            _ => {
                entry.state = EntryState::Ready;
                self.ready.insert(key);
            }
        }
        self.entries.insert(key, entry);
    }

    /// An entry is done: the next event of its key (if any) may go.
    fn release_key(&mut self, key: u64, event: &StoredEvent) {
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
                if let Some(entry) = self.entries.get_mut(&next) {
                    entry.state = EntryState::Ready;
                    self.ready.insert(next);
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

    /// Restores a group from its snapshot. `events` are the pending events
    /// re-read from the log and the pending replay copies, with their keys.
    /// Log events that are missing (deleted by retention) are treated as
    /// done; a replay missing from the snapshot starts afresh. Retry times are
    /// wall clock in the snapshot and are mapped onto `now`; a retry due in
    /// the past is ready at once.
    pub fn restore(
        snapshot: &Snapshot,
        mut events: Vec<(u64, Arc<StoredEvent>)>,
        ordered: bool,
        now: Instant,
        now_us: i64,
    ) -> Dispatcher {
        let mut d = Dispatcher::new(snapshot.cursor);
        d.ordered = ordered;
        // Offset order, so the first pending event of a key holds it again.
        events.sort_by_key(|(key, _)| *key);
        let saved: HashMap<u64, &PendingEntry> =
            snapshot.pending.iter().map(|p| (p.key, p)).collect();
        for (key, event) in events {
            let mut entry = Entry::new(event);
            match saved.get(&key) {
                Some(p) => {
                    entry.attempts = p.attempts;
                    entry.first_failure_us = p.first_failure_us;
                    entry.last_reason = p.last_reason.clone();
                    if let Some(due_us) = p.due_us.filter(|due| *due > now_us) {
                        let wait = u64::try_from(due_us - now_us).unwrap_or(0);
                        entry.state = EntryState::Delayed(now + Duration::from_micros(wait));
                    }
                }
                None if key & REPLAY_BIT == 0 => continue,
                None => {}
            }
            d.enqueue(key, entry);
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

    /// Number of pending (not done) entries.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    /// Connected consumers.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Publish time of the oldest pending event, if any.
    pub fn oldest_pending_us(&self) -> Option<i64> {
        self.entries.values().map(|e| e.event.publish_time_us).min()
    }

    /// Dead-letter ids of the replays still pending.
    pub fn pending_replays(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries
            .range(REPLAY_BIT..)
            .map(|(k, _)| k & !REPLAY_BIT)
    }

    /// Puts a replayed dead letter back into the flow with attempts reset.
    /// Returns false when that replay is already pending.
    pub fn add_replay(&mut self, dead_letter_id: u64, event: Arc<StoredEvent>) -> bool {
        let key = REPLAY_BIT | dead_letter_id;
        if self.entries.contains_key(&key) {
            return false;
        }
        self.enqueue(key, Entry::new(event));
        self.dirty = true;
        true
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
    /// every consumer's free slots, no more (so an idle group holds nothing).
    pub fn wanted(&self) -> usize {
        self.credit()
            .saturating_sub(self.ready.len())
            .min(self.max_pending.saturating_sub(self.entries.len()))
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
            self.enqueue(offset, Entry::new(event));
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

    /// Moves the group to `offset`: everything before counts as acked,
    /// everything from it on as pending. Leases out are forgotten (their
    /// acks report `Unknown`), retries and key holds are cleared; pending
    /// replays of dead letters are kept. Returns how many entries were dropped.
    pub fn seek(&mut self, offset: u64) -> usize {
        let replays = self.entries.split_off(&REPLAY_BIT);
        let dropped = self.entries.len();
        self.entries = replays;
        self.ready.retain(|k| k & REPLAY_BIT != 0);
        self.delayed.retain(|(_, k)| k & REPLAY_BIT != 0);
        let kept_leases: BTreeSet<(Instant, u64)> = self
            .leases
            .iter()
            .filter(|(_, k)| k & REPLAY_BIT != 0)
            .copied()
            .collect();
        self.leases = kept_leases;
        for slot in self.consumers.values_mut() {
            slot.in_flight = 0;
        }
        for (_, entry) in self.entries.iter_mut() {
            if let EntryState::Leased { consumer, .. } = entry.state
                && let Some(slot) = self.consumers.get_mut(&consumer)
            {
                slot.in_flight += 1;
            }
        }
        self.holds.clear();
        self.lease_floor = self.next_lease;
        self.cursor = offset;
        self.advance_floor();
        self.dirty = true;
        dropped
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
    pub fn remove_consumer(&mut self, id: ConsumerId, now: Instant, now_us: i64) -> usize {
        if self.consumers.remove(&id).is_none() {
            return 0;
        }
        self.order.retain(|c| *c != id);
        let held: Vec<(Instant, u64)> = self
            .leases
            .iter()
            .filter(|(_, key)| {
                matches!(self.entries.get(key).map(|e| e.state),
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
                let Some(key) = self.ready.pop_first() else {
                    break;
                };
                let Some(entry) = self.entries.get_mut(&key) else {
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
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.state = EntryState::Ready;
                self.ready.insert(key);
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
        self.dirty = true;
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
        if wait.is_zero() {
            entry.state = EntryState::Ready;
            self.ready.insert(key);
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
                }
                EntryState::Delayed(due) => {
                    self.delayed.remove(&(due, key));
                }
                EntryState::Leased { .. } | EntryState::Blocked => {}
            }
            self.release_key(key, &entry.event);
        }
        self.advance_floor();
        self.dirty = true;
    }

    fn advance_floor(&mut self) {
        self.floor = self
            .entries
            .range(..REPLAY_BIT)
            .next()
            .map(|(k, _)| *k)
            .unwrap_or(self.cursor);
    }

    /// The persisted form, if anything changed since the last call.
    pub fn take_snapshot(&mut self, now: Instant, now_us: i64) -> Option<Snapshot> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(self.snapshot(now, now_us))
    }

    /// The persisted form; `now`/`now_us` map retry times onto the wall clock.
    pub fn snapshot(&self, now: Instant, now_us: i64) -> Snapshot {
        Snapshot {
            floor: self.floor,
            cursor: self.cursor,
            pending: self
                .entries
                .iter()
                .map(|(key, e)| PendingEntry {
                    key: *key,
                    attempts: e.attempts,
                    due_us: match e.state {
                        EntryState::Delayed(due) => {
                            let wait = due.saturating_duration_since(now).as_micros();
                            Some(now_us.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)))
                        }
                        _ => None,
                    },
                    first_failure_us: e.first_failure_us,
                    last_reason: e.last_reason.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
