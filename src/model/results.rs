//! What topics, groups, consuming and dead-lettering report: stats,
//! deliveries, lease outcomes and dead letters.
//!
//! Model layer, plain data.

use std::sync::Arc;
use std::time::Duration;

use super::settings::{GroupRecord, TopicRecord};
use crate::event::StoredEvent;

/// What an Ack, Nack or ExtendDeadline did to one ack id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Done as asked.
    Ok,
    /// Not issued by this server run, or its group is gone.
    Unknown,
    /// The event was already acknowledged or dead-lettered.
    AlreadyDone,
    /// The lease is no longer current (expired, released or superseded).
    Stale,
}

/// Result for one ack id, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseResult {
    /// The ack id as given.
    pub ack_id: String,
    /// What happened.
    pub outcome: LeaseOutcome,
    /// ExtendDeadline: the new deadline (µs since the epoch).
    pub deadline_us: Option<i64>,
}

/// Counters of a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStats {
    /// Next offset (events ever stored).
    pub end_offset: u64,
    /// First retained offset.
    pub start_offset: u64,
    /// Events published since the server started.
    pub published: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Segment files.
    pub segments: u32,
    /// Consumer groups.
    pub groups: u32,
}

/// A topic with its settings and stats.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    /// Stored record.
    pub record: TopicRecord,
    /// Current counters.
    pub stats: TopicStats,
}

/// Selects dead letters by event type and dead-letter time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DeadLetterFilter {
    /// Event types; all when empty.
    pub types: Vec<String>,
    /// Dead-lettered at or after (µs since the epoch).
    pub start_us: Option<i64>,
    /// Dead-lettered before (µs since the epoch).
    pub end_us: Option<i64>,
}

impl DeadLetterFilter {
    /// True when a dead letter of `event_type`, dead-lettered at
    /// `dead_letter_us`, is selected.
    pub fn matches(&self, event_type: &str, dead_letter_us: i64) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
            && self.start_us.is_none_or(|start| dead_letter_us >= start)
            && self.end_us.is_none_or(|end| dead_letter_us < end)
    }
}

/// A page of dead letters.
#[derive(Debug, Clone)]
pub struct DeadLetterPage {
    /// The entries.
    pub entries: Vec<DeadLetter>,
    /// Token for the next page, if there is one.
    pub next_token: Option<String>,
    /// Entries matching the filter, all pages.
    pub total: u64,
}

/// Counts after a replay or purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterCounts {
    /// Entries replayed or purged now.
    pub changed: u64,
    /// Entries left in the queue.
    pub remaining: u64,
}

/// Which dead letters a replay or purge is about.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These ids; each must be in the queue.
    Ids(Vec<u64>),
    /// Everything matching the filter.
    All(DeadLetterFilter),
    /// Those of these ids still in the queue (a filter resolved by type).
    Matching(Vec<u64>),
}

/// One delivery as the consumer's stream carries it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Token for ack/nack/extend.
    pub ack_id: String,
    /// The event.
    pub event: Arc<StoredEvent>,
    /// 1-based attempt.
    pub attempt: u32,
    /// Lease deadline, µs since the epoch.
    pub deadline_us: i64,
}

/// Counters and gauges of a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupStats {
    /// Deliveries since start.
    pub delivered: u64,
    /// Acks since start.
    pub acked: u64,
    /// Nacks since start.
    pub nacked: u64,
    /// Redeliveries since start.
    pub redelivered: u64,
    /// Dead-lettered since start.
    pub dead_lettered: u64,
    /// Not yet acknowledged events at or past the floor.
    pub backlog: u64,
    /// Leases out.
    pub in_flight: u64,
    /// Entries in the dead-letter queue (durable, not being replayed).
    pub dead_letter_count: u64,
    /// Open consumer streams (Subscribe or Consume).
    pub connected_consumers: u32,
    /// Age of the oldest unacknowledged event.
    pub oldest_unacked_age: Option<Duration>,
    /// Every offset below is done.
    pub ack_floor: u64,
    /// Skipped by the filter.
    pub filtered: u64,
    /// Skipped because retention deleted them.
    pub expired: u64,
    /// Keys blocked behind a failing event.
    pub blocked_keys: u64,
    /// The oldest of those keys (at most ten).
    pub oldest_blocked: Vec<BlockedKey>,
    /// Age of the oldest dead letter.
    pub oldest_dead_letter_age: Option<Duration>,
    /// Bytes of events the group holds in memory.
    pub buffered_bytes: u64,
}

/// A key blocked behind a failing event (for stats and GetGroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedKey {
    /// The key.
    pub key: String,
    /// Offset of the event holding it.
    pub offset: u64,
    /// Deliveries of that event so far.
    pub attempts: u32,
    /// Events of the key waiting behind it.
    pub waiting: u64,
    /// When that event first failed, µs since the epoch.
    pub since_us: i64,
}

/// A group with its settings and stats.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    /// Stored record.
    pub record: GroupRecord,
    /// Current counters.
    pub stats: GroupStats,
}

/// An event a group gave up on.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Unique within the group, increasing in dead-letter order.
    pub id: u64,
    /// Copy of the event.
    pub event: Arc<StoredEvent>,
    /// Deliveries made.
    pub attempts: u32,
    /// The last nack reason, or "ack deadline exceeded" / "consumer disconnected".
    pub last_reason: String,
    /// First failed attempt, µs since the epoch.
    pub first_failure_us: i64,
    /// Last failed attempt, µs since the epoch.
    pub last_failure_us: i64,
    /// When it was dead-lettered, µs since the epoch.
    pub dead_letter_us: i64,
}

/// Gauges a group task keeps current, readable without asking the task
/// (for metrics exporters).
#[derive(Debug, Default)]
pub struct GroupGauges {
    /// Events not yet acknowledged at or past the floor.
    pub backlog: std::sync::atomic::AtomicU64,
    /// Leases out.
    pub in_flight: std::sync::atomic::AtomicU64,
    /// Entries in the dead-letter queue.
    pub dead_letters: std::sync::atomic::AtomicU64,
}
