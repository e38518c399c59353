//! Topic and group settings: what is stored, what the defaults are, and how a
//! create or update request changes them.
//!
//! Broker layer. Records are serialised as JSON into the metadata store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::backoff::RetryPolicy;
use super::error::BrokerError;

/// Stored settings of a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicSettings {
    /// Segments whose newest event is older than this are deleted. `None`: forever.
    #[serde(with = "humantime_serde", default)]
    pub retention_max_age: Option<Duration>,
    /// Oldest segments are deleted while the topic is larger. `None`: no limit.
    #[serde(default)]
    pub retention_max_bytes: Option<u64>,
    /// Window for recognising re-published ids; zero: off.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
}

/// Stored record of a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Topic name.
    pub name: String,
    /// Creation time, µs since the epoch.
    pub created_us: i64,
    /// Current settings.
    pub settings: TopicSettings,
}

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
        Ok(())
    }
}

/// Which events a group wants; empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Exact event types.
    pub types: Vec<String>,
    /// Dot-segment patterns (`*` one segment, `#` or trailing `>` any number).
    pub patterns: Vec<String>,
}

/// Where a group starts, or is moved to by Seek.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Position {
    /// The first retained event.
    Earliest,
    /// The end of the topic.
    Latest,
    /// An exact offset.
    Offset(u64),
    /// The first event published at or after this time (µs since the epoch).
    Time(i64),
}

/// Stored settings of a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Which events the group wants.
    pub filter: Filter,
    /// Lease length of a delivery.
    #[serde(with = "humantime_serde")]
    pub ack_deadline: Duration,
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// Failures before dead-lettering; 0: never.
    pub max_delivery_attempts: u32,
    /// Per-key ordering.
    pub ordered: bool,
}

/// Stored record of a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Topic name.
    pub topic: String,
    /// Group name.
    pub name: String,
    /// Creation time, µs since the epoch.
    pub created_us: i64,
    /// Where the group started.
    pub start: Position,
    /// Current settings.
    pub settings: GroupSettings,
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
}

/// Longest lease a group may ask for.
pub const MAX_ACK_DEADLINE: Duration = Duration::from_secs(3600);

impl GroupPatch {
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
        *settings = next;
        Ok(())
    }
}
