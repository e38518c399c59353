//! Settings and stored records of topics and groups: the vocabulary shared
//! by the broker (which validates and changes them) and the storage
//! backends (which keep them).
//!
//! Model layer, plain data.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::backoff::RetryPolicy;

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
    /// Labels (set through the Pub/Sub API). Absent from older records: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
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
    /// When an ack is answered: batched (default) or after it is durable.
    /// Absent from records written before it existed: batched.
    #[serde(default)]
    pub ack_durability: AckDurability,
    /// A temporary group: deleted once it has had no consumer for this
    /// long (zero: as soon as its last consumer leaves). `None`: never.
    #[serde(default, with = "humantime_serde")]
    pub expire_after: Option<Duration>,
    /// A Pub/Sub subscription filter over attributes (set through the
    /// Pub/Sub API only, fixed at creation; applied to its StreamingPull
    /// deliveries). Empty: none. Absent from older records: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub attribute_filter: String,
    /// Each dead letter is also published to this topic (Pub/Sub's
    /// `dead_letter_policy`), with attributes saying where it came from.
    /// Empty: none. Absent from older records: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dead_letter_topic: String,
    /// Labels (set through the Pub/Sub API). Absent from older records: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Events published longer ago are dropped unacknowledged instead of
    /// delivered (Pub/Sub's subscription `message_retention_duration`).
    /// `None` (and older records): kept for the topic's retention.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_message_age: Option<Duration>,
}

/// When a group answers acks and nacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckDurability {
    /// At once; the group's progress is written in batches (at most
    /// `groups.state_flush_interval` later), so a crash in between
    /// redelivers what was acked (at-least-once).
    #[default]
    Batched,
    /// After the progress that carries the ack is durable (group-committed
    /// with other groups' writes): an answered ack is never redelivered.
    Sync,
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
