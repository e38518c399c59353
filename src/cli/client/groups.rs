//! `herald groups list|create|describe|delete`: AdminService group calls.
//!
//! CLI layer.

use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::{
    Context, Table, fields, human_age, human_opt_duration, human_time, json_duration, json_time,
    parse_duration, parse_time, print_json, print_line, proto_duration, truncate,
};
use crate::proto::admin_service_client::AdminServiceClient;
use crate::proto::position::Kind;
use crate::proto::{self, Group, Position};

/// `herald groups …`.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups with their backlog, of one topic or of all.
    List {
        /// Only groups of this topic.
        #[arg(long, short = 't')]
        topic: Option<String>,
    },
    /// Create a consumer group (subscribing to an unknown group creates it with defaults).
    Create(Box<CreateArgs>),
    /// Show a group's settings, stats and blocked keys.
    Describe(GroupRef),
    /// Delete a group with its progress and dead letters.
    Delete(GroupRef),
}

/// A group by topic and name.
#[derive(Debug, Args)]
pub struct GroupRef {
    /// Topic of the group.
    #[arg(long, short = 't')]
    pub topic: String,
    /// Group name.
    pub name: String,
}

/// `--ack-durability` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AckDurabilityArg {
    /// Answer at once; progress is persisted in batches.
    Batched,
    /// Answer once the progress carrying the ack is durable.
    Sync,
}

impl From<AckDurabilityArg> for proto::AckDurability {
    fn from(a: AckDurabilityArg) -> Self {
        match a {
            AckDurabilityArg::Batched => proto::AckDurability::Batched,
            AckDurabilityArg::Sync => proto::AckDurability::Sync,
        }
    }
}

/// The name of an ack durability, as `--ack-durability` spells it.
fn ack_durability_text(v: i32) -> &'static str {
    match proto::AckDurability::try_from(v) {
        Ok(proto::AckDurability::Batched) => "batched",
        Ok(proto::AckDurability::Sync) => "sync",
        _ => "default",
    }
}

/// Flags of `herald groups create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic the group consumes.
    #[arg(long, short = 't')]
    pub topic: String,
    /// Group name: 1-249 characters of [A-Za-z0-9._-].
    pub name: String,
    /// Where the group starts: earliest, latest, offset:N or time:RFC3339 [default: latest].
    #[arg(long, value_name = "POSITION", value_parser = parse_position)]
    pub start: Option<Position>,
    /// Lease length of a delivery [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ack_deadline: Option<Duration>,
    /// First retry delay [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_backoff: Option<Duration>,
    /// Longest retry delay [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_backoff: Option<Duration>,
    /// Growth of the retry delay per attempt, at least 1.0 [default: 2.0].
    #[arg(long, value_name = "FACTOR")]
    pub multiplier: Option<f64>,
    /// Failed attempts before an event is dead-lettered; 0: never [default: 5].
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Never have two events with the same key in flight at once.
    #[arg(long)]
    pub ordered: bool,
    /// When acks are answered: `batched` (at once, persisted within
    /// groups.state_flush_interval) or `sync` (once durable) [default: the
    /// server's groups.ack_durability].
    #[arg(long, value_enum, value_name = "MODE")]
    pub ack_durability: Option<AckDurabilityArg>,
    /// A temporary group: deleted once it has had no consumer this long
    /// (0s: as soon as its last consumer leaves) [default: never].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expire_after: Option<Duration>,
    /// Also publish each dead letter to this topic, with attributes saying
    /// where it came from [default: none].
    #[arg(long, value_name = "TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// Drop, instead of deliver, unacknowledged events published longer
    /// ago than this [default: kept for the topic's retention].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_message_age: Option<Duration>,
    /// Only these event types (comma-separated or repeated).
    #[arg(long, value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Only types matching these patterns: `*` one dot-separated segment, `#` or a trailing `>` any number, e.g. 'Order.*'.
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub patterns: Vec<String>,
}

/// `earliest`, `latest`, `offset:N` or `time:RFC3339`.
///
/// # Errors
/// None of those forms.
pub fn parse_position(s: &str) -> Result<Position, String> {
    let kind = match s {
        "earliest" => Kind::Edge(proto::Edge::Earliest as i32),
        "latest" => Kind::Edge(proto::Edge::Latest as i32),
        _ => match s.split_once(':') {
            Some(("offset", n)) => Kind::Offset(
                n.parse()
                    .map_err(|_| format!("{n:?} is not an offset (a number)"))?,
            ),
            Some(("time", t)) => Kind::Time(parse_time(t)?),
            _ => {
                return Err(format!(
                    "{s:?} is not earliest, latest, offset:N or time:RFC3339"
                ));
            }
        },
    };
    Ok(Position { kind: Some(kind) })
}

/// The `--start` form of a position.
fn position_text(p: Option<&Position>) -> String {
    match p.and_then(|p| p.kind.as_ref()) {
        Some(Kind::Edge(e)) if *e == proto::Edge::Earliest as i32 => "earliest".into(),
        Some(Kind::Edge(e)) if *e == proto::Edge::Latest as i32 => "latest".into(),
        Some(Kind::Edge(e)) => format!("edge {e}"),
        Some(Kind::Offset(o)) => format!("offset:{o}"),
        Some(Kind::Time(t)) => format!("time:{}", json_time(t)),
        None => "-".into(),
    }
}

/// Runs a groups command.
///
/// # Errors
/// The server is unreachable or refuses the call.
pub async fn run(ctx: &Context, command: GroupsCommand) -> Result<()> {
    let mut admin = AdminServiceClient::new(ctx.connect().await?);
    match command {
        GroupsCommand::List { topic } => {
            let mut groups = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = ctx
                    .call(admin.list_groups(proto::ListGroupsRequest {
                        topic: topic.clone().unwrap_or_default(),
                        page_size: 1000,
                        page_token,
                    }))
                    .await?;
                groups.extend(page.groups);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if ctx.json {
                return print_json(&serde_json::json!({
                    "groups": groups.iter().map(GroupView::from).collect::<Vec<_>>()
                }));
            }
            if groups.is_empty() {
                return print_line("no groups");
            }
            let mut table = Table::new(&[
                "TOPIC",
                "NAME",
                "BACKLOG",
                "IN FLIGHT",
                "DEAD LETTERS",
                "CONSUMERS",
                "ACK FLOOR",
                "OLDEST UNACKED",
            ]);
            for g in &groups {
                let s = g.stats.unwrap_or_default();
                table.push(vec![
                    g.topic.clone(),
                    g.name.clone(),
                    s.backlog.to_string(),
                    s.in_flight.to_string(),
                    s.dead_letter_count.to_string(),
                    s.connected_consumers.to_string(),
                    s.ack_floor.to_string(),
                    human_opt_duration(s.oldest_unacked_age.as_ref(), "-"),
                ]);
            }
            table.print()
        }
        GroupsCommand::Create(args) => {
            let retry_policy = (args.min_backoff.is_some()
                || args.max_backoff.is_some()
                || args.multiplier.is_some())
            .then(|| proto::RetryPolicy {
                min_backoff: args.min_backoff.map(proto_duration),
                max_backoff: args.max_backoff.map(proto_duration),
                multiplier: args.multiplier,
            });
            let filter =
                (!args.types.is_empty() || !args.patterns.is_empty()).then_some(proto::Filter {
                    types: args.types,
                    patterns: args.patterns,
                });
            let group = Group {
                topic: args.topic,
                name: args.name,
                filter,
                start_position: args.start,
                ack_deadline: args.ack_deadline.map(proto_duration),
                retry_policy,
                max_delivery_attempts: args.max_attempts,
                ordered: args.ordered.then_some(true),
                ack_durability: args
                    .ack_durability
                    .map_or(0, |a| proto::AckDurability::from(a).into()),
                expiration_policy: args.expire_after.map(|ttl| proto::ExpirationPolicy {
                    ttl: Some(proto_duration(ttl)),
                }),
                dead_letter_topic: args.dead_letter_topic,
                max_message_age: args.max_message_age.map(proto_duration),
                ..Default::default()
            };
            let created = ctx
                .call(admin.create_group(proto::CreateGroupRequest { group: Some(group) }))
                .await?
                .group
                .unwrap_or_default();
            show(ctx, &created, Some("created group"))
        }
        GroupsCommand::Describe(GroupRef { topic, name }) => {
            let group = ctx
                .call(admin.get_group(proto::GetGroupRequest { topic, group: name }))
                .await?
                .group
                .unwrap_or_default();
            show(ctx, &group, None)
        }
        GroupsCommand::Delete(GroupRef { topic, name }) => {
            ctx.call(admin.delete_group(proto::DeleteGroupRequest {
                topic: topic.clone(),
                group: name.clone(),
            }))
            .await?;
            if ctx.json {
                print_json(&serde_json::json!({ "deleted": { "topic": topic, "group": name } }))
            } else {
                print_line(&format!("deleted group {name} of topic {topic}"))
            }
        }
    }
}

/// Prints one group: settings, stats, blocked keys.
fn show(ctx: &Context, g: &Group, headline: Option<&str>) -> Result<()> {
    if ctx.json {
        return print_json(&GroupView::from(g));
    }
    let s = g.stats.unwrap_or_default();
    let retry = g.retry_policy.unwrap_or_default();
    let filter = g.filter.clone().unwrap_or_default();
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    let mut text = String::new();
    if let Some(headline) = headline {
        text.push_str(&format!("{headline} {} of topic {}\n\n", g.name, g.topic));
    }
    text.push_str(&fields(&[
        ("topic", g.topic.clone()),
        ("name", g.name.clone()),
        ("created", human_time(g.create_time.as_ref())),
        ("start position", position_text(g.start_position.as_ref())),
        (
            "filter",
            if filter.types.is_empty() && filter.patterns.is_empty() {
                "all events".into()
            } else {
                format!(
                    "types: {}; patterns: {}",
                    list(&filter.types),
                    list(&filter.patterns)
                )
            },
        ),
        (
            "ack deadline",
            human_opt_duration(g.ack_deadline.as_ref(), "default"),
        ),
        (
            "retry backoff",
            format!(
                "{} .. {}, ×{}",
                human_opt_duration(retry.min_backoff.as_ref(), "default"),
                human_opt_duration(retry.max_backoff.as_ref(), "default"),
                retry
                    .multiplier
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "default".into())
            ),
        ),
        (
            "max delivery attempts",
            match g.max_delivery_attempts {
                Some(0) => "never dead-letter".into(),
                Some(n) => n.to_string(),
                None => "default".into(),
            },
        ),
        (
            "ordered",
            if g.ordered.unwrap_or(false) {
                "yes (per key)"
            } else {
                "no"
            }
            .into(),
        ),
        (
            "ack durability",
            ack_durability_text(g.ack_durability).into(),
        ),
        (
            "expires",
            match g.expiration_policy.as_ref().and_then(|p| p.ttl.as_ref()) {
                Some(ttl) => format!(
                    "after {} without a consumer",
                    human_opt_duration(Some(ttl), "")
                ),
                None => "never".into(),
            },
        ),
        (
            "max message age",
            human_opt_duration(g.max_message_age.as_ref(), "the topic's retention"),
        ),
    ]));
    text.push_str("\n\nstats (counters since the server started)\n");
    text.push_str(&indent(&fields(&[
        ("backlog", s.backlog.to_string()),
        ("in flight", s.in_flight.to_string()),
        ("ack floor", s.ack_floor.to_string()),
        (
            "oldest unacked age",
            human_opt_duration(s.oldest_unacked_age.as_ref(), "-"),
        ),
        ("delivered", s.delivered.to_string()),
        ("acked", s.acked.to_string()),
        ("nacked", s.nacked.to_string()),
        ("redelivered", s.redelivered.to_string()),
        ("dead-lettered", s.dead_lettered.to_string()),
        ("dead letters", s.dead_letter_count.to_string()),
        (
            "oldest dead letter age",
            human_opt_duration(s.oldest_dead_letter_age.as_ref(), "-"),
        ),
        ("filtered", s.filtered.to_string()),
        ("expired", s.expired.to_string()),
        ("blocked keys", s.blocked_keys.to_string()),
        ("connected consumers", s.connected_consumers.to_string()),
    ])));
    if !g.blocked_keys.is_empty() {
        let mut table = Table::new(&["KEY", "OFFSET", "ATTEMPTS", "WAITING", "BLOCKED FOR"]);
        for b in &g.blocked_keys {
            table.push(vec![
                truncate(&b.key, 40),
                b.offset.to_string(),
                b.attempts.to_string(),
                b.waiting.to_string(),
                human_age(b.since.as_ref()),
            ]);
        }
        text.push_str("\n\nblocked keys (oldest first)\n");
        text.push_str(&indent(&table.render()));
    }
    print_line(&text)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A group in JSON: the proto's field names; durations as `"30s"`, times
/// RFC 3339, the start position in `--start` form.
#[derive(Debug, Serialize)]
struct GroupView {
    topic: String,
    name: String,
    filter: FilterView,
    start_position: String,
    ack_deadline: Option<String>,
    retry_policy: RetryView,
    max_delivery_attempts: Option<u32>,
    ordered: Option<bool>,
    ack_durability: &'static str,
    expire_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_age: Option<String>,
    create_time: Option<String>,
    stats: Option<GroupStatsView>,
    blocked_keys: Vec<BlockedKeyView>,
}

#[derive(Debug, Serialize)]
struct FilterView {
    types: Vec<String>,
    patterns: Vec<String>,
}

#[derive(Debug, Serialize)]
struct RetryView {
    min_backoff: Option<String>,
    max_backoff: Option<String>,
    multiplier: Option<f64>,
}

#[derive(Debug, Serialize)]
struct GroupStatsView {
    delivered: u64,
    acked: u64,
    nacked: u64,
    redelivered: u64,
    dead_lettered: u64,
    backlog: u64,
    in_flight: u64,
    dead_letter_count: u64,
    connected_consumers: u32,
    oldest_unacked_age: Option<String>,
    ack_floor: u64,
    filtered: u64,
    expired: u64,
    blocked_keys: u64,
    oldest_dead_letter_age: Option<String>,
}

#[derive(Debug, Serialize)]
struct BlockedKeyView {
    key: String,
    offset: u64,
    attempts: u32,
    waiting: u64,
    since: Option<String>,
}

impl From<&Group> for GroupView {
    fn from(g: &Group) -> Self {
        let filter = g.filter.clone().unwrap_or_default();
        let retry = g.retry_policy.unwrap_or_default();
        GroupView {
            topic: g.topic.clone(),
            name: g.name.clone(),
            filter: FilterView {
                types: filter.types,
                patterns: filter.patterns,
            },
            start_position: position_text(g.start_position.as_ref()),
            ack_deadline: g.ack_deadline.as_ref().map(json_duration),
            retry_policy: RetryView {
                min_backoff: retry.min_backoff.as_ref().map(json_duration),
                max_backoff: retry.max_backoff.as_ref().map(json_duration),
                multiplier: retry.multiplier,
            },
            max_delivery_attempts: g.max_delivery_attempts,
            ordered: g.ordered,
            ack_durability: ack_durability_text(g.ack_durability),
            expire_after: g
                .expiration_policy
                .as_ref()
                .and_then(|p| p.ttl.as_ref())
                .map(json_duration),
            dead_letter_topic: g.dead_letter_topic.clone().filter(|t| !t.is_empty()),
            max_message_age: g.max_message_age.as_ref().map(json_duration),
            create_time: g.create_time.as_ref().map(json_time),
            stats: g.stats.map(|s| GroupStatsView {
                delivered: s.delivered,
                acked: s.acked,
                nacked: s.nacked,
                redelivered: s.redelivered,
                dead_lettered: s.dead_lettered,
                backlog: s.backlog,
                in_flight: s.in_flight,
                dead_letter_count: s.dead_letter_count,
                connected_consumers: s.connected_consumers,
                oldest_unacked_age: s.oldest_unacked_age.as_ref().map(json_duration),
                ack_floor: s.ack_floor,
                filtered: s.filtered,
                expired: s.expired,
                blocked_keys: s.blocked_keys,
                oldest_dead_letter_age: s.oldest_dead_letter_age.as_ref().map(json_duration),
            }),
            blocked_keys: g
                .blocked_keys
                .iter()
                .map(|b| BlockedKeyView {
                    key: b.key.clone(),
                    offset: b.offset,
                    attempts: b.attempts,
                    waiting: b.waiting,
                    since: b.since.as_ref().map(json_time),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_and_print_in_the_same_form() {
        for text in [
            "earliest",
            "latest",
            "offset:42",
            "time:2026-01-31T12:00:00Z",
        ] {
            let p = parse_position(text).unwrap();
            let back = position_text(Some(&p));
            if text.starts_with("time:") {
                assert_eq!(back, "time:2026-01-31T12:00:00.000000Z");
            } else {
                assert_eq!(back, text);
            }
        }
        assert!(parse_position("offset:x").is_err());
        assert!(parse_position("yesterday").is_err());
    }
}
