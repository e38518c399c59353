//! The owner task of one consumer group: it alone touches the group's
//! [`Dispatcher`], reads the topic's log for it, hands deliveries to the
//! consumers' streams, runs the lease timer and persists progress in batches.
//!
//! Broker layer. Everyone else talks to it through a [`GroupHandle`]
//! (mpsc of commands, oneshot replies), so the state machine needs no lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dead_letter::{DeadLetter, DeadLetterCounts, Selection};
use super::dispatch::{ConsumerId, Dead, Dispatcher, REPLAY_BIT, Snapshot};
use super::error::{BrokerError, echo};
use super::filter::Matcher;
use super::lease::{AckId, LeaseOutcome};
use super::settings::{GroupRecord, GroupSettings};
use super::state_writer::StateWriter;
use crate::event::{StoredEvent, now_us};
use crate::storage::StorageError;
use crate::storage::log::TopicLog;
use crate::storage::meta::DeadLetterOps;
use crate::telemetry::metrics::GroupMetrics;

/// Most events read from the log in one go.
const READ_BATCH: usize = 4096;
/// Most bytes read from the log in one go.
const READ_BYTES: usize = 4 << 20;

/// One delivery as the consumer's stream carries it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Token for ack/nack/extend.
    pub ack_id: String,
    /// The event.
    pub event: Arc<StoredEvent>,
    /// 1-based attempt.
    pub attempt: u32,
    /// Lease deadline, µs since the epoch.
    pub deadline_us: i64,
}

/// Counters and gauges of a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupStats {
    /// Deliveries since start.
    pub delivered: u64,
    /// Acks since start.
    pub acked: u64,
    /// Nacks since start.
    pub nacked: u64,
    /// Redeliveries since start.
    pub redelivered: u64,
    /// Dead-lettered since start.
    pub dead_lettered: u64,
    /// Not yet acknowledged events at or past the floor.
    pub backlog: u64,
    /// Leases out.
    pub in_flight: u64,
    /// Entries in the dead-letter queue.
    pub dead_letter_count: u64,
    /// Open Subscribe streams.
    pub connected_consumers: u32,
    /// Age of the oldest unacknowledged event.
    pub oldest_unacked_age: Option<Duration>,
    /// Every offset below is done.
    pub ack_floor: u64,
    /// Skipped by the filter.
    pub filtered: u64,
    /// Skipped because retention deleted them.
    pub expired: u64,
    /// Keys blocked behind a failing event.
    pub blocked_keys: u64,
    /// The oldest of those keys (at most ten).
    pub oldest_blocked: Vec<super::dispatch::BlockedKey>,
    /// Age of the oldest dead letter.
    pub oldest_dead_letter_age: Option<Duration>,
}

/// One ack id of a request, routed to its group: (index in request, offset, lease).
pub(crate) type LeaseRef = (usize, u64, u64);

/// Commands to the group task.
pub(crate) enum GroupCmd {
    Subscribe {
        consumer: ConsumerId,
        max_in_flight: usize,
        deliveries: mpsc::Sender<Vec<Delivery>>,
    },
    Unsubscribe {
        consumer: ConsumerId,
    },
    Ack {
        items: Vec<LeaseRef>,
        reply: oneshot::Sender<Vec<(usize, LeaseOutcome)>>,
    },
    Nack {
        items: Vec<LeaseRef>,
        delay: Option<Duration>,
        reason: String,
        dead_letter: bool,
        reply: oneshot::Sender<Vec<(usize, LeaseOutcome)>>,
    },
    Extend {
        items: Vec<LeaseRef>,
        extension: Duration,
        reply: oneshot::Sender<Vec<(usize, LeaseOutcome, Option<i64>)>>,
    },
    Stats {
        reply: oneshot::Sender<GroupStats>,
    },
    Settings {
        settings: GroupSettings,
        matcher: Matcher,
    },
    Replay {
        records: Vec<DeadLetter>,
        reply: oneshot::Sender<Result<DeadLetterCounts, BrokerError>>,
    },
    Purge {
        selection: Selection,
        reply: oneshot::Sender<Result<DeadLetterCounts, BrokerError>>,
    },
    Seek {
        offset: u64,
        reply: oneshot::Sender<u64>,
    },
}

/// What the group task keeps of each dead letter.
#[derive(Debug, Clone)]
struct DeadSummary {
    dead_letter_us: i64,
    /// Replayed and still pending in the group (not counted as a dead letter).
    replaying: bool,
}

/// Gauges a group task refreshes at every flush tick, readable without
/// asking the task (for metrics exporters).
#[derive(Debug, Default)]
pub struct GroupGauges {
    /// Events not yet acknowledged at or past the floor.
    pub backlog: std::sync::atomic::AtomicU64,
    /// Leases out.
    pub in_flight: std::sync::atomic::AtomicU64,
    /// Entries in the dead-letter queue.
    pub dead_letters: std::sync::atomic::AtomicU64,
}

/// Cheap handle to a running group task.
#[derive(Clone)]
pub struct GroupHandle {
    /// Gauges kept fresh by the task.
    pub gauges: Arc<GroupGauges>,
    /// Runtime number of the group (goes into ack ids).
    pub id: u32,
    /// The stored record, kept current by updates.
    pub record: Arc<Mutex<GroupRecord>>,
    pub(crate) tx: mpsc::Sender<GroupCmd>,
    /// Stops the task (group deletion, topic deletion, shutdown).
    pub(crate) stop: CancellationToken,
    /// Set when the group was deleted (then the task exits without a last
    /// flush, and streams end saying why).
    pub(crate) gone: Arc<OnceLock<Gone>>,
}

/// Why a group stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// DeleteGroup.
    GroupDeleted,
    /// DeleteTopic took its groups with it.
    TopicDeleted,
}

impl GroupHandle {
    /// Sends a command, mapping a stopped task to NOT_FOUND (deleted) or
    /// UNAVAILABLE (shutdown).
    pub(crate) async fn send(&self, cmd: GroupCmd) -> Result<(), BrokerError> {
        self.tx.send(cmd).await.map_err(|_| self.stopped())
    }

    /// The error for a call that reached a stopped group.
    pub(crate) fn stopped(&self) -> BrokerError {
        let (topic, group) = self.key();
        match self.gone.get() {
            Some(Gone::GroupDeleted) => BrokerError::NotFound(format!(
                "group {} of topic {} was deleted",
                echo(&group),
                echo(&topic)
            )),
            Some(Gone::TopicDeleted) => {
                BrokerError::NotFound(format!("topic {} was deleted", echo(&topic)))
            }
            None => BrokerError::shutting_down(),
        }
    }

    /// Sends a command and waits for its reply.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> GroupCmd,
    ) -> Result<T, BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| self.stopped())
    }

    /// (topic, group) of this group.
    pub fn key(&self) -> (String, String) {
        let record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        (record.topic.clone(), record.name.clone())
    }
}

impl super::Broker {
    /// (topic, group) of the running group that issued `ack_id`, for
    /// telemetry; `None` for a malformed id, one of another run or of a
    /// group that is gone.
    pub fn ack_id_group(&self, ack_id: &str) -> Option<(String, String)> {
        let id = AckId::decode(ack_id).filter(|id| id.run == self.inner.run)?;
        let groups = self
            .inner
            .groups_by_id
            .read()
            .unwrap_or_else(|e| e.into_inner());
        groups.get(&id.group).map(GroupHandle::key)
    }
}

/// Everything a group task needs to start.
pub(crate) struct GroupStart {
    pub id: u32,
    pub run: u32,
    pub record: GroupRecord,
    pub snapshot: Snapshot,
    pub log: TopicLog,
    pub states: StateWriter,
    pub flush_interval: Duration,
    pub stop: CancellationToken,
    /// The group's stored dead letters.
    pub dead_letters: Vec<DeadLetter>,
}

struct GroupTask {
    id: u32,
    run: u32,
    key: (String, String),
    settings: GroupSettings,
    matcher: Matcher,
    dispatcher: Dispatcher,
    consumers: HashMap<ConsumerId, mpsc::Sender<Vec<Delivery>>>,
    log: TopicLog,
    end: watch::Receiver<u64>,
    log_open: bool,
    states: StateWriter,
    expired_skipped: u64,
    /// Dead letters by id.
    dead: std::collections::BTreeMap<u64, DeadSummary>,
    next_dead_id: u64,
    gauges: Arc<GroupGauges>,
    /// Delivery, ack, nack and dead-letter counters of this group.
    metrics: GroupMetrics,
}

/// Starts the task of a group and returns its handle and the task future
/// (the caller spawns it on its tracker).
///
/// # Errors
/// The group's filter does not compile, or its pending events cannot be read.
pub(crate) fn start(
    s: GroupStart,
) -> Result<
    (
        GroupHandle,
        impl std::future::Future<Output = ()> + Send + 'static,
    ),
    BrokerError,
> {
    let matcher = Matcher::compile_stored(&s.record.settings.filter)?;
    let mut events = read_pending(&s.log, &s.snapshot)?;
    let mut dead = std::collections::BTreeMap::new();
    for dl in s.dead_letters {
        if dl.replaying {
            events.push((REPLAY_BIT | dl.id, dl.event.clone()));
        }
        dead.insert(
            dl.id,
            DeadSummary {
                dead_letter_us: dl.dead_letter_us,
                replaying: dl.replaying,
            },
        );
    }
    let next_dead_id = dead.keys().next_back().map_or(1, |id| id + 1);
    let mut dispatcher = Dispatcher::restore(
        &s.snapshot,
        events,
        s.record.settings.ordered,
        Instant::now(),
        now_us(),
    );
    let settings = &s.record.settings;
    dispatcher.set_policy(settings.retry, settings.max_delivery_attempts);
    let (tx, rx) = mpsc::channel(1024);
    let gone = Arc::new(OnceLock::new());
    let gauges = Arc::new(GroupGauges::default());
    let handle = GroupHandle {
        gauges: gauges.clone(),
        id: s.id,
        record: Arc::new(Mutex::new(s.record.clone())),
        tx,
        stop: s.stop.clone(),
        gone: gone.clone(),
    };
    let task = GroupTask {
        id: s.id,
        run: s.run,
        key: (s.record.topic.clone(), s.record.name.clone()),
        settings: s.record.settings.clone(),
        matcher,
        dispatcher,
        consumers: HashMap::new(),
        end: s.log.watch_end(),
        log: s.log,
        log_open: true,
        states: s.states,
        expired_skipped: 0,
        dead,
        next_dead_id,
        gauges,
        metrics: GroupMetrics::new(&s.record.topic, &s.record.name),
    };
    let fut = task.run(rx, s.stop, s.flush_interval, gone);
    Ok((handle, fut))
}

/// Re-reads the log events a snapshot lists as pending (they lie between
/// its floor and cursor); replays come from the dead-letter records.
fn read_pending(
    log: &TopicLog,
    snapshot: &Snapshot,
) -> Result<Vec<(u64, Arc<StoredEvent>)>, BrokerError> {
    let mut out = Vec::with_capacity(snapshot.pending.len());
    for p in snapshot.pending.iter().filter(|p| p.key & REPLAY_BIT == 0) {
        match log.read(p.key, 1, 1) {
            Ok(mut events) => {
                if let Some(event) = events.pop().filter(|e| e.offset == p.key) {
                    out.push((p.key, event));
                }
            }
            Err(StorageError::OutOfRange { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

impl GroupTask {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<GroupCmd>,
        stop: CancellationToken,
        flush_interval: Duration,
        gone: Arc<OnceLock<Gone>>,
    ) {
        let mut flush = tokio::time::interval(flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.fill();
            self.dispatch();
            let wake = self.dispatcher.next_wakeup();
            let want_tail = self.log_open && self.dispatcher.wanted() > 0;
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd);
                    // Drain what queued meanwhile so one dispatch serves many acks.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(cmd) => self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                }
                changed = self.end.changed(), if want_tail => {
                    if changed.is_err() {
                        self.log_open = false;
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {
                    self.dispatcher.tick(Instant::now(), now_us());
                    self.store_dead();
                }
                _ = flush.tick() => self.flush(),
            }
        }
        if gone.get().is_none() {
            self.flush();
        }
        tracing::debug!(topic = %self.key.0, group = %self.key.1, "group task stopped");
    }

    /// Reads from the log while consumers have free slots.
    fn fill(&mut self) {
        loop {
            let wanted = self.dispatcher.wanted();
            if wanted == 0 {
                return;
            }
            let end = *self.end.borrow_and_update();
            let cursor = self.dispatcher.cursor();
            if cursor >= end {
                return;
            }
            // Reads are served from the log's in-memory tail for consumers
            // that keep up, and from the page cache otherwise: short enough
            // to do on this task.
            match self.log.read(cursor, wanted.min(READ_BATCH), READ_BYTES) {
                Ok(events) if events.is_empty() => return,
                Ok(events) => {
                    let matcher = &self.matcher;
                    self.dispatcher
                        .add_events(events, |e| matcher.matches(&e.event.event_type));
                }
                Err(StorageError::OutOfRange { first, .. }) => {
                    let skipped = self.dispatcher.skip_to(first);
                    self.expired_skipped += skipped;
                    tracing::warn!(
                        topic = %self.key.0, group = %self.key.1, skipped, first,
                        "group fell behind retention; skipped deleted events"
                    );
                }
                Err(e) => {
                    tracing::error!(topic = %self.key.0, group = %self.key.1, error = %e, "reading the log failed");
                    return;
                }
            }
        }
    }

    /// Hands ready events to consumers and sends the batches.
    fn dispatch(&mut self) {
        loop {
            let now = Instant::now();
            let batches = self.dispatcher.dispatch(now, self.settings.ack_deadline);
            if batches.is_empty() {
                return;
            }
            let wall = now_us();
            let mut lost = Vec::new();
            let mut delivered = 0;
            for (consumer, handouts) in batches {
                let deliveries: Vec<Delivery> = handouts
                    .into_iter()
                    .map(|h| Delivery {
                        ack_id: AckId {
                            run: self.run,
                            group: self.id,
                            offset: h.key,
                            lease: h.lease,
                        }
                        .encode(),
                        deadline_us: wall
                            + i64::try_from((h.deadline - now).as_micros()).unwrap_or(i64::MAX / 2),
                        event: h.event,
                        attempt: h.attempt,
                    })
                    .collect();
                let n = deliveries.len();
                let sent = self
                    .consumers
                    .get(&consumer)
                    .map(|tx| tx.try_send(deliveries).is_ok())
                    .unwrap_or(false);
                if sent {
                    delivered += n;
                } else {
                    lost.push(consumer);
                }
            }
            self.metrics.delivered(delivered);
            if lost.is_empty() {
                return;
            }
            // A closed stream (or, impossible by construction, a full one):
            // the consumer is gone; its leases go back at once, try again.
            for consumer in lost {
                self.remove_consumer(consumer);
            }
        }
    }

    fn remove_consumer(&mut self, consumer: ConsumerId) {
        self.consumers.remove(&consumer);
        let released = self
            .dispatcher
            .remove_consumer(consumer, Instant::now(), now_us());
        self.store_dead();
        if released > 0 {
            tracing::debug!(topic = %self.key.0, group = %self.key.1, consumer, released,
                "consumer left; leases released for redelivery");
        }
    }

    fn handle(&mut self, cmd: GroupCmd) {
        match cmd {
            GroupCmd::Subscribe {
                consumer,
                max_in_flight,
                deliveries,
            } => {
                self.consumers.insert(consumer, deliveries);
                self.dispatcher.add_consumer(consumer, max_in_flight);
            }
            GroupCmd::Unsubscribe { consumer } => self.remove_consumer(consumer),
            GroupCmd::Ack { items, reply } => {
                let out: Vec<_> = items
                    .into_iter()
                    .map(|(i, key, lease)| (i, self.dispatcher.ack(key, lease)))
                    .collect();
                if self.metrics.enabled() {
                    self.metrics.acked(ok_count(&out));
                }
                let _ = reply.send(out);
                self.store_dead();
            }
            GroupCmd::Nack {
                items,
                delay,
                reason,
                dead_letter,
                reply,
            } => {
                let now = Instant::now();
                let wall = now_us();
                let out: Vec<_> = items
                    .into_iter()
                    .map(|(i, key, lease)| {
                        let outcome = self.dispatcher.nack(
                            key,
                            lease,
                            delay,
                            &reason,
                            dead_letter,
                            now,
                            wall,
                        );
                        (i, outcome)
                    })
                    .collect();
                if self.metrics.enabled() {
                    self.metrics.nacked(ok_count(&out));
                }
                // A nack that dead-letters answers once the dead letter is durable.
                reply_when_durable(self.store_dead(), reply, out);
            }
            GroupCmd::Extend {
                items,
                extension,
                reply,
            } => {
                let now = Instant::now();
                let wall = now_us();
                let out = items
                    .into_iter()
                    .map(|(i, offset, lease)| {
                        match self.dispatcher.extend(offset, lease, extension, now) {
                            Ok(deadline) => (
                                i,
                                LeaseOutcome::Ok,
                                Some(
                                    wall + i64::try_from((deadline - now).as_micros()).unwrap_or(0),
                                ),
                            ),
                            Err(outcome) => (i, outcome, None),
                        }
                    })
                    .collect();
                let _ = reply.send(out);
            }
            GroupCmd::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            GroupCmd::Settings { settings, matcher } => {
                self.dispatcher
                    .set_policy(settings.retry, settings.max_delivery_attempts);
                self.settings = settings;
                self.matcher = matcher;
            }
            GroupCmd::Replay { records, reply } => self.replay(records, reply),
            GroupCmd::Purge { selection, reply } => self.purge(selection, reply),
            GroupCmd::Seek { offset, reply } => {
                let dropped = self.dispatcher.seek(offset);
                tracing::info!(topic = %self.key.0, group = %self.key.1, offset, dropped, "group moved by seek");
                self.flush();
                let _ = reply.send(offset);
            }
        }
    }

    /// Dead letters in the queue (not being replayed).
    fn dead_count(&self) -> u64 {
        self.dead.values().filter(|d| !d.replaying).count() as u64
    }

    /// Stores what the dispatcher gave up on and drops acknowledged
    /// replays, together with the current snapshot. Returns a receiver that
    /// fires when that is durable, or `None` when there was nothing to do.
    fn store_dead(&mut self) -> Option<oneshot::Receiver<()>> {
        let dead = self.dispatcher.take_dead();
        let acked = self.dispatcher.take_acked_replays();
        if dead.is_empty() && acked.is_empty() {
            return None;
        }
        let wall = now_us();
        let mut ops = DeadLetterOps::default();
        self.metrics.dead_lettered(dead.len());
        for d in dead {
            let record = self.dead_letter(d, wall);
            ops.put.push((record.id, record.encode()));
        }
        for id in acked {
            self.dead.remove(&id);
            ops.delete.push(id);
        }
        Some(self.save_dead_letters(ops))
    }

    /// Queues dead-letter changes with the snapshot of this moment (which
    /// then need not be flushed again); the receiver fires once durable.
    fn save_dead_letters(&mut self, ops: DeadLetterOps) -> oneshot::Receiver<()> {
        let (now, wall) = (Instant::now(), now_us());
        let snapshot = match self.dispatcher.take_snapshot(now, wall) {
            Some(snapshot) => snapshot,
            None => self.dispatcher.snapshot(now, wall),
        };
        self.states
            .save_dead_letters(self.key.clone(), &snapshot, ops)
    }

    /// Turns a given-up entry into a dead-letter record (a replay that failed
    /// again keeps its id) and logs it.
    fn dead_letter(&mut self, d: Dead, wall: i64) -> DeadLetter {
        let id = if d.key & REPLAY_BIT != 0 {
            d.key & !REPLAY_BIT
        } else {
            let id = self.next_dead_id;
            self.next_dead_id += 1;
            id
        };
        let record = DeadLetter {
            id,
            event: d.event,
            attempts: d.attempts,
            last_reason: d.reason,
            first_failure_us: d.first_failure_us,
            last_failure_us: d.last_failure_us,
            dead_letter_us: wall,
            replaying: false,
        };
        tracing::warn!(
            topic = %self.key.0,
            group = %self.key.1,
            event_id = %record.event.event.id,
            offset = record.event.offset,
            attempts = record.attempts,
            reason = %record.last_reason,
            dead_letter_id = id,
            "event dead-lettered"
        );
        self.dead.insert(
            id,
            DeadSummary {
                dead_letter_us: wall,
                replaying: false,
            },
        );
        record
    }

    fn replay(
        &mut self,
        records: Vec<DeadLetter>,
        reply: oneshot::Sender<Result<DeadLetterCounts, BrokerError>>,
    ) {
        let mut ops = DeadLetterOps::default();
        for mut record in records {
            let Some(summary) = self.dead.get_mut(&record.id) else {
                continue; // purged meanwhile
            };
            if summary.replaying || !self.dispatcher.add_replay(record.id, record.event.clone()) {
                continue; // its replay is still pending: do not duplicate it
            }
            summary.replaying = true;
            record.replaying = true;
            ops.put.push((record.id, record.encode()));
        }
        let counts = DeadLetterCounts {
            changed: ops.put.len() as u64,
            remaining: self.dead_count(),
        };
        if ops.put.is_empty() {
            let _ = reply.send(Ok(counts));
            return;
        }
        tracing::info!(topic = %self.key.0, group = %self.key.1, replayed = counts.changed, "dead letters replayed");
        reply_when_durable(Some(self.save_dead_letters(ops)), reply, Ok(counts));
    }

    fn purge(
        &mut self,
        selection: Selection,
        reply: oneshot::Sender<Result<DeadLetterCounts, BrokerError>>,
    ) {
        let ids: Vec<u64> = match selection {
            Selection::Ids(ids) => {
                if let Some(missing) = ids
                    .iter()
                    .find(|id| self.dead.get(id).is_none_or(|d| d.replaying))
                {
                    let _ = reply.send(Err(BrokerError::NotFound(format!(
                        "dead letter {missing} of group {:?} does not exist (or is being replayed)",
                        self.key.1
                    ))));
                    return;
                }
                ids
            }
            Selection::All(_) => self
                .dead
                .iter()
                .filter(|(_, d)| !d.replaying)
                .map(|(id, _)| *id)
                .collect(),
        };
        for id in &ids {
            self.dead.remove(id);
        }
        let counts = DeadLetterCounts {
            changed: ids.len() as u64,
            remaining: self.dead_count(),
        };
        if ids.is_empty() {
            let _ = reply.send(Ok(counts));
            return;
        }
        tracing::info!(topic = %self.key.0, group = %self.key.1, purged = counts.changed, "dead letters purged");
        let ops = DeadLetterOps {
            put: Vec::new(),
            delete: ids,
        };
        reply_when_durable(Some(self.save_dead_letters(ops)), reply, Ok(counts));
    }

    fn stats(&self) -> GroupStats {
        let c = self.dispatcher.counters();
        let (blocked_keys, oldest_blocked) = self.dispatcher.blocked_keys(10);
        let end = self.log.end_offset();
        let cursor = self.dispatcher.cursor();
        let oldest_us = self.dispatcher.oldest_pending_us().or_else(|| {
            (cursor < end)
                .then(|| self.log.read(cursor, 1, 1).ok())
                .flatten()
                .and_then(|events| events.first().map(|e| e.publish_time_us))
        });
        GroupStats {
            delivered: c.delivered,
            acked: c.acked,
            nacked: c.nacked,
            redelivered: c.redelivered,
            backlog: end.saturating_sub(cursor) + self.dispatcher.pending() as u64,
            in_flight: self.dispatcher.in_flight() as u64,
            connected_consumers: self.dispatcher.consumer_count() as u32,
            oldest_unacked_age: oldest_us
                .map(|t| Duration::from_micros(u64::try_from(now_us() - t).unwrap_or(0))),
            ack_floor: self.dispatcher.floor(),
            filtered: c.filtered,
            expired: self.expired_skipped,
            dead_lettered: c.dead_lettered,
            dead_letter_count: self.dead_count(),
            oldest_dead_letter_age: self
                .dead
                .values()
                .filter(|d| !d.replaying)
                .map(|d| d.dead_letter_us)
                .min()
                .map(|t| Duration::from_micros(u64::try_from(now_us() - t).unwrap_or(0))),
            blocked_keys,
            oldest_blocked,
        }
    }

    fn flush(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let end = self.log.end_offset();
        let backlog =
            end.saturating_sub(self.dispatcher.cursor()) + self.dispatcher.pending() as u64;
        self.gauges.backlog.store(backlog, Relaxed);
        self.gauges
            .in_flight
            .store(self.dispatcher.in_flight() as u64, Relaxed);
        self.gauges.dead_letters.store(self.dead_count(), Relaxed);
        if let Some(snapshot) = self.dispatcher.take_snapshot(Instant::now(), now_us()) {
            self.states.save(self.key.clone(), &snapshot);
        }
    }
}

/// Outcomes that took effect.
fn ok_count(out: &[(usize, LeaseOutcome)]) -> usize {
    out.iter().filter(|(_, o)| *o == LeaseOutcome::Ok).count()
}

/// Sends `value` once `durable` fires (at once when there is nothing to
/// wait for), without holding up the group task.
fn reply_when_durable<T: Send + 'static>(
    durable: Option<oneshot::Receiver<()>>,
    reply: oneshot::Sender<T>,
    value: T,
) {
    match durable {
        Some(durable) => {
            tokio::spawn(async move {
                let _ = durable.await;
                let _ = reply.send(value);
            });
        }
        None => {
            let _ = reply.send(value);
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
