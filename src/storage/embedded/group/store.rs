//! How a group task writes: flushes of its progress (one in flight at a
//! time, through the shared state writer), its dead letters, replays and
//! purges, and the loading of replayed events within the memory budget.
//!
//! Storage layer (embedded backend). A flush carries the dispatcher's delta and the dead-letter
//! changes of the same moment in one transaction, so an event is never
//! both gone from the group and missing from its dead-letter queue. Calls
//! that must not answer before their change is durable (a nack that
//! dead-letters, replay, purge, seek) wait for the flush that carries it;
//! a failed flush answers them UNAVAILABLE.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::dispatch::{Dead, Flush, REPLAY_BIT};
use super::super::meta::{DeadLetterOps, StateWrite};
use super::DeadLetterView;
use super::task::{DeadSummary, GroupTask, blocking};
use crate::event::now_us;
use crate::model::Error as BrokerError;
use crate::model::results::{DeadLetter, DeadLetterCounts, Selection};

/// Runs with the outcome of the flush that carries a change.
type Waiter = Box<dyn FnOnce(Result<(), BrokerError>) + Send>;

/// Replayed events loaded from the dead-letter store: (id, record if any).
type Loaded = Result<Vec<(u64, Option<DeadLetter>)>, BrokerError>;

/// A read from the files: where it started and what it brought.
pub(super) type FileRead = (
    u64,
    Result<Vec<std::sync::Arc<crate::event::StoredEvent>>, crate::storage::StorageError>,
);

/// Most replayed events loaded in one go.
const LOAD_BATCH: usize = 256;

/// The writing state of a group task.
#[derive(Default)]
pub(super) struct Store {
    /// When the next flush is due.
    flush_at: Option<Instant>,
    /// The flush in flight.
    pub in_flight: Option<oneshot::Receiver<Result<(), BrokerError>>>,
    in_flight_has_delta: bool,
    /// Dead letters the flush in flight writes.
    in_flight_dead: Vec<u64>,
    /// Dead letters the flush in flight deletes.
    in_flight_deleted: Vec<u64>,
    in_flight_waiters: Vec<Waiter>,
    /// Dead-letter changes for the next flush.
    dead_ops: DeadLetterOps,
    /// Calls waiting for the next flush.
    waiters: Vec<Waiter>,
    /// Replayed events being loaded.
    pub loading: Option<oneshot::Receiver<Loaded>>,
    /// Events being read from the log's files.
    pub reading: Option<oneshot::Receiver<Result<FileRead, BrokerError>>>,
    /// When to look again at the server's memory budget.
    retry_fill: Option<Instant>,
    /// No replay loading before this (after a failed load).
    load_after: Option<Instant>,
}

impl Store {
    pub(super) fn due(&self) -> Option<Instant> {
        self.flush_at.filter(|_| self.in_flight.is_none())
    }

    pub(super) fn flushing(&self) -> bool {
        self.in_flight.is_some()
    }

    pub(super) fn loading(&self) -> bool {
        self.loading.is_some()
    }

    pub(super) fn retry_fill_at(&self) -> Option<Instant> {
        self.retry_fill
    }

    pub(super) fn retry_fill_in(&mut self, after: Duration) {
        self.retry_fill.get_or_insert(Instant::now() + after);
    }

    pub(super) fn clear_retry_fill(&mut self) {
        self.retry_fill = None;
    }

    /// Answers `reply` with `value` once the next flush is durable, or with
    /// its error.
    pub(super) fn when_durable<T: Send + 'static>(
        &mut self,
        reply: oneshot::Sender<Result<T, BrokerError>>,
        value: T,
    ) {
        self.waiters.push(Box::new(move |outcome| {
            let _ = reply.send(outcome.map(|()| value));
        }));
    }
}

/// Answers a call with its error.
fn refuse<T>(reply: oneshot::Sender<Result<T, BrokerError>>, e: BrokerError) {
    let _ = reply.send(Err(e));
}

/// The outcome a receiver brings (waits forever when there is none, for
/// use in `select!` behind a guard).
pub(super) async fn outcome_of<T>(
    rx: &mut Option<oneshot::Receiver<Result<T, BrokerError>>>,
) -> Result<T, BrokerError> {
    match rx.as_mut() {
        Some(rx) => rx
            .await
            .unwrap_or_else(|_| Err(BrokerError::shutting_down())),
        None => std::future::pending().await,
    }
}

impl GroupTask {
    /// Sets when the next flush is due: now when a delivery or a call waits
    /// for it, within the flush interval when anything changed, never when
    /// nothing did (an idle group does not wake up).
    pub(super) fn schedule_flush(&mut self) {
        if self.store.flushing() {
            return;
        }
        let waiting = !self.store.dead_ops.is_empty() || !self.store.waiters.is_empty();
        let need = if waiting {
            Flush::Now
        } else {
            self.dispatcher.flush_need()
        };
        let now = Instant::now();
        match need {
            Flush::Idle => self.store.flush_at = None,
            Flush::Soon => {
                self.store.flush_at.get_or_insert(now + self.flush_interval);
            }
            Flush::Now => self.store.flush_at = Some(now),
        }
    }

    /// Hands what changed to the state writer.
    pub(super) fn flush(&mut self) {
        self.store.flush_at = None;
        let delta = self.dispatcher.take_delta(Instant::now(), now_us(), false);
        let dead_letters = std::mem::take(&mut self.store.dead_ops);
        let waiters = std::mem::take(&mut self.store.waiters);
        if delta.is_none() && dead_letters.is_empty() {
            for w in waiters {
                w(Ok(()));
            }
            return;
        }
        self.store.in_flight_has_delta = delta.is_some();
        self.store.in_flight_dead = dead_letters.put.iter().map(|d| d.id).collect();
        self.store.in_flight_deleted = dead_letters.delete.clone();
        self.store.in_flight_waiters = waiters;
        let write = StateWrite {
            topic: self.key.0.clone(),
            group: self.key.1.clone(),
            generation: self.generation,
            delta,
            dead_letters,
        };
        self.store.in_flight = Some(self.states.write(write));
    }

    /// The flush in flight finished.
    pub(super) fn flushed(&mut self, outcome: Result<(), BrokerError>) {
        self.store.in_flight = None;
        let ok = outcome.is_ok();
        if std::mem::take(&mut self.store.in_flight_has_delta) {
            self.dispatcher.durable(ok);
        }
        let dead = std::mem::take(&mut self.store.in_flight_dead);
        self.store.in_flight_deleted.clear();
        if ok {
            for id in dead {
                if let Some(d) = self.dead.get_mut(&id) {
                    d.durable = true;
                }
            }
        } else if let Err(e) = &outcome {
            tracing::error!(topic = %self.key.0, group = %self.key.1, error = %e, "writing group progress failed");
        }
        for w in std::mem::take(&mut self.store.in_flight_waiters) {
            w(outcome.clone());
        }
    }

    /// At shutdown: the exact state of every entry, so a restart continues
    /// with the same attempt counts.
    pub(super) async fn final_flush(&mut self) {
        if self.store.flushing() {
            let outcome = outcome_of(&mut self.store.in_flight).await;
            self.flushed(outcome);
        }
        self.store_dead();
        let delta = self.dispatcher.take_delta(Instant::now(), now_us(), true);
        let dead_letters = std::mem::take(&mut self.store.dead_ops);
        let write = StateWrite {
            topic: self.key.0.clone(),
            group: self.key.1.clone(),
            generation: self.generation,
            delta,
            dead_letters,
        };
        let outcome = self
            .states
            .write(write)
            .await
            .unwrap_or_else(|_| Err(BrokerError::shutting_down()));
        if let Err(e) = &outcome {
            tracing::error!(topic = %self.key.0, group = %self.key.1, error = %e, "writing group progress at shutdown failed");
        }
        for w in std::mem::take(&mut self.store.waiters) {
            w(outcome.clone());
        }
    }

    /// Queues what the dispatcher gave up on as dead letters and drops the
    /// records of acknowledged replays, for the next flush. Returns whether
    /// there was anything.
    pub(super) fn store_dead(&mut self) -> bool {
        let dead = self.dispatcher.take_dead();
        let acked = self.dispatcher.take_acked_replays();
        if dead.is_empty() && acked.is_empty() {
            return false;
        }
        let wall = now_us();
        self.metrics.dead_lettered(dead.len());
        for d in dead {
            let record = self.dead_letter(d, wall);
            self.store.dead_ops.put.push(record);
        }
        for id in acked {
            self.dead.remove(&id);
            self.store.dead_ops.delete.push(id);
        }
        true
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
                durable: false,
            },
        );
        record
    }

    /// The ids a selection names among the queued (durable, not replaying)
    /// dead letters. `Ids` must all be there; `Matching` takes those that
    /// still are; `All` takes every one within its time bounds (type
    /// filters are resolved by the caller into `Matching`).
    /// With `replaying_ok`, `Ids` may name dead letters being replayed
    /// (they are left out rather than refused).
    fn pick(&self, selection: Selection, replaying_ok: bool) -> Result<Vec<u64>, BrokerError> {
        let queued = |id: &u64| self.dead.get(id).is_some_and(|d| d.durable && !d.replaying);
        let known = |id: &u64| {
            self.dead
                .get(id)
                .is_some_and(|d| d.durable && (replaying_ok || !d.replaying))
        };
        match selection {
            Selection::Ids(ids) => {
                if let Some(missing) = ids.iter().find(|id| !known(id)) {
                    return Err(BrokerError::NotFound(format!(
                        "dead letter {missing} of group {:?} does not exist (or is being replayed)",
                        self.key.1
                    )));
                }
                Ok(ids.into_iter().filter(|id| queued(id)).collect())
            }
            Selection::Matching(ids) => Ok(ids.into_iter().filter(|id| queued(id)).collect()),
            Selection::All(filter) => Ok(self
                .dead
                .iter()
                .filter(|(id, d)| {
                    queued(id)
                        && filter.start_us.is_none_or(|s| d.dead_letter_us >= s)
                        && filter.end_us.is_none_or(|e| d.dead_letter_us < e)
                })
                .map(|(id, _)| *id)
                .collect()),
        }
    }

    /// Puts dead letters back into this group's flow with attempts reset.
    /// Their events are loaded as memory allows; the answer comes once the
    /// replay is durable.
    pub(super) fn replay(
        &mut self,
        selection: Selection,
        reply: oneshot::Sender<Result<DeadLetterCounts, BrokerError>>,
    ) {
        let ids = match self.pick(selection, true) {
            Ok(ids) => ids,
            Err(e) => return refuse(reply, e),
        };
        let mut changed = 0;
        for id in ids {
            if self.dispatcher.queue_replay(id)
                && let Some(d) = self.dead.get_mut(&id)
            {
                d.replaying = true;
                changed += 1;
            }
        }
        let counts = DeadLetterCounts {
            changed,
            remaining: self.dead_count(),
        };
        if changed > 0 {
            tracing::info!(topic = %self.key.0, group = %self.key.1, replayed = changed, "dead letters replayed");
        }
        self.store.when_durable(reply, counts);
    }

    /// Deletes dead letters; the answer comes once that is durable.
    pub(super) fn purge(
        &mut self,
        selection: Selection,
        reply: oneshot::Sender<Result<DeadLetterCounts, BrokerError>>,
    ) {
        let ids = match self.pick(selection, false) {
            Ok(ids) => ids,
            Err(e) => return refuse(reply, e),
        };
        for id in &ids {
            self.dead.remove(id);
        }
        let counts = DeadLetterCounts {
            changed: ids.len() as u64,
            remaining: self.dead_count(),
        };
        if !ids.is_empty() {
            tracing::info!(topic = %self.key.0, group = %self.key.1, purged = counts.changed, "dead letters purged");
        }
        self.store.dead_ops.delete.extend(ids);
        self.store.when_durable(reply, counts);
    }

    /// Answers what listing needs: the ids whose records are on disk but
    /// not in the queue (being replayed, or deleted by a flush not yet
    /// durable), and how many are queued. GetGroup counts a dead letter the
    /// moment the group gives up on the event, while its record reaches the
    /// disk with the next flush; so when some are not on disk yet, the
    /// answer waits for the flush that stores them (a listing never misses
    /// a dead letter GetGroup counted), or fails with it.
    pub(super) fn dead_letter_view(
        &mut self,
        reply: oneshot::Sender<Result<DeadLetterView, BrokerError>>,
    ) {
        let mut hidden: BTreeSet<u64> = self
            .dead
            .iter()
            .filter(|(_, d)| d.replaying)
            .map(|(id, _)| *id)
            .collect();
        hidden.extend(&self.store.dead_ops.delete);
        hidden.extend(&self.store.in_flight_deleted);
        if self.dead.values().all(|d| d.durable) {
            let _ = reply.send(Ok((hidden, self.dead_count())));
            return;
        }
        // Counted as if durable: the answer comes once they are.
        let queued = self.dead.values().filter(|d| !d.replaying).count() as u64;
        self.store.when_durable(reply, (hidden, queued));
    }

    /// Starts loading the events of waiting replays while the group and the
    /// server have memory to spare.
    pub(super) fn load_replays(&mut self) {
        if self.store.loading() || self.dispatcher.cold_count() == 0 {
            return;
        }
        if self.store.load_after.is_some_and(|t| t > Instant::now()) {
            return;
        }
        let room = self.dispatcher.room_bytes().min(self.memory.room());
        if room == 0 && self.dispatcher.held_bytes() > 0 {
            return;
        }
        let ids = self.dispatcher.cold_replays(LOAD_BATCH);
        let meta = self.meta.clone();
        let (topic, group) = self.key.clone();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let loaded = blocking(move || {
                let mut out = Vec::with_capacity(ids.len());
                let mut bytes = 0usize;
                for id in ids {
                    if bytes >= room.max(1) {
                        break;
                    }
                    let record = meta.dead_letter(&topic, &group, id)?;
                    bytes += record.as_ref().map_or(0, |r| r.event.event.size());
                    out.push((id, record));
                }
                Ok(out)
            })
            .await;
            let _ = tx.send(loaded);
        });
        self.store.loading = Some(rx);
    }

    /// Replayed events arrived from the dead-letter store.
    pub(super) fn loaded(&mut self, loaded: Loaded) {
        self.store.loading = None;
        match loaded {
            Ok(records) => {
                let (now, wall) = (Instant::now(), now_us());
                for (id, record) in records {
                    match record {
                        Some(dl) => self.dispatcher.warm_replay(id, dl.event, now, wall),
                        None => {
                            // Purged meanwhile (cannot happen while it is
                            // replaying) or lost: forget the replay.
                            self.dispatcher.drop_cold_replay(id);
                            self.dead.remove(&id);
                        }
                    }
                }
                self.report_memory();
            }
            Err(e) => {
                tracing::error!(topic = %self.key.0, group = %self.key.1, error = %e, "loading replayed dead letters failed");
                self.store.load_after = Some(Instant::now() + Duration::from_secs(1));
                self.store.retry_fill_in(Duration::from_secs(1));
            }
        }
    }
}
