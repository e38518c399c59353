//! The owner task of one consumer group: its loop, reading the log,
//! handing out deliveries, and answering commands.
//!
//! Storage layer (embedded backend). Writing progress and dead letters is in `store.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::dispatch::{ConsumerId, Dispatcher, REPLAY_BIT};
use super::super::log::TopicLog;
use super::super::memory::MemoryBudget;
use super::super::meta::{MetaStore, StoredEntry};
use super::super::state_writer::StateWriter;
use super::store::{Store, outcome_of};
use super::{Gone, GroupCmd, GroupStart};
use crate::event::{StoredEvent, now_us};
use crate::model::Error as BrokerError;
use crate::model::filter::Matcher;
use crate::model::results::{GroupGauges, GroupStats, LeaseOutcome};
use crate::model::settings::{AckDurability, GroupSettings};
use crate::storage::StorageError;
use crate::storage::backend::{LeaseRef, RawDelivery};
use crate::telemetry::metrics::GroupMetrics;

/// Most events read from the log in one go.
const READ_BATCH: usize = 4096;
/// Most bytes read from the log in one go.
const READ_BYTES: usize = 4 << 20;

/// What the group task keeps of each dead letter.
#[derive(Debug, Clone)]
pub(super) struct DeadSummary {
    pub dead_letter_us: i64,
    /// Replayed and still pending in the group (not counted as a dead letter).
    pub replaying: bool,
    /// Its record is on disk (so listing shows it).
    pub durable: bool,
}

pub(super) struct GroupTask {
    /// The group's id (goes into every lease).
    pub uid: u64,
    pub key: (String, String),
    pub settings: GroupSettings,
    pub matcher: Matcher,
    pub dispatcher: Dispatcher,
    pub consumers: HashMap<ConsumerId, mpsc::Sender<Vec<RawDelivery>>>,
    /// Consumers of unary pulls (see `GroupCmd::Subscribe`).
    pub pulling: HashSet<ConsumerId>,
    pub log: TopicLog,
    pub end: watch::Receiver<u64>,
    pub log_open: bool,
    pub meta: Arc<MetaStore>,
    pub states: StateWriter,
    pub flush_interval: Duration,
    pub expired_skipped: u64,
    /// Dead letters by id.
    pub dead: BTreeMap<u64, DeadSummary>,
    pub next_dead_id: u64,
    pub gauges: Arc<GroupGauges>,
    /// Delivery, ack, nack and dead-letter counters of this group.
    pub metrics: GroupMetrics,
    pub memory: Arc<MemoryBudget>,
    /// This group's share of `memory` as last reported.
    pub reported_bytes: usize,
    pub generation: u64,
    pub store: Store,
}

impl GroupTask {
    /// Builds the task from the group's stored state: entry rows with their
    /// events re-read from the log, replays waiting for their dead-letter
    /// copies, and the dead-letter summaries.
    ///
    /// # Errors
    /// The filter does not compile, or stored data cannot be read.
    pub(super) async fn load(
        s: GroupStart,
        gauges: Arc<GroupGauges>,
    ) -> Result<GroupTask, BrokerError> {
        let matcher = Matcher::compile_stored(&s.record.settings.filter)?;
        let settings = s.record.settings.clone();
        let header = s.state.header;
        let mut d = Dispatcher::restore(&header, s.clean, settings.ordered);
        d.set_policy(settings.retry, settings.max_delivery_attempts);
        d.set_max_age(settings.max_message_age);
        d.set_limits(s.limits);
        let (replays, rows): (Vec<StoredEntry>, Vec<StoredEntry>) = s
            .state
            .entries
            .into_iter()
            .partition(|e| e.key & REPLAY_BIT != 0);
        let events = if rows.is_empty() {
            Vec::new()
        } else {
            let log = s.log.clone();
            blocking(move || read_rows(&log, rows)).await?
        };
        let (now, wall) = (Instant::now(), now_us());
        for (row, event) in events {
            match event {
                Some(event) => d.add_restored(&row, event, now, wall),
                None => d.drop_row(row.key),
            }
        }
        let mut dead = BTreeMap::new();
        for summary in s.dead_letters {
            dead.insert(
                summary.id,
                DeadSummary {
                    dead_letter_us: summary.dead_letter_us,
                    replaying: false,
                    durable: true,
                },
            );
        }
        for row in replays {
            let id = row.key & !REPLAY_BIT;
            match dead.get_mut(&id) {
                Some(summary) => {
                    summary.replaying = true;
                    d.add_cold_replay(row);
                }
                None => d.drop_row(row.key),
            }
        }
        let next_dead_id = dead.keys().next_back().map_or(1, |id| id + 1);
        d.set_generation(header.generation);
        d.start_leases_at(u64::try_from(now_us()).unwrap_or(1));
        Ok(GroupTask {
            uid: header.generation,
            key: (s.record.topic.clone(), s.record.name.clone()),
            settings,
            matcher,
            dispatcher: d,
            consumers: HashMap::new(),
            pulling: HashSet::new(),
            end: s.log.watch_end(),
            log: s.log,
            log_open: true,
            meta: s.meta,
            states: s.states,
            flush_interval: s.flush_interval,
            expired_skipped: 0,
            dead,
            next_dead_id,
            gauges,
            metrics: GroupMetrics::new(&s.record.topic, &s.record.name),
            memory: s.memory,
            reported_bytes: 0,
            generation: header.generation,
            store: Store::default(),
        })
    }

    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<GroupCmd>,
        stop: CancellationToken,
        gone: Arc<OnceLock<Gone>>,
    ) {
        loop {
            self.fill();
            self.dispatch();
            self.load_replays();
            self.schedule_flush();
            self.refresh_gauges();
            let wake = self.dispatcher.next_wakeup();
            let want_tail = self.log_open && self.dispatcher.wanted() > 0;
            let flush_at = self.store.due();
            let retry_fill = self.store.retry_fill_at();
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                result = outcome_of(&mut self.store.in_flight), if self.store.flushing() => self.flushed(result),
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
                _ = sleep_until(flush_at), if flush_at.is_some() => self.flush(),
                _ = sleep_until(retry_fill), if retry_fill.is_some() => self.store.clear_retry_fill(),
                loaded = outcome_of(&mut self.store.loading), if self.store.loading() => self.loaded(loaded),
                read = outcome_of(&mut self.store.reading), if self.store.reading.is_some() => self.read_done(read),
            }
        }
        if gone.get().is_none() {
            self.final_flush().await;
        }
        self.memory.update(self.reported_bytes, 0);
        tracing::debug!(topic = %self.key.0, group = %self.key.1, "group task stopped");
    }

    /// Reads from the log while consumers have free slots, within the
    /// group's and the server's memory budgets and the reservation of first
    /// deliveries.
    fn fill(&mut self) {
        loop {
            if self.store.reading.is_some() {
                // A read from the files is on its way.
                return;
            }
            let wanted = self.dispatcher.wanted();
            if wanted == 0 {
                return;
            }
            let held = self.dispatcher.held_bytes();
            let server_room = self.memory.room();
            if server_room == 0 && held > 0 {
                // Other groups hold the server's budget: look again shortly.
                self.store.retry_fill_in(Duration::from_millis(20));
                return;
            }
            let end = (*self.end.borrow_and_update()).min(self.dispatcher.read_limit());
            let cursor = self.dispatcher.cursor();
            if cursor >= end {
                return;
            }
            let max_events = wanted
                .min(READ_BATCH)
                .min(usize::try_from(end - cursor).unwrap_or(usize::MAX));
            let max_bytes = READ_BYTES
                .min(self.dispatcher.room_bytes())
                .min(server_room)
                .max(1);
            // Consumers that keep up are served from the log's in-memory
            // tail right here; a read from the files goes to the blocking
            // pool and comes back through `read_done`.
            match self.log.try_read_cached(cursor, max_events, max_bytes) {
                Some(read) => {
                    if !self.took(cursor, read) {
                        return;
                    }
                }
                None => {
                    let log = self.log.clone();
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    tokio::task::spawn_blocking(move || {
                        let _ = tx.send(Ok((cursor, log.read(cursor, max_events, max_bytes))));
                    });
                    self.store.reading = Some(rx);
                    return;
                }
            }
        }
    }

    /// A read from the files came back.
    pub(super) fn read_done(&mut self, done: Result<super::store::FileRead, BrokerError>) {
        self.store.reading = None;
        if let Ok((from, read)) = done {
            // A seek meanwhile makes the read moot.
            if from == self.dispatcher.cursor() {
                self.took(from, read);
            }
        }
    }

    /// Takes what a read at `from` brought; false when there is nothing to
    /// read now.
    fn took(&mut self, from: u64, read: Result<Vec<Arc<StoredEvent>>, StorageError>) -> bool {
        match read {
            Ok(events) if events.is_empty() => return false,
            Ok(events) => {
                let matcher = &self.matcher;
                self.dispatcher
                    .add_events(events, |e| matcher.matches(&e.event.event_type));
            }
            Err(StorageError::OutOfRange { first, .. }) => {
                let skipped = self.dispatcher.skip_to(first);
                self.expired_skipped += skipped;
                tracing::warn!(
                    topic = %self.key.0, group = %self.key.1, skipped, first, from,
                    "group fell behind retention; skipped deleted events"
                );
            }
            Err(e) => {
                tracing::error!(topic = %self.key.0, group = %self.key.1, error = %e, "reading the log failed");
                self.store.retry_fill_in(Duration::from_secs(1));
                return false;
            }
        }
        self.report_memory();
        true
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
                let deliveries: Vec<RawDelivery> = handouts
                    .into_iter()
                    .map(|h| RawDelivery {
                        lease: LeaseRef {
                            group: self.uid,
                            key: h.key,
                            lease: h.lease,
                        },
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
            // A pull's consumer leaves by its Unsubscribe, which says which
            // leases it took: until then it only stops getting more.
            for consumer in lost {
                if self.pulling.contains(&consumer) {
                    self.consumers.remove(&consumer);
                } else {
                    self.remove_consumer(consumer, &HashSet::new());
                }
            }
        }
    }

    fn remove_consumer(&mut self, consumer: ConsumerId, keep: &HashSet<u64>) {
        self.consumers.remove(&consumer);
        self.pulling.remove(&consumer);
        let released = self
            .dispatcher
            .remove_consumer(consumer, keep, Instant::now(), now_us());
        self.store_dead();
        if released > 0 {
            tracing::debug!(topic = %self.key.0, group = %self.key.1, consumer, released,
                "consumer left; leases released for redelivery");
        }
    }

    /// An error for calls that change progress while it cannot be written.
    fn refuse_unwritable(&self) -> Option<BrokerError> {
        (!self.meta.healthy()).then(|| {
            BrokerError::Unavailable(
                "the metadata store failed; progress cannot be saved until it is writable again"
                    .into(),
            )
        })
    }

    fn handle(&mut self, cmd: GroupCmd) {
        match cmd {
            GroupCmd::Subscribe {
                consumer,
                max_in_flight,
                deliveries,
                keeps_leases,
            } => {
                // Room for one batch per slot: the group never blocks on a consumer.
                self.consumers.insert(consumer, deliveries);
                if keeps_leases {
                    self.pulling.insert(consumer);
                }
                self.dispatcher.add_consumer(consumer, max_in_flight);
            }
            GroupCmd::Unsubscribe { consumer, keep } => self.remove_consumer(consumer, &keep),
            GroupCmd::Ack { items, reply } => {
                if let Some(e) = self.refuse_unwritable() {
                    let _ = reply.send(Err(e));
                    return;
                }
                let out: Vec<_> = items
                    .into_iter()
                    .map(|(i, key, lease)| (i, self.dispatcher.ack(key, lease)))
                    .collect();
                if self.metrics.enabled() {
                    self.metrics.acked(ok_count(&out));
                }
                self.store_dead();
                if self.settings.ack_durability == AckDurability::Sync {
                    self.store.when_durable(reply, out);
                } else {
                    let _ = reply.send(Ok(out));
                }
            }
            GroupCmd::Nack {
                items,
                delay,
                reason,
                dead_letter,
                reply,
            } => {
                if let Some(e) = self.refuse_unwritable() {
                    let _ = reply.send(Err(e));
                    return;
                }
                let (now, wall) = (Instant::now(), now_us());
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
                // A nack that dead-letters answers once the dead letter is
                // durable; every nack of a sync group once it is.
                let sync = self.settings.ack_durability == AckDurability::Sync;
                if self.store_dead() || sync {
                    self.store.when_durable(reply, out);
                } else {
                    let _ = reply.send(Ok(out));
                }
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
                let _ = reply.send(Ok(out));
            }
            GroupCmd::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            GroupCmd::Settings { settings, matcher } => {
                self.dispatcher
                    .set_policy(settings.retry, settings.max_delivery_attempts);
                self.dispatcher.set_max_age(settings.max_message_age);
                self.settings = *settings;
                self.matcher = matcher;
            }
            GroupCmd::Replay { selection, reply } => self.replay(selection, reply),
            GroupCmd::Purge { selection, reply } => self.purge(selection, reply),
            GroupCmd::DeadLetterView { reply } => self.dead_letter_view(reply),
            GroupCmd::Seek { offset, reply } => {
                if let Some(e) = self.refuse_unwritable() {
                    let _ = reply.send(Err(e));
                    return;
                }
                let dropped = self.dispatcher.seek(offset);
                tracing::info!(topic = %self.key.0, group = %self.key.1, offset, dropped, "group moved by seek");
                self.store.when_durable(reply, offset);
            }
        }
        self.report_memory();
    }

    /// Keeps this group's share of the server's memory budget current.
    pub(super) fn report_memory(&mut self) {
        let held = self.dispatcher.held_bytes();
        if held != self.reported_bytes {
            self.memory.update(self.reported_bytes, held);
            self.reported_bytes = held;
        }
    }

    fn refresh_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let end = self.log.end_offset();
        let backlog =
            end.saturating_sub(self.dispatcher.cursor()) + self.dispatcher.pending() as u64;
        self.gauges.backlog.store(backlog, Relaxed);
        self.gauges
            .in_flight
            .store(self.dispatcher.in_flight() as u64, Relaxed);
        self.gauges.dead_letters.store(self.dead_count(), Relaxed);
    }

    /// Dead letters in the queue: durable and not being replayed.
    pub(super) fn dead_count(&self) -> u64 {
        self.dead
            .values()
            .filter(|d| d.durable && !d.replaying)
            .count() as u64
    }

    fn stats(&self) -> GroupStats {
        let c = self.dispatcher.counters();
        let (blocked_keys, oldest_blocked) = self.dispatcher.blocked_keys(10);
        let end = self.log.end_offset();
        let cursor = self.dispatcher.cursor();
        // The oldest unread event: from the tail cache, or the sparse
        // index (no I/O on this task).
        let oldest_us = self.dispatcher.oldest_pending_us().or_else(|| {
            (cursor < end).then_some(())?;
            match self.log.try_read_cached(cursor, 1, 1) {
                Some(Ok(events)) => events.first().map(|e| e.publish_time_us),
                _ => self.log.publish_time_near(cursor),
            }
        });
        let age = |t: i64| Duration::from_micros(u64::try_from(now_us() - t).unwrap_or(0));
        GroupStats {
            delivered: c.delivered,
            acked: c.acked,
            nacked: c.nacked,
            redelivered: c.redelivered,
            backlog: end.saturating_sub(cursor)
                + self.dispatcher.pending() as u64
                + self.dispatcher.cold_count() as u64,
            in_flight: self.dispatcher.in_flight() as u64,
            connected_consumers: self.dispatcher.consumer_count() as u32,
            oldest_unacked_age: oldest_us.map(age),
            ack_floor: self.dispatcher.floor(),
            filtered: c.filtered,
            expired: self.expired_skipped + c.too_old,
            dead_lettered: c.dead_lettered,
            dead_letter_count: self.dead_count(),
            oldest_dead_letter_age: self
                .dead
                .values()
                .filter(|d| d.durable && !d.replaying)
                .map(|d| d.dead_letter_us)
                .min()
                .map(age),
            blocked_keys,
            oldest_blocked,
            buffered_bytes: self.dispatcher.held_bytes() as u64,
        }
    }
}

/// An entry row with its event, if the log still has it.
type RowEvent = (StoredEntry, Option<Arc<StoredEvent>>);

/// Re-reads the log events of entry rows; `None` for those retention
/// deleted.
fn read_rows(log: &TopicLog, rows: Vec<StoredEntry>) -> Result<Vec<RowEvent>, StorageError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let event = match log.read(row.key, 1, 1) {
            Ok(mut events) => events.pop().filter(|e| e.offset == row.key),
            Err(StorageError::OutOfRange { .. }) => None,
            Err(e) => return Err(e),
        };
        out.push((row, event));
    }
    Ok(out)
}

/// Outcomes that took effect.
fn ok_count(out: &[(usize, LeaseOutcome)]) -> usize {
    out.iter().filter(|(_, o)| *o == LeaseOutcome::Ok).count()
}

/// Runs blocking storage work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Internal(e.to_string()))?
        .map_err(BrokerError::from)
}

pub(super) async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
