//! The conversion step of each handler: a request message to the domain
//! values its broker call takes, or INVALID_ARGUMENT naming the field.
//!
//! gRPC layer. Handlers call these after authorization; the `proto_requests`
//! fuzz target calls them on arbitrary decoded messages and checks that
//! they return a value or INVALID_ARGUMENT, never anything else and never a
//! panic. Requests whose fields go to the broker unchanged (Subscribe, Ack,
//! GetTopic, DeleteTopic, GetGroup, DeleteGroup, GetServerInfo) have no
//! conversion step.

use std::time::Duration;

use tonic::Status;

use super::convert::{
    event_in, from_duration, from_timestamp, group_patch, page_size, position_in, topic_patch,
};
use super::status::{invalid, to_status};
use crate::broker::dead_letter::selection;
use crate::broker::names::check_name;
use crate::broker::{self, DeadLetterFilter, GroupPatch, Position, Selection, TopicPatch};
use crate::event::Event;
use crate::proto;

/// The events of a Publish request or PublishStream message.
///
/// # Errors
/// INVALID_ARGUMENT on `events[i].…`.
pub fn events(events: Vec<proto::Event>) -> Result<Vec<Event>, Status> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| event_in(i, e))
        .collect()
}

/// Nack: the optional delay.
///
/// # Errors
/// INVALID_ARGUMENT on `delay`.
pub fn nack_delay(r: &proto::NackRequest) -> Result<Option<Duration>, Status> {
    r.delay
        .as_ref()
        .map(|d| from_duration("delay", d))
        .transpose()
}

/// ExtendDeadline: the required extension.
///
/// # Errors
/// INVALID_ARGUMENT on `extension`.
pub fn extension(r: &proto::ExtendDeadlineRequest) -> Result<Duration, Status> {
    r.extension
        .as_ref()
        .ok_or_else(|| invalid("extension", "is required"))
        .and_then(|d| from_duration("extension", d))
}

/// One request of a Consume stream, converted.
#[derive(Debug)]
pub enum ConsumeStep {
    /// Opens the subscription.
    Open {
        /// Topic, group and consumer name, as given.
        open: proto::ConsumeOpen,
        /// The window and batch limits.
        options: broker::ConsumeOptions,
    },
    /// Acknowledges deliveries.
    Ack(Settle),
    /// Rejects deliveries.
    Nack {
        /// Which, and whether to confirm.
        settle: Settle,
        /// Retry after this delay instead of the group's backoff.
        delay: Option<Duration>,
        /// Dead-letter now.
        dead_letter: bool,
        /// Why.
        reason: String,
    },
    /// Pushes lease deadlines out to now + `extension`.
    Extend {
        /// Which, and whether to confirm.
        settle: Settle,
        /// The extension.
        extension: Duration,
    },
}

/// The ack ids of an ack, nack or extend on a Consume stream, with its
/// correlation id and whether it asked for a confirmation.
#[derive(Debug)]
pub struct Settle {
    /// The ack ids.
    pub ack_ids: Vec<String>,
    /// Echoed in the confirmation.
    pub request_id: u64,
    /// Answer with a confirmation.
    pub confirm: bool,
}

/// Consume: one request of the stream. Field paths start with the part
/// the request carries (`nack.delay`).
///
/// # Errors
/// INVALID_ARGUMENT on `kind`, `nack.delay` or `extend.extension`.
pub fn consume(r: proto::ConsumeRequest) -> Result<ConsumeStep, Status> {
    use crate::proto::consume_request::Kind;
    Ok(match r.kind {
        None => {
            return Err(invalid(
                "kind",
                "one of open, ack, nack or extend is required",
            ));
        }
        Some(Kind::Open(open)) => ConsumeStep::Open {
            options: broker::ConsumeOptions {
                max_in_flight: open.max_in_flight,
                max_batch: open.max_batch,
                max_batch_bytes: open.max_batch_bytes,
                pull: false,
                new_group_expire_after: open
                    .new_group_expire_after
                    .as_ref()
                    .map(|d| from_duration("open.new_group_expire_after", d))
                    .transpose()?,
            },
            open,
        },
        Some(Kind::Ack(a)) => ConsumeStep::Ack(Settle {
            ack_ids: a.ack_ids,
            request_id: a.request_id,
            confirm: a.confirm,
        }),
        Some(Kind::Nack(n)) => ConsumeStep::Nack {
            delay: n
                .delay
                .as_ref()
                .map(|d| from_duration("nack.delay", d))
                .transpose()?,
            settle: Settle {
                ack_ids: n.ack_ids,
                request_id: n.request_id,
                confirm: n.confirm,
            },
            dead_letter: n.dead_letter,
            reason: n.reason,
        },
        Some(Kind::Extend(x)) => ConsumeStep::Extend {
            extension: x
                .extension
                .as_ref()
                .ok_or_else(|| invalid("extend.extension", "is required"))
                .and_then(|d| from_duration("extend.extension", d))?,
            settle: Settle {
                ack_ids: x.ack_ids,
                request_id: x.request_id,
                confirm: x.confirm,
            },
        },
    })
}

/// Read: the broker's read request.
///
/// # Errors
/// INVALID_ARGUMENT on `time`.
pub fn read(r: proto::ReadRequest) -> Result<broker::ReadRequest, Status> {
    use crate::proto::read_request::Start;
    let start = match &r.start {
        None => None,
        Some(Start::Offset(o)) => Some(Position::Offset(*o)),
        Some(Start::Time(t)) => Some(Position::Time(from_timestamp("time", t)?)),
    };
    Ok(broker::ReadRequest {
        start,
        types: r.types,
        follow: r.follow,
        max_events: r.max_events,
    })
}

/// CreateTopic and UpdateTopic: the topic and its settings.
///
/// # Errors
/// INVALID_ARGUMENT on `topic…`.
pub fn topic(t: Option<proto::Topic>) -> Result<(proto::Topic, TopicPatch), Status> {
    let t = t.ok_or_else(|| invalid("topic", "is required"))?;
    let patch = topic_patch(&t)?;
    Ok((t, patch))
}

/// ListTopics: the page size and the name to continue after.
///
/// # Errors
/// INVALID_ARGUMENT on `page_size` or `page_token`.
pub fn list_topics(r: &proto::ListTopicsRequest) -> Result<(usize, Option<String>), Status> {
    let limit = page_size(r.page_size)?;
    if r.page_token.is_empty() {
        return Ok((limit, None));
    }
    check_name("page_token", &r.page_token).map_err(|_| bad_token())?;
    Ok((limit, Some(r.page_token.clone())))
}

fn bad_token() -> Status {
    invalid("page_token", "is not a token issued by this server")
}

/// ListGroups: the page size and the (topic, group) to continue after.
/// Group list tokens are `topic/group` ('/' cannot occur in names).
///
/// # Errors
/// INVALID_ARGUMENT on `page_size` or `page_token`.
pub fn list_groups(
    r: &proto::ListGroupsRequest,
) -> Result<(usize, Option<(String, String)>), Status> {
    let limit = page_size(r.page_size)?;
    if r.page_token.is_empty() {
        return Ok((limit, None));
    }
    let (t, g) = r.page_token.split_once('/').ok_or_else(bad_token)?;
    check_name("page_token", t).map_err(|_| bad_token())?;
    check_name("page_token", g).map_err(|_| bad_token())?;
    Ok((limit, Some((t.to_string(), g.to_string()))))
}

/// The page token of a group list page ending with (topic, group).
pub fn group_token((topic, group): (String, String)) -> String {
    format!("{topic}/{group}")
}

/// CreateGroup: the group, its settings and its start position.
///
/// # Errors
/// INVALID_ARGUMENT on `group…`.
pub fn create_group(
    g: Option<proto::Group>,
) -> Result<(proto::Group, GroupPatch, Option<Position>), Status> {
    let g = g.ok_or_else(|| invalid("group", "is required"))?;
    let patch = group_patch(&g)?;
    let start = g
        .start_position
        .as_ref()
        .map(|p| position_in("group.start_position", p))
        .transpose()?;
    Ok((g, patch, start))
}

/// UpdateGroup: the group and its settings (the start cannot change).
///
/// # Errors
/// INVALID_ARGUMENT on `group…`.
pub fn update_group(g: Option<proto::Group>) -> Result<(proto::Group, GroupPatch), Status> {
    let g = g.ok_or_else(|| invalid("group", "is required"))?;
    if g.start_position.is_some() {
        return Err(invalid(
            "group.start_position",
            "cannot be changed; use Seek to move a group",
        ));
    }
    let patch = group_patch(&g)?;
    Ok((g, patch))
}

/// Seek: the position.
///
/// # Errors
/// INVALID_ARGUMENT on `position`.
pub fn seek(r: &proto::SeekRequest) -> Result<Position, Status> {
    r.position
        .as_ref()
        .ok_or_else(|| invalid("position", "is required"))
        .and_then(|p| position_in("position", p))
}

/// A dead-letter filter.
///
/// # Errors
/// INVALID_ARGUMENT on `filter.…`.
pub fn dead_letter_filter(f: Option<&proto::DeadLetterFilter>) -> Result<DeadLetterFilter, Status> {
    let Some(f) = f else {
        return Ok(DeadLetterFilter::default());
    };
    let time = |field, t: &Option<prost_types::Timestamp>| {
        t.as_ref().map(|t| from_timestamp(field, t)).transpose()
    };
    Ok(DeadLetterFilter {
        types: f.types.clone(),
        start_us: time("filter.start_time", &f.start_time)?,
        end_us: time("filter.end_time", &f.end_time)?,
    })
}

/// ListDeadLetters: the page size and the filter (the page token is
/// checked by the broker, against the query it was issued for).
///
/// # Errors
/// INVALID_ARGUMENT on `page_size` or `filter.…`.
pub fn list_dead_letters(
    r: &proto::ListDeadLettersRequest,
) -> Result<(usize, DeadLetterFilter), Status> {
    Ok((
        page_size(r.page_size)?,
        dead_letter_filter(r.filter.as_ref())?,
    ))
}

/// ReplayDeadLetters: what to replay.
///
/// # Errors
/// INVALID_ARGUMENT on `ids`, `all` or `filter.…`.
pub fn replay(r: &proto::ReplayDeadLettersRequest) -> Result<Selection, Status> {
    let filter = dead_letter_filter(r.filter.as_ref())?;
    selection(&r.ids, r.all, filter).map_err(to_status)
}

/// PurgeDeadLetters: what to purge.
///
/// # Errors
/// INVALID_ARGUMENT on `ids` or `all`.
pub fn purge(r: &proto::PurgeDeadLettersRequest) -> Result<Selection, Status> {
    selection(&r.ids, r.all, DeadLetterFilter::default()).map_err(to_status)
}
