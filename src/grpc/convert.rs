//! Conversions between generated protobuf types and domain types.
//!
//! gRPC layer. Errors name the request field, like the broker's.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Status;

use super::status::invalid;
use crate::broker::{
    AckDurability, Delivery, Filter, GroupInfo, GroupPatch, GroupStats, LeaseOutcome, LeaseResult,
    Position, TopicInfo, TopicPatch,
};
use crate::event::{Event, StoredEvent};
use crate::proto;

/// µs since the epoch → Timestamp.
pub fn timestamp(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// Timestamp → µs since the epoch.
///
/// # Errors
/// INVALID_ARGUMENT on `field` for nanos out of range.
pub fn from_timestamp(field: &str, ts: &prost_types::Timestamp) -> Result<i64, Status> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(invalid(field, "nanos must be in [0, 1e9)"));
    }
    ts.seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(ts.nanos) / 1_000))
        .ok_or_else(|| invalid(field, "out of range"))
}

/// SystemTime → Timestamp.
pub fn system_time(t: SystemTime) -> prost_types::Timestamp {
    let us = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    timestamp(us)
}

/// Duration → protobuf Duration.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// protobuf Duration → Duration; negative or malformed values are refused.
///
/// # Errors
/// INVALID_ARGUMENT on `field`.
pub fn from_duration(field: &str, d: &prost_types::Duration) -> Result<Duration, Status> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(invalid(field, "must not be negative"));
    }
    if d.nanos >= 1_000_000_000 {
        return Err(invalid(field, "nanos must be below 1e9"));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// A published proto event → domain event (server-set fields are ignored).
///
/// # Errors
/// INVALID_ARGUMENT for a malformed time.
pub fn event_in(i: usize, e: proto::Event) -> Result<Event, Status> {
    let time_us = match &e.time {
        Some(t) => from_timestamp(&format!("events[{i}].time"), t)?,
        None => 0,
    };
    let mut attributes: Vec<(String, String)> = e.attributes.into_iter().collect();
    attributes.sort();
    Ok(Event {
        id: e.id,
        event_type: e.r#type,
        source: e.source,
        key: e.key,
        time_us,
        content_type: e.content_type,
        schema_version: e.schema_version,
        data: e.data,
        attributes,
    })
}

/// A stored event → proto event as consumers see it.
pub fn event_out(topic: &str, s: &StoredEvent) -> proto::Event {
    let e = &s.event;
    proto::Event {
        id: e.id.clone(),
        r#type: e.event_type.clone(),
        source: e.source.clone(),
        key: e.key.clone(),
        time: Some(timestamp(if e.time_us == 0 {
            s.publish_time_us
        } else {
            e.time_us
        })),
        content_type: e.content_type.clone(),
        schema_version: e.schema_version.clone(),
        data: e.data.clone(),
        attributes: e.attributes.iter().cloned().collect(),
        topic: topic.to_string(),
        offset: s.offset,
        publish_time: Some(timestamp(s.publish_time_us)),
    }
}

/// A delivery → proto delivery. The event is moved out when this delivery
/// holds the only reference to it (the Redis backend's), else copied.
pub fn delivery_out(topic: &str, d: Delivery) -> proto::Delivery {
    let event = match Arc::try_unwrap(d.event) {
        Ok(owned) => event_into(topic, owned),
        Err(shared) => event_out(topic, &shared),
    };
    proto::Delivery {
        ack_id: d.ack_id,
        event: Some(event),
        delivery_attempt: d.attempt,
        deadline: Some(timestamp(d.deadline_us)),
    }
}

/// A stored event → proto event, taking its fields.
fn event_into(topic: &str, s: StoredEvent) -> proto::Event {
    let e = s.event;
    proto::Event {
        id: e.id,
        r#type: e.event_type,
        source: e.source,
        key: e.key,
        time: Some(timestamp(if e.time_us == 0 {
            s.publish_time_us
        } else {
            e.time_us
        })),
        content_type: e.content_type,
        schema_version: e.schema_version,
        data: e.data,
        attributes: e.attributes.into_iter().collect(),
        topic: topic.to_string(),
        offset: s.offset,
        publish_time: Some(timestamp(s.publish_time_us)),
    }
}

/// Lease results → proto.
pub fn lease_results(results: Vec<LeaseResult>) -> Vec<proto::LeaseResult> {
    results
        .into_iter()
        .map(|r| proto::LeaseResult {
            ack_id: r.ack_id,
            outcome: match r.outcome {
                LeaseOutcome::Ok => proto::LeaseOutcome::Ok,
                LeaseOutcome::Unknown => proto::LeaseOutcome::Unknown,
                LeaseOutcome::AlreadyDone => proto::LeaseOutcome::AlreadyDone,
                LeaseOutcome::Stale => proto::LeaseOutcome::Stale,
            } as i32,
            deadline: r.deadline_us.map(timestamp),
        })
        .collect()
}

/// Topic settings present in a request → patch.
///
/// # Errors
/// INVALID_ARGUMENT for negative durations.
pub fn topic_patch(t: &proto::Topic) -> Result<TopicPatch, Status> {
    Ok(TopicPatch {
        retention_max_age: t
            .retention_max_age
            .as_ref()
            .map(|d| from_duration("topic.retention_max_age", d).map(Some))
            .transpose()?,
        retention_max_bytes: t.retention_max_bytes.map(Some),
        dedup_window: t
            .dedup_window
            .as_ref()
            .map(|d| from_duration("topic.dedup_window", d))
            .transpose()?,
        labels: None,
    })
}

/// Domain topic → proto.
pub fn topic_out(info: TopicInfo) -> proto::Topic {
    let s = info.record.settings;
    proto::Topic {
        name: info.record.name,
        retention_max_age: s.retention_max_age.map(duration),
        retention_max_bytes: s.retention_max_bytes,
        dedup_window: Some(duration(s.dedup_window)),
        create_time: Some(timestamp(info.record.created_us)),
        stats: Some(proto::TopicStats {
            end_offset: info.stats.end_offset,
            start_offset: info.stats.start_offset,
            published: info.stats.published,
            bytes: info.stats.bytes,
            segments: info.stats.segments,
            groups: info.stats.groups,
        }),
    }
}

/// A proto position → domain.
///
/// # Errors
/// INVALID_ARGUMENT when no kind is set or the edge is unspecified.
pub fn position_in(field: &str, p: &proto::Position) -> Result<Position, Status> {
    use proto::position::Kind;
    match &p.kind {
        None => Err(invalid(field, "one of edge, offset or time is required")),
        Some(Kind::Edge(e)) => match proto::Edge::try_from(*e) {
            Ok(proto::Edge::Earliest) => Ok(Position::Earliest),
            Ok(proto::Edge::Latest) => Ok(Position::Latest),
            _ => Err(invalid(
                format!("{field}.edge"),
                format!("{e} is not EARLIEST or LATEST"),
            )),
        },
        Some(Kind::Offset(o)) => Ok(Position::Offset(*o)),
        Some(Kind::Time(t)) => Ok(Position::Time(from_timestamp(&format!("{field}.time"), t)?)),
    }
}

fn position_out(p: Position) -> proto::Position {
    use proto::position::Kind;
    proto::Position {
        kind: Some(match p {
            Position::Earliest => Kind::Edge(proto::Edge::Earliest as i32),
            Position::Latest => Kind::Edge(proto::Edge::Latest as i32),
            Position::Offset(o) => Kind::Offset(o),
            Position::Time(t) => Kind::Time(timestamp(t)),
        }),
    }
}

/// Group settings present in a request → patch.
///
/// # Errors
/// INVALID_ARGUMENT for negative durations.
pub fn group_patch(g: &proto::Group) -> Result<GroupPatch, Status> {
    let retry = g.retry_policy.as_ref();
    Ok(GroupPatch {
        filter: g.filter.as_ref().map(|f| Filter {
            types: f.types.clone(),
            patterns: f.patterns.clone(),
        }),
        ack_deadline: g
            .ack_deadline
            .as_ref()
            .map(|d| from_duration("group.ack_deadline", d))
            .transpose()?,
        min_backoff: retry
            .and_then(|r| r.min_backoff.as_ref())
            .map(|d| from_duration("group.retry_policy.min_backoff", d))
            .transpose()?,
        max_backoff: retry
            .and_then(|r| r.max_backoff.as_ref())
            .map(|d| from_duration("group.retry_policy.max_backoff", d))
            .transpose()?,
        multiplier: retry.and_then(|r| r.multiplier),
        max_delivery_attempts: g.max_delivery_attempts,
        ordered: g.ordered,
        ack_durability: ack_durability_in(g.ack_durability)?,
        attribute_filter: None,
        labels: None,
        dead_letter_topic: g.dead_letter_topic.clone(),
        max_message_age: g
            .max_message_age
            .as_ref()
            .map(|d| from_duration("group.max_message_age", d).map(|d| (!d.is_zero()).then_some(d)))
            .transpose()?,
        expire_after: g
            .expiration_policy
            .as_ref()
            .map(|p| {
                p.ttl
                    .as_ref()
                    .map(|d| from_duration("group.expiration_policy.ttl", d))
                    .transpose()
            })
            .transpose()?,
    })
}

/// Proto ack durability → domain; unspecified is "not set".
fn ack_durability_in(v: i32) -> Result<Option<AckDurability>, Status> {
    match proto::AckDurability::try_from(v) {
        Ok(proto::AckDurability::Unspecified) => Ok(None),
        Ok(proto::AckDurability::Batched) => Ok(Some(AckDurability::Batched)),
        Ok(proto::AckDurability::Sync) => Ok(Some(AckDurability::Sync)),
        Err(_) => Err(invalid(
            "group.ack_durability",
            format!("unknown value {v}; use ACK_DURABILITY_BATCHED or ACK_DURABILITY_SYNC"),
        )),
    }
}

fn opt_duration(d: Option<Duration>) -> Option<prost_types::Duration> {
    d.map(duration)
}

fn stats_out(s: &GroupStats) -> proto::GroupStats {
    proto::GroupStats {
        delivered: s.delivered,
        acked: s.acked,
        nacked: s.nacked,
        redelivered: s.redelivered,
        dead_lettered: s.dead_lettered,
        backlog: s.backlog,
        in_flight: s.in_flight,
        dead_letter_count: s.dead_letter_count,
        connected_consumers: s.connected_consumers,
        oldest_unacked_age: opt_duration(s.oldest_unacked_age),
        ack_floor: s.ack_floor,
        filtered: s.filtered,
        expired: s.expired,
        blocked_keys: s.blocked_keys,
        oldest_dead_letter_age: opt_duration(s.oldest_dead_letter_age),
    }
}

/// Domain group → proto.
pub fn group_out(info: GroupInfo) -> proto::Group {
    let r = info.record;
    let s = r.settings;
    proto::Group {
        topic: r.topic,
        name: r.name,
        filter: Some(proto::Filter {
            types: s.filter.types,
            patterns: s.filter.patterns,
        }),
        start_position: Some(position_out(r.start)),
        ack_deadline: Some(duration(s.ack_deadline)),
        retry_policy: Some(proto::RetryPolicy {
            min_backoff: Some(duration(s.retry.min_backoff)),
            max_backoff: Some(duration(s.retry.max_backoff)),
            multiplier: Some(s.retry.multiplier),
        }),
        max_delivery_attempts: Some(s.max_delivery_attempts),
        ordered: Some(s.ordered),
        ack_durability: match s.ack_durability {
            AckDurability::Batched => proto::AckDurability::Batched,
            AckDurability::Sync => proto::AckDurability::Sync,
        }
        .into(),
        expiration_policy: Some(proto::ExpirationPolicy {
            ttl: opt_duration(s.expire_after),
        }),
        dead_letter_topic: Some(s.dead_letter_topic),
        max_message_age: opt_duration(s.max_message_age),
        create_time: Some(timestamp(r.created_us)),
        blocked_keys: info
            .stats
            .oldest_blocked
            .iter()
            .map(|b| proto::BlockedKey {
                key: b.key.clone(),
                offset: b.offset,
                attempts: b.attempts,
                waiting: b.waiting,
                since: Some(timestamp(b.since_us)),
            })
            .collect(),
        stats: Some(stats_out(&info.stats)),
    }
}

/// Page size of a list request: default 100, at most 1000.
///
/// # Errors
/// INVALID_ARGUMENT for a negative size.
pub fn page_size(size: i32) -> Result<usize, Status> {
    match size {
        s if s < 0 => Err(invalid("page_size", "must not be negative")),
        0 => Ok(100),
        s => Ok((s as usize).min(1000)),
    }
}
