//! Consuming through the embedded backend's groups: subscribe (a stream of
//! delivery batches that releases its leases when dropped), and ack, nack
//! and extend routed to each lease's group task.
//!
//! Storage layer (embedded backend).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;

use super::EmbeddedBackend;
use super::group::{GroupCmd, GroupHandle, LeaseItem, Outcomes};
use crate::model::Error;
use crate::model::results::LeaseOutcome;
use crate::model::settings::{GroupSettings, TopicSettings};
use crate::storage::backend::{DeliveryStream, Join, LeaseRef, Nack, RawDelivery};

/// A consumer's membership in a group: a stream of delivery batches. When it
/// is dropped (the client left), the consumer's leases are released for
/// redelivery at once, except, for a unary pull's consumer, those of the
/// deliveries it took. When the group stops, the stream ends with one error
/// that says why: NOT_FOUND when the group or its topic was deleted (so a
/// reconnecting consumer does not silently re-create it), UNAVAILABLE at
/// shutdown or on a storage failure.
struct Subscription {
    deliveries: mpsc::Receiver<Vec<RawDelivery>>,
    guard: Guard,
    ended: bool,
}

struct Guard {
    group: GroupHandle,
    consumer: u64,
    /// A unary pull's consumer: the entries it took, whose leases stay
    /// when it leaves.
    taken: Option<HashSet<u64>>,
    backend: EmbeddedBackend,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.backend.inner.connected.fetch_sub(1, Ordering::Relaxed);
        let cmd = GroupCmd::Unsubscribe {
            consumer: self.consumer,
            keep: self.taken.take().unwrap_or_default(),
        };
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.group.tx.try_send(cmd) {
            let tx = self.group.tx.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Vec<RawDelivery>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.deliveries.poll_recv(cx) {
            Poll::Ready(Some(batch)) => {
                if let Some(taken) = &mut self.guard.taken {
                    taken.extend(batch.iter().map(|d| d.lease.key));
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Some(Err(self.guard.group.stopped())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl EmbeddedBackend {
    pub(super) async fn ensure_group_impl(
        &self,
        topic: &str,
        group: &str,
        defaults: Option<(&GroupSettings, &TopicSettings)>,
    ) -> Result<(), Error> {
        self.ensure_group_handle(topic, group, defaults).await?;
        Ok(())
    }

    pub(super) async fn subscribe_impl(
        &self,
        topic: &str,
        group: &str,
        join: Join,
    ) -> Result<DeliveryStream, Error> {
        let max_in_flight = join.max_in_flight;
        let g = self.find_group(topic, group)?;
        let consumer = self.inner.next_consumer.fetch_add(1, Ordering::Relaxed);
        // Room for one batch per slot: the group never blocks on a consumer.
        let (tx, rx) = mpsc::channel(max_in_flight.max(1));
        g.send(GroupCmd::Subscribe {
            consumer,
            max_in_flight,
            deliveries: tx,
            keeps_leases: join.keep_leases,
        })
        .await?;
        self.inner.connected.fetch_add(1, Ordering::Relaxed);
        Ok(Box::pin(Subscription {
            deliveries: rx,
            guard: Guard {
                group: g,
                consumer,
                taken: join.keep_leases.then(HashSet::new),
                backend: self.clone(),
            },
            ended: false,
        }))
    }

    pub(super) async fn ack_impl(&self, leases: &[LeaseRef]) -> Result<Vec<LeaseOutcome>, Error> {
        self.route(leases, |items, reply| GroupCmd::Ack { items, reply })
            .await
    }

    pub(super) async fn nack_impl(
        &self,
        leases: &[LeaseRef],
        nack: &Nack,
    ) -> Result<Vec<LeaseOutcome>, Error> {
        self.route(leases, |items, reply| GroupCmd::Nack {
            items,
            delay: nack.delay,
            reason: nack.reason.clone(),
            dead_letter: nack.dead_letter,
            reply,
        })
        .await
    }

    pub(super) async fn extend_impl(
        &self,
        leases: &[LeaseRef],
        extension: Duration,
    ) -> Result<Vec<(LeaseOutcome, Option<i64>)>, Error> {
        let mut results = vec![(LeaseOutcome::Unknown, None); leases.len()];
        for (g, items) in self.by_group(leases) {
            let answer = g
                .ask(|reply| GroupCmd::Extend {
                    items,
                    extension,
                    reply,
                })
                .await;
            if let Some(out) = settled(answer)? {
                for (i, outcome, deadline) in out {
                    results[i] = (outcome, deadline);
                }
            }
        }
        Ok(results)
    }

    async fn route(
        &self,
        leases: &[LeaseRef],
        make: impl Fn(Vec<LeaseItem>, tokio::sync::oneshot::Sender<Outcomes>) -> GroupCmd,
    ) -> Result<Vec<LeaseOutcome>, Error> {
        let mut results = vec![LeaseOutcome::Unknown; leases.len()];
        for (g, items) in self.by_group(leases) {
            if let Some(out) = settled(g.ask(|reply| make(items, reply)).await)? {
                for (i, outcome) in out {
                    results[i] = outcome;
                }
            }
        }
        Ok(results)
    }

    /// Groups leases by their (live) group; leases of unknown groups are
    /// left out (they stay Unknown).
    fn by_group(&self, leases: &[LeaseRef]) -> Vec<(GroupHandle, Vec<LeaseItem>)> {
        let groups = self
            .inner
            .groups_by_id
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut out: HashMap<u64, (GroupHandle, Vec<LeaseItem>)> = HashMap::new();
        for (i, lease) in leases.iter().enumerate() {
            let Some(g) = groups.get(&lease.group) else {
                continue;
            };
            out.entry(lease.group)
                .or_insert_with(|| (g.clone(), Vec::new()))
                .1
                .push((i, lease.key, lease.lease));
        }
        out.into_values().collect()
    }
}

/// The outcomes a group answered; `None` when the group was deleted
/// meanwhile (its leases stay Unknown). Any other failure (storage,
/// shutdown) fails the call: nothing may be answered as done that was not.
fn settled<T>(answer: Result<Result<T, Error>, Error>) -> Result<Option<T>, Error> {
    match answer.and_then(|inner| inner) {
        Ok(out) => Ok(Some(out)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
