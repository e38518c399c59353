//! Consumers of the Redis backend: one task per consumer stream that claims
//! deliveries with the claim script whenever the group may have work (a
//! wake-up from this node or another, a lease or retry falling due, or a
//! once-a-second poll) and hands them to the stream.
//!
//! Storage layer (Redis backend). A consumer is registered in the group
//! (with its node) and in its node's set, so another node can release its
//! leases if this node dies; a dropped stream releases them at once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::sync::mpsc::OwnedPermit;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::model::{Error, echo};
use crate::storage::backend::{DeliveryStream, Join, RawDelivery};
use crate::storage::embedded::dispatch::REPLAY_BIT;
use crate::telemetry::metrics::GroupMetrics;

use super::chunk_cache::Hints;
use super::claim_answer::{Claim, read_claim};
use super::conn::Reply;
use super::{GroupRef, RedisBackend, lock};

/// Longest sleep between claims when nothing wakes the consumer.
pub(super) const POLL: Duration = Duration::from_secs(1);
/// Deliveries in one claim at most.
const BATCH_EVENTS: usize = 1000;

/// Entry keys (as scripts name them) of the deliveries a unary pull's
/// consumer took: their leases stay when it leaves.
type Taken = Arc<std::sync::Mutex<Vec<String>>>;

/// A unary pull's delivery stream: records what it yields.
struct Recorded {
    rx: ReceiverStream<Result<Vec<RawDelivery>, Error>>,
    taken: Taken,
}

impl Stream for Recorded {
    type Item = Result<Vec<RawDelivery>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.rx).poll_next(cx);
        if let Poll::Ready(Some(Ok(batch))) = &next {
            lock(&self.taken).extend(batch.iter().map(|d| script_key(d.lease.key)));
        }
        next
    }
}

/// What a consumer's stream carries.
type Item = Result<Vec<RawDelivery>, Error>;

/// A free place in a consumer's stream.
pub(super) type Slot = OwnedPermit<Item>;

/// A stream consumer of this node, as an ack that claims its next batch
/// in the same script sees it.
pub(super) struct Local {
    pub(super) id: String,
    /// Deliveries in one claim at most.
    pub(super) most: String,
    tx: mpsc::Sender<Item>,
    pub(super) metrics: GroupMetrics,
    /// True once the consumer ends; an ack claiming for it holds a read
    /// lock, so the consumer's leases are released only after such a claim
    /// reached its stream (or failed to).
    closed: Arc<RwLock<bool>>,
}

/// A consumer an ack may claim for: a free slot in its stream, and the
/// consumer kept from ending meanwhile.
pub(super) struct Claimer {
    pub(super) local: Arc<Local>,
    pub(super) slot: Slot,
    _open: OwnedRwLockReadGuard<bool>,
}

impl Local {
    /// A slot in its stream, when it has one free (the claim's deliveries
    /// go there without waiting).
    pub(super) fn reserve(&self) -> Option<Slot> {
        self.tx.clone().try_reserve_owned().ok()
    }
}

/// A consumer as scripts and the node set name it.
struct Consumer {
    group: GroupRef,
    id: String,
    max_in_flight: usize,
    metrics: GroupMetrics,
}

impl Consumer {
    fn member(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.group.topic, self.group.gid, self.group.generation, self.id
        )
    }
}

/// The entry key of a delivery as a lease key (replays: REPLAY_BIT | id).
pub(super) fn entry_key(key: &str) -> Option<u64> {
    match key.strip_prefix('r') {
        Some(id) => id.parse::<u64>().ok().map(|id| id | REPLAY_BIT),
        None => key.parse().ok(),
    }
}

/// The entry key scripts use for a lease key.
pub(super) fn script_key(key: u64) -> String {
    if key & REPLAY_BIT != 0 {
        format!("r{}", key & !REPLAY_BIT)
    } else {
        key.to_string()
    }
}

impl RedisBackend {
    pub(super) async fn subscribe_impl(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        join: Join,
    ) -> Result<DeliveryStream, Error> {
        let g = self.group_ref(topic, group).await?;
        let c = Consumer {
            metrics: GroupMetrics::new(topic, group),
            id: format!("{}/{}", consumer, uuid::Uuid::new_v4().simple()),
            group: g,
            max_in_flight: join.max_in_flight.max(1),
        };
        let taken = join.keep_leases.then(Taken::default);
        self.join(&c).await?;
        let (tx, rx) = mpsc::channel(2);
        let me = self.clone();
        self.inner.connected.fetch_add(1, Ordering::Relaxed);
        self.gauges_of(&c.group);
        let recorded = taken.clone();
        // A unary pull's consumer records what it takes: it claims alone.
        let local = taken.is_none().then(|| {
            let local = Arc::new(Local {
                id: c.id.clone(),
                most: c.max_in_flight.min(BATCH_EVENTS).to_string(),
                tx: tx.clone(),
                metrics: c.metrics.clone(),
                closed: Arc::default(),
            });
            lock(&self.inner.locals)
                .entry(c.group.gid)
                .or_default()
                .push(local.clone());
            local
        });
        self.inner.consumers.spawn(async move {
            let end = me.consume_loop(&c, &tx).await;
            if let Some(local) = local {
                *local.closed.write().await = true;
                me.forget_local(c.group.gid, &local);
            }
            let keep = recorded.map(|t| std::mem::take(&mut *lock(&t))).unwrap_or_default();
            if let Err(e) = me.release(&c, &keep).await {
                tracing::warn!(error = %e, consumer = %c.id, "could not release a consumer's leases");
            }
            me.inner.connected.fetch_sub(1, Ordering::Relaxed);
            if let Some(e) = end {
                let _ = tx.send(Err(e)).await;
            }
        });
        let rx = ReceiverStream::new(rx);
        Ok(match taken {
            None => Box::pin(rx),
            Some(taken) => Box::pin(Recorded { rx, taken }),
        })
    }

    fn forget_local(&self, gid: u64, local: &Arc<Local>) {
        let mut locals = lock(&self.inner.locals);
        if let Some(list) = locals.get_mut(&gid) {
            list.retain(|l| !Arc::ptr_eq(l, local));
            if list.is_empty() {
                locals.remove(&gid);
            }
        }
    }

    /// The stream consumer of group `gid` here, when it is the only one,
    /// and a free slot in its stream. (With several, an ack does not know
    /// whose credit it returns, and holding a slot of the wrong one's
    /// stream during the script stalls that one: a test of 4 consumers
    /// over 50 ordered keys took 60 s instead of 9.)
    pub(super) fn claim_candidate(&self, gid: u64) -> Option<Claimer> {
        let locals = lock(&self.inner.locals);
        let [only] = locals.get(&gid)?.as_slice() else {
            return None;
        };
        let open = only.closed.clone().try_read_owned().ok()?;
        if *open {
            return None;
        }
        Some(Claimer {
            local: only.clone(),
            slot: only.reserve()?,
            _open: open,
        })
    }

    /// Registers the consumer in its group and in this node's set.
    async fn join(&self, c: &Consumer) -> Result<(), Error> {
        let _: i64 = self
            .cmd(
                redis::cmd("SADD")
                    .arg(self.inner.keys.node_consumers(&self.inner.node))
                    .arg(c.member()),
            )
            .await?;
        let gid = c.group.gid.to_string();
        let max = c.max_in_flight.to_string();
        let mut r = self
            .run(
                |s| &s.join,
                &c.group.topic,
                &[
                    gid.as_bytes(),
                    c.group.generation.as_bytes(),
                    c.id.as_bytes(),
                    max.as_bytes(),
                    self.inner.node.as_bytes(),
                ],
            )
            .await?;
        if r.text()? != "OK" {
            return Err(self.gone_error(&c.group).await);
        }
        Ok(())
    }

    /// Ends a consumer's leases but those of entries in `keep` (redelivered
    /// at once) and unregisters it.
    async fn release(&self, c: &Consumer, keep: &[String]) -> Result<(), Error> {
        self.release_member(&self.inner.node, &c.member(), keep)
            .await
    }

    /// Releases a consumer named by its node set member, but the leases of
    /// entries in `keep`.
    pub(super) async fn release_member(
        &self,
        node: &str,
        member: &str,
        keep: &[String],
    ) -> Result<(), Error> {
        let mut parts = member.splitn(4, '\n');
        let (Some(topic), Some(gid), Some(generation), Some(cid)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(());
        };
        let mut args = vec![gid.as_bytes(), generation.as_bytes(), cid.as_bytes()];
        args.extend(keep.iter().map(String::as_bytes));
        let mut r = self.run(|s| &s.release, topic, &args).await?;
        if r.text()? == "OK" && r.int()? > 0 {
            self.group_wake(gid.parse().unwrap_or(0)).notify_waiters();
        }
        let _: i64 = self
            .cmd(
                redis::cmd("SREM")
                    .arg(self.inner.keys.node_consumers(node))
                    .arg(member),
            )
            .await?;
        Ok(())
    }

    /// Why a group's scripts answer GONE: the topic or the group was deleted.
    async fn gone_error(&self, g: &GroupRef) -> Error {
        self.group_gone(g.gid);
        match self.topic_exists(&g.topic).await {
            Ok(false) => Error::NotFound(format!("topic {} was deleted", echo(&g.topic))),
            Ok(true) => Error::NotFound(format!(
                "group {} of topic {} was deleted",
                echo(&g.name),
                echo(&g.topic)
            )),
            Err(e) => e,
        }
    }

    /// Claims and hands out deliveries until the stream is dropped (`None`)
    /// or must end (the error it ends with).
    async fn consume_loop(
        &self,
        c: &Consumer,
        tx: &mpsc::Sender<Result<Vec<RawDelivery>, Error>>,
    ) -> Option<Error> {
        // Listed before the first claim: whatever is appended after it
        // wakes this node.
        let _watching = self.watch_topic(&c.group.topic).await;
        let topic_wake = self.topic_wake(&c.group.topic);
        let group_wake = self.group_wake(c.group.gid);
        let stop = self.inner.consumers_stop.clone();
        let mut failing_since: Option<Instant> = None;
        loop {
            let t = topic_wake.notified();
            let g = group_wake.notified();
            tokio::pin!(t, g);
            t.as_mut().enable();
            g.as_mut().enable();
            let wait = match self.claim(c).await {
                Ok(Claimed::Batch(batch, more, wait)) => {
                    failing_since = None;
                    if !batch.is_empty() {
                        c.metrics.delivered(batch.len());
                        self.touch(c.group.gid);
                        tokio::select! {
                            sent = tx.send(Ok(batch)) => if sent.is_err() { return None },
                            () = stop.cancelled() => return Some(Error::shutting_down()),
                        }
                    }
                    if more {
                        continue;
                    }
                    wait
                }
                Ok(Claimed::NoConsumer) => {
                    // Released by another node that took this one for dead.
                    if let Err(e) = self.join(c).await {
                        return Some(e);
                    }
                    continue;
                }
                Ok(Claimed::Gone) => return Some(self.gone_error(&c.group).await),
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.cfg().timeout * 2
                        || !matches!(e, Error::Unavailable(_))
                    {
                        return Some(e);
                    }
                    Duration::from_millis(200)
                }
            };
            tokio::select! {
                () = &mut t => {}
                () = &mut g => {}
                () = tokio::time::sleep(wait) => {}
                () = tx.closed() => return None,
                () = stop.cancelled() => return Some(Error::shutting_down()),
            }
        }
    }

    /// One claim script call.
    async fn claim(&self, c: &Consumer) -> Result<Claimed, Error> {
        let gid = c.group.gid.to_string();
        let most = c.max_in_flight.min(BATCH_EVENTS);
        let hints = self.claim_hints(&c.group, most);
        let most = most.to_string();
        let bytes = self.inner.batch_bytes.to_string();
        let mut r = self
            .run(
                |s| &s.claim,
                &c.group.topic,
                &[
                    gid.as_bytes(),
                    c.group.generation.as_bytes(),
                    c.id.as_bytes(),
                    most.as_bytes(),
                    bytes.as_bytes(),
                    hints.arg.as_bytes(),
                ],
            )
            .await?;
        match r.text()?.as_str() {
            "OK" => {}
            "NOCONSUMER" => return Ok(Claimed::NoConsumer),
            _ => return Ok(Claimed::Gone),
        }
        let claim = self.take_claim(&mut r, c.group.gid, &c.metrics, &hints)?;
        Ok(Claimed::Batch(claim.batch, claim.more, claim.wait))
    }

    /// The chunks this node holds to offer a claim of up to `most` events
    /// for group `g` (see `chunk_cache.rs`).
    pub(super) fn claim_hints(&self, g: &GroupRef, most: usize) -> Hints {
        self.inner
            .chunks
            .hints(&g.topic, &g.generation, g.gid, most, self.inner.batch_bytes)
    }

    /// Reads a claim's answer after its 'OK' (`hints`: the chunks it was
    /// offered) and notes where the group's next first deliveries start,
    /// which the next claim's hints follow on from.
    pub(super) fn take_claim(
        &self,
        r: &mut Reply,
        gid: u64,
        metrics: &GroupMetrics,
        hints: &Hints,
    ) -> Result<Claim, Error> {
        let claim = read_claim(r, gid, metrics, hints)?;
        if let Some(next) = claim.cursor {
            self.inner.chunks.claimed(gid, next);
        }
        Ok(claim)
    }
}

/// What a claim found.
enum Claimed {
    /// Deliveries (maybe none), whether more are ready now, and how long
    /// until something falls due.
    Batch(Vec<RawDelivery>, bool, Duration),
    /// The consumer is not registered (released by another node).
    NoConsumer,
    /// The group or its topic is gone.
    Gone,
}
