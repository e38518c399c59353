//! Consuming through groups: subscribe (a stream of delivery batches with
//! signed ack ids, whose leases are released when it is dropped), ack, nack
//! and extend.
//!
//! Broker layer: validation and ack ids; the backend holds the leases.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_stream::Stream;

use super::error::BrokerError;
use super::lease::AckIds;
use super::names::check_name;
use super::{Broker, GroupPatch, GroupSettings};
use crate::model::results::{Delivery, LeaseOutcome, LeaseResult};
use crate::storage::backend::{DeliveryStream, Join, LeaseRef, Nack, RawDelivery};

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
/// shutdown or on a storage failure.
pub struct Subscription {
    deliveries: DeliveryStream,
    ack_ids: AckIds,
}

impl Stream for Subscription {
    type Item = Result<Vec<Delivery>, BrokerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.deliveries.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => Poll::Ready(Some(Ok(batch
                .into_iter()
                .map(|d| delivery(&this.ack_ids, d))
                .collect()))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A backend's delivery as consumers see it: its lease becomes an ack id.
pub(super) fn delivery(ack_ids: &AckIds, d: RawDelivery) -> Delivery {
    Delivery {
        ack_id: ack_ids.encode(&d.lease),
        event: d.event,
        attempt: d.attempt,
        deadline_us: d.deadline_us,
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
        self.subscribe_as(topic, group, "", max_in_flight).await
    }

    /// [`Broker::subscribe`] with the consumer's name (shown in logs and,
    /// on a shared backend, in its consumer registry).
    ///
    /// # Errors
    /// As [`Broker::subscribe`].
    pub async fn subscribe_as(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        max_in_flight: Option<u32>,
    ) -> Result<Subscription, BrokerError> {
        let max = self.check_join(topic, group, max_in_flight)?;
        let deliveries = self
            .join(topic, group, consumer, Join::streaming(max))
            .await?;
        Ok(Subscription {
            deliveries,
            ack_ids: self.inner.ack_ids.clone(),
        })
    }

    /// Checks the names and the in-flight limit of a consumer about to
    /// join; returns the limit in force.
    pub(super) fn check_join(
        &self,
        topic: &str,
        group: &str,
        max_in_flight: Option<u32>,
    ) -> Result<usize, BrokerError> {
        check_name("topic", topic)?;
        check_name("group", group)?;
        let config = &self.inner.config;
        let limit = config.max_in_flight_limit;
        let max = match max_in_flight {
            None => config.default_max_in_flight,
            Some(0) => return Err(BrokerError::invalid("max_in_flight", "must be at least 1")),
            Some(n) if n > limit => {
                return Err(BrokerError::invalid(
                    "max_in_flight",
                    format!("{n} is above the limit of {limit}"),
                ));
            }
            Some(n) => n,
        };
        Ok(max as usize)
    }

    /// Joins a group (creating it, and its topic, when allowed) as a
    /// consumer checked by [`Broker::check_join`].
    pub(super) async fn join(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        join: Join,
    ) -> Result<DeliveryStream, BrokerError> {
        let new_group = &self.inner.config.group_defaults;
        self.join_creating(topic, group, consumer, join, new_group)
            .await
    }

    /// [`Broker::join`], creating a missing group with `new_group`.
    async fn join_creating(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        join: Join,
        new_group: &GroupSettings,
    ) -> Result<DeliveryStream, BrokerError> {
        let defaults = self.topic_defaults().map(|t| (new_group, t));
        let backend = &self.inner.backend;
        backend.ensure_group(topic, group, defaults).await?;
        backend.subscribe(topic, group, consumer, join).await
    }

    /// [`Broker::join`], creating a missing group temporary: deleted once
    /// it has had no consumer for `ttl`.
    pub(super) async fn join_temporary(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        join: Join,
        ttl: Duration,
    ) -> Result<DeliveryStream, BrokerError> {
        let patch = GroupPatch {
            expire_after: Some(Some(ttl)),
            ..GroupPatch::default()
        };
        let config = &self.inner.config;
        let mut settings = config.group_defaults.clone();
        patch.apply(&mut settings).map_err(|e| match e {
            BrokerError::InvalidArgument { description, .. } => {
                BrokerError::invalid("open.new_group_expire_after", description)
            }
            other => other,
        })?;
        let joined = self
            .join_creating(topic, group, consumer, join, &settings)
            .await;
        // Whatever came of it, the reaper reads the stored settings: a
        // group that is missing or not temporary is forgotten at its next
        // tick.
        self.inner.watched.note(topic, group, &settings);
        joined
    }

    /// Acknowledges deliveries.
    ///
    /// # Errors
    /// `InvalidArgument` when an ack id is malformed (then nothing is
    /// acked); `Unavailable` when progress cannot be saved.
    pub async fn ack(&self, ack_ids: &[String]) -> Result<Vec<LeaseResult>, BrokerError> {
        let leases = self.parse_ack_ids(ack_ids)?;
        self.ack_leases(ack_ids, &leases).await
    }

    /// Acknowledges the parsed `leases` of `ack_ids`.
    pub(super) async fn ack_leases(
        &self,
        ack_ids: &[String],
        leases: &[LeaseRef],
    ) -> Result<Vec<LeaseResult>, BrokerError> {
        let outcomes = self.inner.backend.ack(leases).await?;
        Ok(results(ack_ids, outcomes.into_iter().map(|o| (o, None))))
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
        let nack = nack_of(delay, reason, dead_letter)?;
        let leases = self.parse_ack_ids(ack_ids)?;
        self.nack_leases(ack_ids, &leases, &nack).await
    }

    /// Rejects the parsed `leases` of `ack_ids` as `nack` says.
    pub(super) async fn nack_leases(
        &self,
        ack_ids: &[String],
        leases: &[LeaseRef],
        nack: &Nack,
    ) -> Result<Vec<LeaseResult>, BrokerError> {
        let outcomes = self.inner.backend.nack(leases, nack).await?;
        Ok(results(ack_ids, outcomes.into_iter().map(|o| (o, None))))
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
        check_extension(extension)?;
        let leases = self.parse_ack_ids(ack_ids)?;
        self.extend_leases(ack_ids, &leases, extension).await
    }

    /// Extends the parsed `leases` of `ack_ids` (extension checked).
    pub(super) async fn extend_leases(
        &self,
        ack_ids: &[String],
        leases: &[LeaseRef],
        extension: Duration,
    ) -> Result<Vec<LeaseResult>, BrokerError> {
        let outcomes = self.inner.backend.extend(leases, extension).await?;
        Ok(results(ack_ids, outcomes.into_iter()))
    }

    pub(super) fn parse_ack_ids(&self, ack_ids: &[String]) -> Result<Vec<LeaseRef>, BrokerError> {
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
        let ids = &self.inner.ack_ids;
        ack_ids
            .iter()
            .enumerate()
            .map(|(i, text)| match ids.decode(text) {
                Some(lease) => Ok(lease),
                None => ids.parse(&format!("ack_ids[{i}]"), text),
            })
            .collect()
    }
}

/// A nack's request, checked: a delay of at most 24 h, a reason of at
/// most [`MAX_REASON_LEN`] bytes.
pub(super) fn nack_of(
    delay: Option<Duration>,
    reason: &str,
    dead_letter: bool,
) -> Result<Nack, BrokerError> {
    if delay.is_some_and(|d| d > Duration::from_secs(24 * 3600)) {
        return Err(BrokerError::invalid("delay", "must be at most 24h"));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(BrokerError::invalid(
            "reason",
            format!("{} bytes, the limit is {MAX_REASON_LEN}", reason.len()),
        ));
    }
    Ok(Nack {
        delay,
        reason: reason.to_string(),
        dead_letter,
    })
}

/// An extension must be positive and at most [`MAX_EXTENSION`].
pub(super) fn check_extension(extension: Duration) -> Result<(), BrokerError> {
    if extension.is_zero() || extension > MAX_EXTENSION {
        return Err(BrokerError::invalid(
            "extension",
            format!("must be positive and at most 1h, got {extension:?}"),
        ));
    }
    Ok(())
}

fn results(
    ack_ids: &[String],
    outcomes: impl Iterator<Item = (LeaseOutcome, Option<i64>)>,
) -> Vec<LeaseResult> {
    ack_ids
        .iter()
        .zip(outcomes)
        .map(|(id, (outcome, deadline_us))| LeaseResult {
            ack_id: id.clone(),
            outcome,
            deadline_us,
        })
        .collect()
}
