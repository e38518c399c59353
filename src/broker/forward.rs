//! Dead-letter forwarding: a group whose settings name a
//! `dead_letter_topic` also publishes each of its dead letters to that
//! topic (Pub/Sub's `dead_letter_policy` maps onto this). The dead letter
//! stays in the group's own queue, where `DeadLetterService` lists and
//! replays it.
//!
//! Broker layer. One task per node, the cross-topic outbox step of DESIGN
//! §3: moving an event to another topic cannot be one atomic step (on a
//! Redis Cluster the two topics live on different shards), so the group's
//! dead-letter queue is the outbox and the backend keeps how far it has
//! been forwarded ([`Forwarded`]). Each `TICK` the task reads that
//! position for every forwarding group it knows of (`expiry.rs` lists
//! them), publishes the dead letters after it to the target topic, and then
//! advances the position. Each forwarded event's id is derived from the
//! group's unique id and the dead-letter id, so a node that dies between
//! the publish and the advance, or two nodes forwarding the same group at
//! once, publish it again under the same id and the target's dedup window
//! (`dedup_window`, 2 minutes by default) stores it once. Dead letters
//! replayed or purged before they are forwarded (within a tick) are not
//! forwarded; one that can never be published to the target (larger than
//! its limits once the attributes are added) is skipped with an error in
//! the log. While the target topic does not exist, forwarding waits.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::expiry::next_tick;
use super::{Broker, BrokerError, DeadLetter, DeadLetterFilter, Inner};
use crate::event::Event;
use crate::storage::backend::{DeadLetterQuery, Forwarded};

/// How often forwarding groups are looked at.
const TICK: Duration = Duration::from_millis(200);
/// Dead letters forwarded per publish.
const BATCH: usize = 100;
/// Bytes of events forwarded per publish, about.
const BATCH_BYTES: usize = 4 << 20;
/// How often one group's trouble is logged.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Attributes a forwarded dead letter carries besides the event's own.
pub const ATTR_TOPIC: &str = "herald-dead-letter-topic";
/// The group that dead-lettered it.
pub const ATTR_GROUP: &str = "herald-dead-letter-group";
/// Deliveries made.
pub const ATTR_ATTEMPTS: &str = "herald-dead-letter-attempts";
/// Why the last delivery failed.
pub const ATTR_REASON: &str = "herald-dead-letter-reason";
/// When the event was published to its topic (RFC 3339).
pub const ATTR_PUBLISH_TIME: &str = "herald-dead-letter-publish-time";
/// Its offset in its topic.
pub const ATTR_OFFSET: &str = "herald-dead-letter-offset";

type Key = (String, String);

/// The forwarder: runs until shutdown, or until the broker is dropped.
pub(super) async fn run(inner: Weak<Inner>, stopping: CancellationToken) {
    let mut warned: HashMap<Key, Instant> = HashMap::new();
    while let Some(broker) = next_tick(&inner, &stopping, TICK).await {
        for key in broker.inner.watched.forwarding() {
            match broker.forward(&key.0, &key.1).await {
                Ok(()) => {}
                Err(BrokerError::NotFound(_)) if !broker.group_exists(&key).await => {
                    broker.inner.watched.forget_forwarding(&key);
                }
                Err(e) => {
                    let due = warned.get(&key).is_none_or(|t| t.elapsed() >= WARN_EVERY);
                    if due {
                        tracing::warn!(topic = %key.0, group = %key.1, error = %e, "forwarding dead letters failed; retrying");
                        warned.insert(key, Instant::now());
                    }
                }
            }
        }
    }
}

impl Broker {
    async fn group_exists(&self, key: &Key) -> bool {
        !matches!(
            self.inner.backend.group_exists(&key.0, &key.1).await,
            Ok(false)
        )
    }

    /// Forwards the group's dead letters after its position, batch by
    /// batch, until none is left.
    ///
    /// # Errors
    /// `NotFound` (the group, or its target topic), storage errors.
    async fn forward(&self, topic: &str, group: &str) -> Result<(), BrokerError> {
        let backend = &self.inner.backend;
        let mut at = backend.forwarded(topic, group).await?;
        if at.newest.is_some_and(|n| n <= at.upto) {
            return Ok(());
        }
        let mut target: Option<String> = None;
        loop {
            let query = DeadLetterQuery {
                after: Some(at.upto),
                oldest_first: true,
                filter: DeadLetterFilter::default(),
                max_entries: BATCH,
                max_bytes: BATCH_BYTES,
            };
            let page = backend.list_dead_letters(topic, group, &query).await?;
            let Some(last) = page.entries.last().map(|d| d.id) else {
                return Ok(());
            };
            let target = match &target {
                Some(t) => t,
                None => match self.forward_target(topic, group).await? {
                    Some(t) => target.insert(t),
                    None => return Ok(()),
                },
            };
            let events: Vec<Event> = page
                .entries
                .iter()
                .map(|d| forwarded_event(topic, group, at.uid, d))
                .collect();
            self.publish_all(target, events).await?;
            at = Forwarded { upto: last, ..at };
            backend.set_forwarded(topic, group, at).await?;
            if !page.more {
                return Ok(());
            }
        }
    }

    /// The topic the group forwards to, read when there is work (another
    /// node may have changed the settings since this one learned of the
    /// group); `None`, and the group forgotten, when it no longer forwards.
    ///
    /// # Errors
    /// `NotFound` (the group, or its target topic), storage errors.
    async fn forward_target(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Option<String>, BrokerError> {
        let backend = &self.inner.backend;
        let target = backend.get_group(topic, group).await?.record.settings;
        let target = target.dead_letter_topic;
        if target.is_empty() {
            self.inner
                .watched
                .forget_forwarding(&(topic.into(), group.into()));
            return Ok(None);
        }
        if !backend.topic_exists(&target).await? {
            return Err(BrokerError::NotFound(format!(
                "dead-letter topic {target:?} of group {group:?} on topic {topic:?} does not exist; dead letters wait for it"
            )));
        }
        Ok(Some(target))
    }

    /// Publishes `events` to `target` in one request; when the request is
    /// refused as invalid, one by one, skipping (and logging) those the
    /// target refuses.
    async fn publish_all(&self, target: &str, events: Vec<Event>) -> Result<(), BrokerError> {
        match self.publish(target, events.clone()).await {
            Err(BrokerError::InvalidArgument { .. }) if events.len() > 1 => {}
            Err(e @ BrokerError::InvalidArgument { .. }) => {
                tracing::error!(topic = %target, error = %e, "a dead letter cannot be forwarded to its dead-letter topic; skipped (it stays in its group's dead-letter queue)");
                return Ok(());
            }
            other => return other.map(|_| ()),
        }
        for event in events {
            Box::pin(self.publish_all(target, vec![event])).await?;
        }
        Ok(())
    }
}

/// The event a dead letter is forwarded as: the original with attributes
/// saying where it came from, under an id that is the same each time the
/// same dead letter is forwarded.
fn forwarded_event(topic: &str, group: &str, uid: u64, d: &DeadLetter) -> Event {
    let mut event = d.event.event.clone();
    event.id = format!("herald-dl-{uid:016x}-{:016x}", d.id);
    let published =
        UNIX_EPOCH + Duration::from_micros(u64::try_from(d.event.publish_time_us).unwrap_or(0));
    event
        .attributes
        .retain(|(k, _)| !k.starts_with("herald-dead-letter-"));
    event.attributes.extend([
        (ATTR_TOPIC.to_string(), topic.to_string()),
        (ATTR_GROUP.to_string(), group.to_string()),
        (ATTR_ATTEMPTS.to_string(), d.attempts.to_string()),
        (ATTR_REASON.to_string(), d.last_reason.clone()),
        (ATTR_PUBLISH_TIME.to_string(), rfc3339(published)),
        (ATTR_OFFSET.to_string(), d.event.offset.to_string()),
    ]);
    event
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::StoredEvent;

    fn dead_letter(id: u64, attributes: Vec<(String, String)>) -> DeadLetter {
        DeadLetter {
            id,
            event: Arc::new(StoredEvent {
                offset: 7,
                publish_time_us: 1_700_000_000_000_000,
                event: Event {
                    id: "original".into(),
                    event_type: "OrderPlaced".into(),
                    key: "k".into(),
                    attributes,
                    ..Event::default()
                },
            }),
            attempts: 5,
            last_reason: "boom".into(),
            first_failure_us: 0,
            last_failure_us: 0,
            dead_letter_us: 0,
        }
    }

    #[test]
    fn a_forwarded_event_says_where_it_came_from_under_a_stable_id() {
        let d = dead_letter(3, vec![("a".into(), "1".into())]);
        let e = forwarded_event("orders", "billing", 42, &d);
        assert_eq!(e.id, "herald-dl-000000000000002a-0000000000000003");
        assert_eq!(e.id, forwarded_event("orders", "billing", 42, &d).id);
        assert_ne!(e.id, forwarded_event("orders", "billing", 43, &d).id);
        assert_eq!(
            (e.event_type.as_str(), e.key.as_str()),
            ("OrderPlaced", "k")
        );
        let attr = |k: &str| {
            e.attributes
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(attr("a"), Some("1"));
        assert_eq!(attr(ATTR_TOPIC), Some("orders"));
        assert_eq!(attr(ATTR_GROUP), Some("billing"));
        assert_eq!(attr(ATTR_ATTEMPTS), Some("5"));
        assert_eq!(attr(ATTR_REASON), Some("boom"));
        assert_eq!(attr(ATTR_OFFSET), Some("7"));
        assert_eq!(attr(ATTR_PUBLISH_TIME), Some("2023-11-14T22:13:20.000000Z"));
    }

    #[test]
    fn forwarding_again_replaces_the_previous_hop_attributes() {
        let d = dead_letter(1, vec![(ATTR_GROUP.into(), "first".into())]);
        let e = forwarded_event("dlq", "second", 1, &d);
        let groups: Vec<_> = e
            .attributes
            .iter()
            .filter(|(k, _)| k == ATTR_GROUP)
            .collect();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].1, "second");
    }
}
