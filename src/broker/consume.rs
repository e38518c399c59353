//! Consuming over one bidirectional stream (SubscriberService.Consume): a
//! consumer's deliveries cut into the batches it asked for, and settling
//! (ack, nack, extend) of deliveries of its own group.
//!
//! Broker layer, over the same backend operations as Subscribe, Ack, Nack
//! and ExtendDeadline. The window (`max_in_flight`, how many leases the
//! consumer holds) is the backend's business; the batch limits only shape
//! what each message carries, so a consumer can hold many batches at once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_stream::Stream;

use super::Broker;
use super::error::BrokerError;
use super::lease::AckIds;
use super::subscribe::{check_extension, delivery, nack_of};
use crate::model::results::{Delivery, LeaseResult};
use crate::storage::backend::{DeliveryStream, Join, LeaseRef};

/// What a consumer asks for when it opens a Consume stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsumeOptions {
    /// Most deliveries held unacknowledged; the server's default when unset.
    pub max_in_flight: Option<u32>,
    /// Most deliveries per batch; no limit of its own when unset.
    pub max_batch: Option<u32>,
    /// Most bytes of events per batch (a larger event travels alone); the
    /// server's `max_batch_bytes` when unset, and never above it.
    pub max_batch_bytes: Option<u32>,
    /// A unary pull: when the batches are dropped, the deliveries taken
    /// from them stay leased until settled or past their deadlines (the
    /// rest are released).
    pub pull: bool,
    /// When joining creates the group, it is temporary with this
    /// `expire_after` (see [`GroupSettings`](super::GroupSettings)).
    pub new_group_expire_after: Option<Duration>,
}

/// The group a stream consumes, learnt from its first delivery or the first
/// ack id that names it (the id changes only when the group is recreated).
type GroupId = Arc<OnceLock<u64>>;

/// A consumer's deliveries in batches of at most `max_batch` deliveries and
/// `max_batch_bytes` of events. Dropping it releases the consumer's leases;
/// it ends with one error that says why, like [`super::Subscription`].
pub struct Batches {
    deliveries: DeliveryStream,
    ack_ids: AckIds,
    group_id: GroupId,
    max_batch: usize,
    max_bytes: usize,
    /// Batches cut from what the backend handed out, not yet taken.
    ready: VecDeque<Vec<Delivery>>,
}

impl Batches {
    /// The deliveries already received and waiting, without waiting for
    /// more (a unary pull returns them with its first batch).
    pub fn take_ready(&mut self) -> Vec<Delivery> {
        self.ready.drain(..).flatten().collect()
    }
}

impl Stream for Batches {
    type Item = Result<Vec<Delivery>, BrokerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(batch) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(batch)));
        }
        match this.deliveries.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(raw))) => {
                if let Some(first) = raw.first() {
                    let _ = this.group_id.set(first.lease.group);
                }
                let batch: Vec<Delivery> = raw
                    .into_iter()
                    .map(|d| delivery(&this.ack_ids, d))
                    .collect();
                cut(batch, this.max_batch, this.max_bytes, &mut this.ready);
                match this.ready.pop_front() {
                    Some(batch) => Poll::Ready(Some(Ok(batch))),
                    // An empty batch (none is sent): look again.
                    None => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Cuts `batch` into batches of at most `max` deliveries and `max_bytes` of
/// events (an event larger than that alone), in order.
fn cut(batch: Vec<Delivery>, max: usize, max_bytes: usize, out: &mut VecDeque<Vec<Delivery>>) {
    let size = |d: &Delivery| d.event.event.size();
    if batch.len() <= max && batch.iter().map(size).sum::<usize>() <= max_bytes {
        if !batch.is_empty() {
            out.push_back(batch);
        }
        return;
    }
    let mut current = Vec::with_capacity(max.min(batch.len()));
    let mut bytes = 0;
    for d in batch {
        let n = size(&d);
        if !current.is_empty() && (current.len() >= max || bytes + n > max_bytes) {
            out.push_back(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += n;
        current.push(d);
    }
    if !current.is_empty() {
        out.push_back(current);
    }
}

/// Settles deliveries of one consumer's group: ack ids of another group are
/// refused (the stream was authorized for its own topic only).
#[derive(Clone)]
pub struct Settler {
    broker: Broker,
    topic: String,
    group: String,
    group_id: GroupId,
}

impl Settler {
    /// Parses `ack_ids` and checks that each names a delivery of this
    /// stream's group. Before the stream knows its group's id (no delivery
    /// and no id of it yet), an id of a group this node does not know
    /// passes: the backend answers UNKNOWN for a group that no longer runs,
    /// as it would to Ack. Once the stream knows its group's id, any other
    /// group's id is refused, known here or not (on Redis, a group this
    /// node has not touched is unknown to it, though it runs elsewhere).
    fn leases(&self, ack_ids: &[String]) -> Result<Vec<LeaseRef>, BrokerError> {
        let leases = self.broker.parse_ack_ids(ack_ids)?;
        for (i, lease) in leases.iter().enumerate() {
            let own = self.group_id.get();
            if own == Some(&lease.group) {
                continue;
            }
            match self.broker.inner.backend.group_name(lease.group) {
                Some((t, g)) if t == self.topic && g == self.group => {
                    let _ = self.group_id.set(lease.group);
                }
                None if own.is_none() => {}
                _ => {
                    return Err(BrokerError::invalid(
                        format!("ack_ids[{i}]"),
                        "is a delivery of another group; a Consume stream settles deliveries \
                         of its own group only",
                    ));
                }
            }
        }
        Ok(leases)
    }

    /// Acknowledges deliveries.
    ///
    /// # Errors
    /// `InvalidArgument` when an ack id is malformed or of another group
    /// (then nothing is acked); `Unavailable` when progress cannot be saved.
    pub async fn ack(&self, ack_ids: &[String]) -> Result<Vec<LeaseResult>, BrokerError> {
        let leases = self.leases(ack_ids)?;
        self.broker.ack_leases(ack_ids, &leases).await
    }

    /// Rejects deliveries, as [`Broker::nack`] does.
    ///
    /// # Errors
    /// As [`Broker::nack`], and `InvalidArgument` for an ack id of another
    /// group.
    pub async fn nack(
        &self,
        ack_ids: &[String],
        delay: Option<Duration>,
        reason: &str,
        dead_letter: bool,
    ) -> Result<Vec<LeaseResult>, BrokerError> {
        let nack = nack_of(delay, reason, dead_letter)?;
        let leases = self.leases(ack_ids)?;
        self.broker.nack_leases(ack_ids, &leases, &nack).await
    }

    /// Sets lease deadlines to now + `extension`, as [`Broker::extend`] does.
    ///
    /// # Errors
    /// As [`Broker::extend`], and `InvalidArgument` for an ack id of another
    /// group.
    pub async fn extend(
        &self,
        ack_ids: &[String],
        extension: Duration,
    ) -> Result<Vec<LeaseResult>, BrokerError> {
        check_extension(extension)?;
        let leases = self.leases(ack_ids)?;
        self.broker.extend_leases(ack_ids, &leases, extension).await
    }
}

impl Broker {
    /// Joins `group` of `topic` (creating either when allowed) as the
    /// consumer of a Consume stream: its batches, and what settles them.
    ///
    /// # Errors
    /// `InvalidArgument` (names, `max_in_flight`, `max_batch`,
    /// `max_batch_bytes`), `NotFound` (auto-create off), `Unavailable`.
    pub async fn consume(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        options: ConsumeOptions,
    ) -> Result<(Batches, Settler), BrokerError> {
        let max_in_flight = self.check_join(topic, group, options.max_in_flight)?;
        let max_batch = match options.max_batch {
            Some(0) => return Err(BrokerError::invalid("max_batch", "must be at least 1")),
            Some(n) => n as usize,
            None => usize::MAX,
        };
        let ceiling = self.inner.config.max_batch_bytes;
        let max_bytes = match options.max_batch_bytes {
            Some(0) => {
                return Err(BrokerError::invalid(
                    "max_batch_bytes",
                    "must be at least 1",
                ));
            }
            Some(n) => (n as usize).min(ceiling),
            None => ceiling,
        };
        let join = Join {
            max_in_flight,
            keep_leases: options.pull,
        };
        let deliveries = match options.new_group_expire_after {
            None => self.join(topic, group, consumer, join).await?,
            Some(ttl) => {
                self.join_temporary(topic, group, consumer, join, ttl)
                    .await?
            }
        };
        let group_id = GroupId::default();
        let batches = Batches {
            deliveries,
            ack_ids: self.inner.ack_ids.clone(),
            group_id: group_id.clone(),
            max_batch,
            max_bytes,
            ready: VecDeque::new(),
        };
        let settler = Settler {
            broker: self.clone(),
            topic: topic.to_string(),
            group: group.to_string(),
            group_id,
        };
        Ok((batches, settler))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, StoredEvent};

    fn delivery(offset: u64, data: usize) -> Delivery {
        Delivery {
            ack_id: offset.to_string(),
            event: Arc::new(StoredEvent {
                event: Event {
                    data: vec![0; data].into(),
                    ..Default::default()
                },
                offset,
                publish_time_us: 0,
            }),
            attempt: 1,
            deadline_us: 0,
        }
    }

    fn shape(batch: Vec<Delivery>, max: usize, max_bytes: usize) -> Vec<Vec<u64>> {
        let mut out = VecDeque::new();
        cut(batch, max, max_bytes, &mut out);
        out.into_iter()
            .map(|b| b.iter().map(|d| d.event.offset).collect())
            .collect()
    }

    #[test]
    fn batches_are_cut_by_count_and_bytes_in_order() {
        let batch = || (0..7).map(|i| delivery(i, 10)).collect::<Vec<_>>();
        assert_eq!(shape(batch(), 100, 1000), vec![vec![0, 1, 2, 3, 4, 5, 6]]);
        assert_eq!(
            shape(batch(), 3, 1000),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]
        );
        assert_eq!(
            shape(batch(), 100, 25),
            vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6]]
        );
        // A large event travels alone; nothing is dropped or reordered.
        let mixed = vec![
            delivery(0, 5),
            delivery(1, 50),
            delivery(2, 5),
            delivery(3, 5),
        ];
        assert_eq!(shape(mixed, 100, 20), vec![vec![0], vec![1], vec![2, 3]]);
        assert!(shape(Vec::new(), 1, 1).is_empty());
    }
}
