//! Subscriptions as groups: finding a subscription's group (a Pub/Sub
//! subscription is named without its topic), and the settings a
//! Subscription asks for as a group's.
//!
//! Pub/Sub layer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Status;

use super::convert::{NO_TAGS, NO_TRANSFORMS, duration_in};
use super::detach::DETACHED;
use super::names::{self, Kind};
use super::{Front, filter};
use crate::broker::settings::MAX_EXPIRE_AFTER;
use crate::broker::{BrokerError, GroupPatch};
use crate::grpc::convert::duration as duration_out;
use crate::grpc::guard::Caller;
use crate::grpc::status::to_status;
use crate::model::results::GroupInfo;
use crate::model::settings::AckDurability;
use crate::proto::google::pubsub::v1::{
    DeadLetterPolicy, ExpirationPolicy, RetryPolicy, Subscription, subscription,
};

/// Pub/Sub's bounds of `ack_deadline_seconds`, and its default.
const MIN_ACK_DEADLINE: i32 = 10;
const MAX_ACK_DEADLINE: i32 = 600;
const DEFAULT_ACK_DEADLINE: i32 = 10;
/// Pub/Sub's bounds of a retry policy's backoffs, and its defaults.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
const DEFAULT_MIN_BACKOFF: Duration = Duration::from_secs(10);
/// Pub/Sub's bounds of `max_delivery_attempts` with a dead-letter policy,
/// and its default.
const DEAD_LETTER_ATTEMPTS: std::ops::RangeInclusive<i32> = 5..=100;
const DEFAULT_DEAD_LETTER_ATTEMPTS: u32 = 5;
/// Pub/Sub's bounds of a subscription's `message_retention_duration`.
const MIN_RETENTION: Duration = Duration::from_secs(600);
const MAX_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Pub/Sub's shortest expiration ttl.
const MIN_TTL: Duration = Duration::from_secs(86_400);

/// Groups looked at per storage call while searching.
const SCAN_PAGE: usize = 500;
/// Most subscriptions whose topic is remembered (then it starts over).
const SEEN_MAX: usize = 100_000;

/// Herald group name → the topic where it was last found: a hint, checked
/// on every use.
pub(crate) type Seen = Arc<Mutex<HashMap<String, String>>>;

fn lock(seen: &Seen) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Front {
    /// The group of Herald name `group` on any topic (Pub/Sub subscriptions
    /// are unique by name; with `herald.v1` groups of one name on several
    /// topics, one of them). Every ack and pull names its subscription, so
    /// the topic where it was last found is tried first (one lookup); only
    /// a miss scans the groups.
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) async fn find_group(&self, group: &str) -> Result<Option<GroupInfo>, Status> {
        let hint = lock(&self.seen).get(group).cloned();
        if let Some(topic) = hint {
            if let Some(info) = self.group_on(&topic, group).await? {
                return Ok(Some(info));
            }
            lock(&self.seen).remove(group);
        }
        let Some(scanned) = self.groups_named(group, true).await?.into_iter().next() else {
            return Ok(None);
        };
        // Looked up by name too, so the node knows the group by its id
        // (ack ids name it by id).
        let found = self.group_on(&scanned.record.topic, group).await?;
        if let Some(g) = &found {
            let mut seen = lock(&self.seen);
            if seen.len() >= SEEN_MAX {
                seen.clear();
            }
            seen.insert(group.to_string(), g.record.topic.clone());
        }
        Ok(found)
    }

    /// Group `group` of `topic`; `None` when it does not exist.
    async fn group_on(&self, topic: &str, group: &str) -> Result<Option<GroupInfo>, Status> {
        match self.broker().get_group(topic, group).await {
            Ok(info) => Ok(Some(info)),
            Err(BrokerError::NotFound(_)) => Ok(None),
            Err(e) => Err(to_status(e)),
        }
    }

    /// The groups of Herald name `group` on every topic, in topic order
    /// (only the first when `first`).
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) async fn groups_named(
        &self,
        group: &str,
        first: bool,
    ) -> Result<Vec<GroupInfo>, Status> {
        let mut after = None;
        let mut found = Vec::new();
        loop {
            let (page, more) = self
                .broker()
                .list_groups(None, after, SCAN_PAGE)
                .await
                .map_err(to_status)?;
            found.extend(page.into_iter().filter(|g| g.record.name == group));
            match more {
                Some(next) if !first || found.is_empty() => after = Some(next),
                _ => return Ok(found),
            }
        }
    }

    /// A page of what `shown` makes of the groups the caller may see, in
    /// (topic, group) order after `page_token` (the `topic/group` of the
    /// last one of the previous page), and the next page's token (empty
    /// at the end).
    ///
    /// # Errors
    /// INVALID_ARGUMENT (page size), storage failures.
    pub(crate) async fn list_groups_as<T>(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
        shown: impl Fn(&GroupInfo) -> Option<T>,
    ) -> Result<(Vec<T>, String), Status> {
        let size = super::publisher::page_size(page_size)?;
        let mut after = page_token
            .split_once('/')
            .map(|(t, g)| (t.to_string(), g.to_string()));
        let mut items: Vec<(String, T)> = Vec::new();
        loop {
            let (page, more) = self
                .broker()
                .list_groups(None, after.take(), SCAN_PAGE)
                .await
                .map_err(to_status)?;
            for group in page {
                if !caller.may_see(&group.record.topic) {
                    continue;
                }
                let Some(item) = shown(&group) else {
                    continue;
                };
                if items.len() == size {
                    let next = items.last().map(|(t, _)| t.clone()).unwrap_or_default();
                    return Ok((items.into_iter().map(|(_, i)| i).collect(), next));
                }
                items.push((
                    format!("{}/{}", group.record.topic, group.record.name),
                    item,
                ));
            }
            match more {
                Some(token) => after = Some(token),
                None => return Ok((items.into_iter().map(|(_, i)| i).collect(), String::new())),
            }
        }
    }

    /// A group as a Subscription, when both its name and its topic's are
    /// Pub/Sub names.
    pub(crate) fn subscription(&self, g: &GroupInfo) -> Option<Subscription> {
        let name = self.resource(Kind::Subscription, &g.record.name)?;
        let detached = g.record.topic == DETACHED;
        let topic = if detached {
            DETACHED.to_string()
        } else {
            self.resource(Kind::Topic, &g.record.topic)?.to_string()
        };
        let s = &g.record.settings;
        Some(Subscription {
            name: name.to_string(),
            topic,
            detached,
            ack_deadline_seconds: i32::try_from(s.ack_deadline.as_secs()).unwrap_or(i32::MAX),
            enable_message_ordering: s.ordered,
            retry_policy: Some(RetryPolicy {
                minimum_backoff: Some(duration_out(s.retry.min_backoff)),
                maximum_backoff: Some(duration_out(s.retry.max_backoff)),
            }),
            // An empty policy: never expires.
            expiration_policy: Some(ExpirationPolicy {
                ttl: s.expire_after.map(duration_out),
            }),
            filter: s.attribute_filter.clone(),
            retain_acked_messages: true,
            message_retention_duration: s.max_message_age.map(duration_out),
            enable_exactly_once_delivery: s.ack_durability == AckDurability::Sync,
            state: subscription::State::Active.into(),
            labels: s.labels.clone().into_iter().collect(),
            dead_letter_policy: self.resource(Kind::Topic, &s.dead_letter_topic).map(|t| {
                DeadLetterPolicy {
                    dead_letter_topic: t.to_string(),
                    max_delivery_attempts: i32::try_from(s.max_delivery_attempts)
                        .unwrap_or(i32::MAX),
                }
            }),
            ..Subscription::default()
        })
    }
}

/// Every field a Subscription may set, for CreateSubscription.
pub const SUBSCRIPTION_FIELDS: &[&str] = &[
    "ack_deadline_seconds",
    "enable_message_ordering",
    "retry_policy",
    "expiration_policy",
    "push_config",
    "filter",
    "dead_letter_policy",
    "labels",
    "retain_acked_messages",
    "message_retention_duration",
    "enable_exactly_once_delivery",
    "bigquery_config",
    "cloud_storage_config",
    "bigtable_config",
    "message_transforms",
    "tags",
];

/// Why export subscriptions are refused.
const NO_EXPORT: &str = "Export subscriptions (BigQuery, Cloud Storage, Bigtable) are not offered \
                         by Herald; use Pull or StreamingPull.";

/// The group settings `fields` of a Subscription ask for (names under
/// `default_project`). Fields Herald does not serve yet are refused when
/// set, not dropped.
///
/// # Errors
/// INVALID_ARGUMENT.
pub fn group_patch(
    s: &Subscription,
    fields: &[&str],
    existing: Option<&GroupInfo>,
    default_project: &str,
) -> Result<GroupPatch, Status> {
    let update = existing.is_some();
    let current_filter = existing.map_or("", |g| g.record.settings.attribute_filter.as_str());
    let mut patch = GroupPatch::default();
    for field in fields {
        let unset = match *field {
            "ack_deadline_seconds" => {
                patch.ack_deadline = Some(ack_deadline(s.ack_deadline_seconds)?);
                true
            }
            "enable_message_ordering" => {
                patch.ordered = Some(s.enable_message_ordering);
                true
            }
            // Without a policy the group keeps its backoff (the server's
            // `groups` defaults on creation).
            "retry_policy" => {
                if let Some(retry) = &s.retry_policy {
                    patch.min_backoff = Some(backoff(&retry.minimum_backoff, "minimum_backoff")?);
                    patch.max_backoff = Some(backoff(&retry.maximum_backoff, "maximum_backoff")?);
                }
                true
            }
            "expiration_policy" => {
                patch.expire_after = Some(expiration(s.expiration_policy.as_ref())?);
                true
            }
            "push_config" => {
                if s.push_config
                    .as_ref()
                    .is_some_and(|p| !p.push_endpoint.is_empty())
                {
                    return Err(Status::unimplemented(
                        "Push delivery (push_config) is not offered by Herald; use Pull or StreamingPull.",
                    ));
                }
                true
            }
            // Exactly-once delivery is Herald's durable acks: an ack is
            // confirmed once the group's state is synced.
            "enable_exactly_once_delivery" => {
                patch.ack_durability = Some(if s.enable_exactly_once_delivery {
                    AckDurability::Sync
                } else {
                    AckDurability::Batched
                });
                true
            }
            "bigquery_config" => s.bigquery_config.is_none() || refuse(NO_EXPORT)?,
            "cloud_storage_config" => s.cloud_storage_config.is_none() || refuse(NO_EXPORT)?,
            "bigtable_config" => s.bigtable_config.is_none() || refuse(NO_EXPORT)?,
            "message_transforms" => s.message_transforms.is_empty() || refuse(NO_TRANSFORMS)?,
            "tags" => s.tags.is_empty() || refuse(NO_TAGS)?,
            // Set at creation only, as in Pub/Sub (an update must repeat it).
            "filter" if update => {
                if s.filter != current_filter {
                    return Err(Status::invalid_argument(
                        "The filter of a subscription cannot be changed after it is created.",
                    ));
                }
                true
            }
            "filter" => {
                filter::parse(&s.filter).map_err(Status::invalid_argument)?;
                patch.attribute_filter = Some(s.filter.clone());
                true
            }
            "dead_letter_policy" => {
                dead_letter(s.dead_letter_policy.as_ref(), &mut patch, default_project)?;
                true
            }
            "labels" => {
                patch.labels = Some(s.labels.clone().into_iter().collect());
                true
            }
            // Herald always keeps acked messages for the topic's retention
            // (Seek to a time delivers them again): either value is served.
            "retain_acked_messages" => true,
            // Unacknowledged messages older than this are dropped, not
            // delivered; unset: the topic's retention.
            "message_retention_duration" => {
                patch.max_message_age = Some(
                    s.message_retention_duration
                        .as_ref()
                        .map(subscription_retention)
                        .transpose()?,
                );
                true
            }
            "name" | "topic" | "state" => true,
            other => {
                return Err(Status::invalid_argument(format!(
                    "Invalid update_mask: {} is not a Subscription field Herald knows.",
                    crate::model::echo(other)
                )));
            }
        };
        if !unset {
            return Err(Status::invalid_argument(format!(
                "Subscription field {field} is not supported by Herald yet."
            )));
        }
    }
    Ok(patch)
}

/// A subscription's `message_retention_duration`: 10 minutes to 7 days,
/// as in Pub/Sub.
fn subscription_retention(d: &prost_types::Duration) -> Result<Duration, Status> {
    duration_in(d)
        .filter(|d| (MIN_RETENTION..=MAX_RETENTION).contains(d))
        .ok_or_else(|| {
            Status::invalid_argument(
                "Invalid message_retention_duration: it must be between 10 minutes and 7 days.",
            )
        })
}

/// UNIMPLEMENTED with `why`.
fn refuse(why: &'static str) -> Result<bool, Status> {
    Err(Status::unimplemented(why))
}

fn ack_deadline(seconds: i32) -> Result<Duration, Status> {
    let seconds = match seconds {
        0 => DEFAULT_ACK_DEADLINE,
        d if (MIN_ACK_DEADLINE..=MAX_ACK_DEADLINE).contains(&d) => d,
        _ => {
            return Err(Status::invalid_argument(
                "Invalid ack_deadline_seconds: it must be between 10 and 600.",
            ));
        }
    };
    Ok(Duration::from_secs(u64::from(seconds.unsigned_abs())))
}

/// A retry policy's backoff; unset is Pub/Sub's default for that bound.
fn backoff(d: &Option<prost_types::Duration>, field: &str) -> Result<Duration, Status> {
    let Some(d) = d else {
        return Ok(match field {
            "minimum_backoff" => DEFAULT_MIN_BACKOFF,
            _ => MAX_BACKOFF,
        });
    };
    duration_in(d).filter(|d| *d <= MAX_BACKOFF).ok_or_else(|| {
        Status::invalid_argument(format!(
            "Invalid retry_policy.{field}: it must be between 0 and 600 seconds."
        ))
    })
}

/// A dead-letter policy as the group's dead-letter topic and attempt
/// limit; none (or one without a topic) removes the topic and keeps the
/// limit.
fn dead_letter(
    policy: Option<&DeadLetterPolicy>,
    patch: &mut GroupPatch,
    default_project: &str,
) -> Result<(), Status> {
    let Some(p) = policy.filter(|p| !p.dead_letter_topic.is_empty()) else {
        patch.dead_letter_topic = Some(String::new());
        return Ok(());
    };
    let topic = names::parse(Kind::Topic, &p.dead_letter_topic, default_project).map_err(|e| {
        Status::invalid_argument(format!("Invalid dead_letter_policy.dead_letter_topic: {e}"))
    })?;
    let attempts = match p.max_delivery_attempts {
        0 => DEFAULT_DEAD_LETTER_ATTEMPTS,
        n if DEAD_LETTER_ATTEMPTS.contains(&n) => n.unsigned_abs(),
        _ => {
            return Err(Status::invalid_argument(
                "Invalid dead_letter_policy.max_delivery_attempts: it must be between 5 and 100.",
            ));
        }
    };
    patch.dead_letter_topic = Some(names::to_herald(&topic, default_project));
    patch.max_delivery_attempts = Some(attempts);
    Ok(())
}

/// An expiration policy's ttl: none (or no ttl) never expires.
fn expiration(policy: Option<&ExpirationPolicy>) -> Result<Option<Duration>, Status> {
    let Some(d) = policy.and_then(|p| p.ttl.as_ref()) else {
        return Ok(None);
    };
    let ttl = duration_in(d).filter(|d| *d >= MIN_TTL && *d <= MAX_EXPIRE_AFTER);
    ttl.map(Some).ok_or_else(|| {
        Status::invalid_argument("Invalid expiration_policy.ttl: it must be at least 1 day.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_asks_for_group_settings() {
        let s = Subscription {
            ack_deadline_seconds: 30,
            enable_message_ordering: true,
            retry_policy: Some(RetryPolicy {
                minimum_backoff: Some(duration_out(Duration::from_secs(1))),
                maximum_backoff: Some(duration_out(Duration::from_secs(60))),
            }),
            ..Subscription::default()
        };
        let p = group_patch(&s, SUBSCRIPTION_FIELDS, None, "p").unwrap();
        assert_eq!(p.ack_deadline, Some(Duration::from_secs(30)));
        assert_eq!(p.ordered, Some(true));
        assert_eq!(p.min_backoff, Some(Duration::from_secs(1)));
        assert_eq!(p.max_backoff, Some(Duration::from_secs(60)));
        let default =
            group_patch(&Subscription::default(), SUBSCRIPTION_FIELDS, None, "p").unwrap();
        assert_eq!(default.ack_deadline, Some(Duration::from_secs(10)));
    }

    #[test]
    fn out_of_range_or_unsupported_fields_are_refused() {
        let bad = Subscription {
            ack_deadline_seconds: 5,
            ..Subscription::default()
        };
        assert!(group_patch(&bad, SUBSCRIPTION_FIELDS, None, "p").is_err());
        let filtered = Subscription {
            filter: "attributes.k = \"v\"".into(),
            ..Subscription::default()
        };
        let patch = group_patch(&filtered, SUBSCRIPTION_FIELDS, None, "p").unwrap();
        assert_eq!(
            patch.attribute_filter.as_deref(),
            Some("attributes.k = \"v\"")
        );
        let malformed = Subscription {
            filter: "attributes.k = v".into(),
            ..Subscription::default()
        };
        assert!(group_patch(&malformed, SUBSCRIPTION_FIELDS, None, "p").is_err());
        assert!(group_patch(&Subscription::default(), &["nope"], None, "p").is_err());
    }
}
