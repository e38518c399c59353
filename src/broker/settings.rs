//! Changes to topic and group settings, validated: how a create or update
//! request changes the stored settings.
//!
//! Broker layer.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::BrokerError;
pub use crate::model::settings::{
    AckDurability, Filter, GroupRecord, GroupSettings, Position, TopicRecord, TopicSettings,
};

/// Changes to a topic's settings; `None` leaves a setting as it is (on
/// create: takes the default).
#[derive(Debug, Clone, Default)]
pub struct TopicPatch {
    /// New retention age; `Some(None)` removes the limit.
    pub retention_max_age: Option<Option<Duration>>,
    /// New retention size; `Some(None)` removes the limit.
    pub retention_max_bytes: Option<Option<u64>>,
    /// New dedup window.
    pub dedup_window: Option<Duration>,
    /// New labels (all of them).
    pub labels: Option<BTreeMap<String, String>>,
}

impl TopicPatch {
    /// Applies the patch to `settings`.
    ///
    /// # Errors
    /// `InvalidArgument` for values out of range.
    pub fn apply(&self, settings: &mut TopicSettings) -> Result<(), BrokerError> {
        if let Some(age) = self.retention_max_age {
            if age == Some(Duration::ZERO) {
                return Err(BrokerError::invalid(
                    "topic.retention_max_age",
                    "must be positive; leave it unset to keep events forever",
                ));
            }
            settings.retention_max_age = age;
        }
        if let Some(bytes) = self.retention_max_bytes {
            settings.retention_max_bytes = bytes.filter(|b| *b > 0);
        }
        if let Some(window) = self.dedup_window {
            if window > Duration::from_secs(7 * 24 * 3600) {
                return Err(BrokerError::invalid(
                    "topic.dedup_window",
                    "must be at most 7 days",
                ));
            }
            settings.dedup_window = window;
        }
        if let Some(labels) = &self.labels {
            check_labels("topic.labels", labels)?;
            settings.labels.clone_from(labels);
        }
        Ok(())
    }
}

/// Changes to a group's settings; `None` leaves a setting as it is (on
/// create: takes the default).
#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    /// New filter.
    pub filter: Option<Filter>,
    /// New lease length.
    pub ack_deadline: Option<Duration>,
    /// New minimum backoff.
    pub min_backoff: Option<Duration>,
    /// New maximum backoff.
    pub max_backoff: Option<Duration>,
    /// New multiplier.
    pub multiplier: Option<f64>,
    /// New attempt limit.
    pub max_delivery_attempts: Option<u32>,
    /// New ordering mode.
    pub ordered: Option<bool>,
    /// New ack durability.
    pub ack_durability: Option<AckDurability>,
    /// New expiration: `Some(None)` never expires, `Some(Some(ttl))`
    /// deletes the group after `ttl` without a consumer.
    pub expire_after: Option<Option<Duration>>,
    /// The Pub/Sub attribute filter (validated by the Pub/Sub layer).
    pub attribute_filter: Option<String>,
    /// New dead-letter topic; empty: none.
    pub dead_letter_topic: Option<String>,
    /// New labels (all of them).
    pub labels: Option<BTreeMap<String, String>>,
    /// New message age limit: `Some(None)` none.
    pub max_message_age: Option<Option<Duration>>,
}

/// Most labels on a topic or group, and the longest key or value (Pub/Sub's
/// limits).
const MAX_LABELS: usize = 64;
const MAX_LABEL_LEN: usize = 63;

/// Checks labels as Pub/Sub does: at most 64; keys of 1-63 characters of
/// lowercase letters, digits, `_` and `-`, starting with a letter; values
/// of 0-63 of the same.
///
/// # Errors
/// `InvalidArgument` on `field` naming the offending label.
pub fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), BrokerError> {
    if labels.len() > MAX_LABELS {
        return Err(BrokerError::invalid(
            field,
            format!("{} labels; at most {MAX_LABELS}", labels.len()),
        ));
    }
    let allowed = |s: &str| {
        s.len() <= MAX_LABEL_LEN
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
    };
    for (key, value) in labels {
        let key_ok = allowed(key) && key.starts_with(|c: char| c.is_ascii_lowercase());
        if !key_ok || !allowed(value) {
            return Err(BrokerError::invalid(
                field,
                format!(
                    "label {}={}: keys are 1-63 lowercase letters, digits, '_' or '-' starting with a letter; values 0-63 of the same",
                    crate::model::echo(key),
                    crate::model::echo(value)
                ),
            ));
        }
    }
    Ok(())
}

/// Longest time a temporary group may wait for a consumer.
pub const MAX_EXPIRE_AFTER: Duration = Duration::from_secs(366 * 24 * 3600);

/// Longest lease a group may ask for.
pub const MAX_ACK_DEADLINE: Duration = Duration::from_secs(3600);

impl GroupPatch {
    /// A patch that gives a new group the settings `s` (every field: a
    /// field added to the settings fails to compile here until it is
    /// copied).
    #[must_use]
    pub fn same_as(s: &GroupSettings) -> GroupPatch {
        let GroupSettings {
            filter,
            ack_deadline,
            retry,
            max_delivery_attempts,
            ordered,
            ack_durability,
            expire_after,
            attribute_filter,
            dead_letter_topic,
            labels,
            max_message_age,
        } = s;
        GroupPatch {
            filter: Some(filter.clone()),
            ack_deadline: Some(*ack_deadline),
            min_backoff: Some(retry.min_backoff),
            max_backoff: Some(retry.max_backoff),
            multiplier: Some(retry.multiplier),
            max_delivery_attempts: Some(*max_delivery_attempts),
            ordered: Some(*ordered),
            ack_durability: Some(*ack_durability),
            expire_after: Some(*expire_after),
            attribute_filter: Some(attribute_filter.clone()),
            dead_letter_topic: Some(dead_letter_topic.clone()),
            labels: Some(labels.clone()),
            max_message_age: Some(*max_message_age),
        }
    }

    /// Applies the patch to `settings`, validating the result.
    ///
    /// # Errors
    /// `InvalidArgument` naming the `group.*` field that is out of range.
    pub fn apply(&self, settings: &mut GroupSettings) -> Result<(), BrokerError> {
        let mut next = settings.clone();
        if let Some(filter) = &self.filter {
            next.filter = filter.clone();
        }
        if let Some(deadline) = self.ack_deadline {
            if deadline < Duration::from_millis(10) || deadline > MAX_ACK_DEADLINE {
                return Err(BrokerError::invalid(
                    "group.ack_deadline",
                    format!("must be between 10ms and 1h, got {deadline:?}"),
                ));
            }
            next.ack_deadline = deadline;
        }
        if let Some(v) = self.min_backoff {
            next.retry.min_backoff = v;
        }
        if let Some(v) = self.max_backoff {
            next.retry.max_backoff = v;
        }
        if let Some(v) = self.multiplier {
            next.retry.multiplier = v;
        }
        next.retry
            .check()
            .map_err(|(field, msg)| BrokerError::invalid(format!("group.{field}"), msg))?;
        if let Some(v) = self.max_delivery_attempts {
            next.max_delivery_attempts = v;
        }
        if let Some(v) = self.ordered {
            next.ordered = v;
        }
        if let Some(v) = self.ack_durability {
            next.ack_durability = v;
        }
        if let Some(v) = self.expire_after {
            if v.is_some_and(|ttl| ttl > MAX_EXPIRE_AFTER) {
                return Err(BrokerError::invalid(
                    "group.expiration_policy.ttl",
                    "must be at most 366 days (unset: never expire)",
                ));
            }
            next.expire_after = v;
        }
        if let Some(f) = &self.attribute_filter {
            next.attribute_filter.clone_from(f);
        }
        if let Some(t) = &self.dead_letter_topic {
            if !t.is_empty() {
                super::names::check_name("group.dead_letter_topic", t)?;
            }
            next.dead_letter_topic.clone_from(t);
        }
        if let Some(labels) = &self.labels {
            check_labels("group.labels", labels)?;
            next.labels.clone_from(labels);
        }
        if let Some(v) = self.max_message_age {
            if v.is_some_and(|age| age.is_zero()) {
                return Err(BrokerError::invalid(
                    "group.max_message_age",
                    "must be positive (unset: the topic's retention)",
                ));
            }
            next.max_message_age = v;
        }
        *settings = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_made_from_settings_gives_those_settings() {
        let mut custom = crate::config::Config::default().broker().group_defaults;
        custom.ordered = true;
        custom.ack_durability = AckDurability::Sync;
        custom.expire_after = Some(Duration::from_secs(60));
        custom.dead_letter_topic = "dlq".into();
        custom.max_message_age = Some(Duration::from_secs(600));
        custom.labels.insert("team".into(), "a".into());
        let mut fresh = crate::config::Config::default().broker().group_defaults;
        GroupPatch::same_as(&custom).apply(&mut fresh).unwrap();
        assert_eq!(fresh, custom);
    }

    #[test]
    fn labels_follow_pubsubs_rules() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(
            check_labels(
                "l",
                &labels(&[("team", "billing"), ("env-1", ""), ("a_b", "x-1")])
            )
            .is_ok()
        );
        for bad in [
            ("Team", "x"),
            ("1team", "x"),
            ("", "x"),
            ("team", "Billing"),
            ("team", "a b"),
        ] {
            assert!(check_labels("l", &labels(&[bad])).is_err(), "{bad:?}");
        }
        let long = "a".repeat(64);
        assert!(check_labels("l", &labels(&[(long.as_str(), "x")])).is_err());
        let many: BTreeMap<String, String> =
            (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(check_labels("l", &many).is_err());
    }
}
