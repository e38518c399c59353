//! Consuming through groups: subscribe (a stream of delivery batches that
//! releases its leases when dropped), ack, nack and extend.
//!
//! Broker layer.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;

use super::Broker;
use super::error::BrokerError;
use super::group::{GroupCmd, GroupHandle, LeaseRef, Outcomes};
use super::lease::AckId;
use super::names::check_name;
use crate::model::results::{Delivery, LeaseOutcome, LeaseResult};

/// Most ack ids in one Ack, Nack or ExtendDeadline call.
pub const MAX_ACK_IDS: usize = 10_000;
/// Longest nack reason.
pub const MAX_REASON_LEN: usize = 1024;
/// Longest ExtendDeadline extension.
pub const MAX_EXTENSION: Duration = Duration::from_secs(3600);

/// A consumer's membership in a group: a stream of delivery batches. When it
/// is dropped (the client left), the consumer's leases are released for
/// redelivery at once. When the group stops, the stream ends with one error
/// that says why: NOT_FOUND when the group or its topic was deleted (so a
/// reconnecting consumer does not silently re-create it), UNAVAILABLE at
/// shutdown.
pub struct Subscription {
    deliveries: mpsc::Receiver<Vec<Delivery>>,
    guard: Guard,
    ended: bool,
}

struct Guard {
    group: GroupHandle,
    consumer: u64,
    broker: Broker,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.broker.inner.connected.fetch_sub(1, Ordering::Relaxed);
        let cmd = GroupCmd::Unsubscribe {
            consumer: self.consumer,
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

impl Subscription {
    /// The consumer id within its group.
    pub fn consumer(&self) -> u64 {
        self.guard.consumer
    }
}

impl Stream for Subscription {
    type Item = Result<Vec<Delivery>, BrokerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.deliveries.poll_recv(cx) {
            Poll::Ready(Some(batch)) => Poll::Ready(Some(Ok(batch))),
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Some(Err(self.guard.group.stopped())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Broker {
    /// Joins `group` of `topic` (creating either when allowed) as a consumer
    /// holding at most `max_in_flight` unacknowledged deliveries.
    ///
    /// # Errors
    /// `InvalidArgument`, `NotFound` (auto-create off), `Unavailable` (shutdown).
    pub async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        max_in_flight: Option<u32>,
    ) -> Result<Subscription, BrokerError> {
        check_name("topic", topic)?;
        check_name("group", group)?;
        let limit = self.inner.config.max_in_flight_limit;
        let max = match max_in_flight {
            None => self.inner.config.default_max_in_flight,
            Some(0) => return Err(BrokerError::invalid("max_in_flight", "must be at least 1")),
            Some(n) if n > limit => {
                return Err(BrokerError::invalid(
                    "max_in_flight",
                    format!("{n} is above the limit of {limit}"),
                ));
            }
            Some(n) => n,
        } as usize;
        let g = self.ensure_group(topic, group).await?;
        let consumer = self.inner.next_consumer.fetch_add(1, Ordering::Relaxed);
        // Room for one batch per slot: the group never blocks on a consumer.
        let (tx, rx) = mpsc::channel(max);
        g.send(GroupCmd::Subscribe {
            consumer,
            max_in_flight: max,
            deliveries: tx,
        })
        .await?;
        self.inner.connected.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            deliveries: rx,
            guard: Guard {
                group: g,
                consumer,
                broker: self.clone(),
            },
            ended: false,
        })
    }

    /// Acknowledges deliveries.
    ///
    /// # Errors
    /// `InvalidArgument` when an ack id is malformed (then nothing is acked).
    pub async fn ack(&self, ack_ids: &[String]) -> Result<Vec<LeaseResult>, BrokerError> {
        self.route(ack_ids, |items, reply| GroupCmd::Ack { items, reply })
            .await
    }

    /// Rejects deliveries: each is retried after `delay` (the group's
    /// backoff when `None`), or dead-lettered now when `dead_letter` is set
    /// or it has used up the group's attempts. `reason` is kept with the
    /// event and shown in dead letters. A nack that dead-letters returns once
    /// the dead letter is durable.
    ///
    /// # Errors
    /// `InvalidArgument` when an ack id is malformed, the delay is over 24 h
    /// or the reason is over 1024 bytes (then nothing changes).
    pub async fn nack(
        &self,
        ack_ids: &[String],
        delay: Option<Duration>,
        reason: &str,
        dead_letter: bool,
    ) -> Result<Vec<LeaseResult>, BrokerError> {
        if delay.is_some_and(|d| d > Duration::from_secs(24 * 3600)) {
            return Err(BrokerError::invalid("delay", "must be at most 24h"));
        }
        if reason.len() > MAX_REASON_LEN {
            return Err(BrokerError::invalid(
                "reason",
                format!("{} bytes, the limit is {MAX_REASON_LEN}", reason.len()),
            ));
        }
        self.route(ack_ids, |items, reply| GroupCmd::Nack {
            items,
            delay,
            reason: reason.to_string(),
            dead_letter,
            reply,
        })
        .await
    }

    /// Sets the deadlines of current leases to now + `extension`.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed ack id or an extension out of range.
    pub async fn extend(
        &self,
        ack_ids: &[String],
        extension: Duration,
    ) -> Result<Vec<LeaseResult>, BrokerError> {
        if extension.is_zero() || extension > MAX_EXTENSION {
            return Err(BrokerError::invalid(
                "extension",
                format!("must be positive and at most 1h, got {extension:?}"),
            ));
        }
        let parsed = self.parse_ack_ids(ack_ids)?;
        let mut results = unknown_results(ack_ids);
        for (g, items) in self.by_group(&parsed) {
            let answer = g
                .ask(|reply| GroupCmd::Extend {
                    items,
                    extension,
                    reply,
                })
                .await;
            if let Some(out) = settled(answer)? {
                for (i, outcome, deadline) in out {
                    results[i].outcome = outcome;
                    results[i].deadline_us = deadline;
                }
            }
        }
        Ok(results)
    }

    async fn route(
        &self,
        ack_ids: &[String],
        make: impl Fn(Vec<LeaseRef>, tokio::sync::oneshot::Sender<Outcomes>) -> GroupCmd,
    ) -> Result<Vec<LeaseResult>, BrokerError> {
        let parsed = self.parse_ack_ids(ack_ids)?;
        let mut results = unknown_results(ack_ids);
        for (g, items) in self.by_group(&parsed) {
            if let Some(out) = settled(g.ask(|reply| make(items, reply)).await)? {
                for (i, outcome) in out {
                    results[i].outcome = outcome;
                }
            }
        }
        Ok(results)
    }

    fn parse_ack_ids(&self, ack_ids: &[String]) -> Result<Vec<AckId>, BrokerError> {
        if ack_ids.is_empty() {
            return Err(BrokerError::invalid(
                "ack_ids",
                "at least one ack id is required",
            ));
        }
        if ack_ids.len() > MAX_ACK_IDS {
            return Err(BrokerError::invalid(
                "ack_ids",
                format!(
                    "{} ack ids, the limit is {MAX_ACK_IDS} per call",
                    ack_ids.len()
                ),
            ));
        }
        ack_ids
            .iter()
            .enumerate()
            .map(|(i, text)| match AckId::decode(text) {
                Some(id) => Ok(id),
                None => AckId::parse(&format!("ack_ids[{i}]"), text),
            })
            .collect()
    }

    /// Groups parsed ids by their (live) group; ids of other runs or of
    /// unknown groups are left out (they stay Unknown).
    fn by_group(&self, parsed: &[AckId]) -> Vec<(GroupHandle, Vec<LeaseRef>)> {
        let groups = self
            .inner
            .groups_by_id
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut out: HashMap<u32, (GroupHandle, Vec<LeaseRef>)> = HashMap::new();
        for (i, id) in parsed.iter().enumerate() {
            if id.run != self.inner.run {
                continue;
            }
            let Some(g) = groups.get(&id.group) else {
                continue;
            };
            out.entry(id.group)
                .or_insert_with(|| (g.clone(), Vec::new()))
                .1
                .push((i, id.offset, id.lease));
        }
        out.into_values().collect()
    }
}

/// The outcomes a group answered; `None` when the group was deleted
/// meanwhile (its ids stay Unknown). Any other failure (storage, shutdown)
/// fails the call: nothing may be answered as done that was not.
fn settled<T>(
    answer: Result<Result<T, BrokerError>, BrokerError>,
) -> Result<Option<T>, BrokerError> {
    match answer.and_then(|inner| inner) {
        Ok(out) => Ok(Some(out)),
        Err(BrokerError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn unknown_results(ack_ids: &[String]) -> Vec<LeaseResult> {
    ack_ids
        .iter()
        .map(|id| LeaseResult {
            ack_id: id.clone(),
            outcome: LeaseOutcome::Unknown,
            deadline_us: None,
        })
        .collect()
}
