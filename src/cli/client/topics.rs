//! `herald topics list|create|describe|delete`: AdminService topic calls.
//!
//! CLI layer.

use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{
    Context, Table, fields, human_bytes, human_opt_duration, human_time, json_duration, json_time,
    parse_bytes, parse_duration, print_json, print_line, proto_duration,
};
use crate::proto::admin_service_client::AdminServiceClient;
use crate::proto::{self, Topic};

/// `herald topics …`.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List topics with their counters.
    List,
    /// Create a topic (publishing to an unknown topic creates it with defaults).
    Create(CreateArgs),
    /// Show a topic's settings and stats.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic with its events and groups.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// Flags of `herald topics create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name: 1-249 characters of [A-Za-z0-9._-].
    pub name: String,
    /// Delete segments whose newest event is older than this, e.g. 7d [default: keep forever].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retention_max_age: Option<Duration>,
    /// Delete the oldest segments while the topic is larger, e.g. 10GiB [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub retention_max_bytes: Option<u64>,
    /// Window in which a re-published id counts as a duplicate; 0 turns it off [default: 2m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub dedup_window: Option<Duration>,
}

/// Runs a topics command.
///
/// # Errors
/// The server is unreachable or refuses the call.
pub async fn run(ctx: &Context, command: TopicsCommand) -> Result<()> {
    let mut admin = AdminServiceClient::new(ctx.connect().await?);
    match command {
        TopicsCommand::List => {
            let mut topics = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = ctx
                    .call(admin.list_topics(proto::ListTopicsRequest {
                        page_size: 1000,
                        page_token,
                    }))
                    .await?;
                topics.extend(page.topics);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if ctx.json {
                return print_json(&serde_json::json!({
                    "topics": topics.iter().map(TopicView::from).collect::<Vec<_>>()
                }));
            }
            if topics.is_empty() {
                return print_line("no topics");
            }
            let mut table = Table::new(&[
                "NAME",
                "START",
                "END",
                "PUBLISHED",
                "SIZE",
                "SEGMENTS",
                "GROUPS",
                "RETENTION",
            ]);
            for t in &topics {
                let s = t.stats.unwrap_or_default();
                table.push(vec![
                    t.name.clone(),
                    s.start_offset.to_string(),
                    s.end_offset.to_string(),
                    s.published.to_string(),
                    human_bytes(s.bytes),
                    s.segments.to_string(),
                    s.groups.to_string(),
                    retention(t),
                ]);
            }
            table.print()
        }
        TopicsCommand::Create(args) => {
            let topic = Topic {
                name: args.name,
                retention_max_age: args.retention_max_age.map(proto_duration),
                retention_max_bytes: args.retention_max_bytes,
                dedup_window: args.dedup_window.map(proto_duration),
                ..Default::default()
            };
            let created = ctx
                .call(admin.create_topic(proto::CreateTopicRequest { topic: Some(topic) }))
                .await?
                .topic
                .unwrap_or_default();
            show(ctx, &created, Some("created topic"))
        }
        TopicsCommand::Describe { name } => {
            let topic = ctx
                .call(admin.get_topic(proto::GetTopicRequest { name }))
                .await?
                .topic
                .unwrap_or_default();
            show(ctx, &topic, None)
        }
        TopicsCommand::Delete { name } => {
            ctx.call(admin.delete_topic(proto::DeleteTopicRequest { name: name.clone() }))
                .await?;
            if ctx.json {
                print_json(&serde_json::json!({ "deleted": { "topic": name } }))
            } else {
                print_line(&format!("deleted topic {name}"))
            }
        }
    }
}

/// Retention in a few words: `7d`, `10.0 GiB`, `7d or 10.0 GiB`, `forever`.
fn retention(t: &Topic) -> String {
    let age = t
        .retention_max_age
        .as_ref()
        .map(|d| human_opt_duration(Some(d), ""));
    let bytes = t.retention_max_bytes.filter(|&b| b > 0).map(human_bytes);
    match (age, bytes) {
        (Some(a), Some(b)) => format!("{a} or {b}"),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => "forever".into(),
    }
}

/// Prints one topic: settings, then stats.
fn show(ctx: &Context, t: &Topic, headline: Option<&str>) -> Result<()> {
    if ctx.json {
        return print_json(&TopicView::from(t));
    }
    let s = t.stats.unwrap_or_default();
    let mut text = String::new();
    if let Some(headline) = headline {
        text.push_str(&format!("{headline} {}\n\n", t.name));
    }
    text.push_str(&fields(&[
        ("name", t.name.clone()),
        ("created", human_time(t.create_time.as_ref())),
        (
            "retention max age",
            human_opt_duration(t.retention_max_age.as_ref(), "forever"),
        ),
        (
            "retention max bytes",
            t.retention_max_bytes
                .filter(|&b| b > 0)
                .map(|b| format!("{} ({b} bytes)", human_bytes(b)))
                .unwrap_or_else(|| "no limit".into()),
        ),
        (
            "dedup window",
            human_opt_duration(t.dedup_window.as_ref(), "server default"),
        ),
        ("start offset", s.start_offset.to_string()),
        ("end offset", s.end_offset.to_string()),
        (
            "published",
            format!("{} (since the server started)", s.published),
        ),
        (
            "size",
            format!("{} ({} bytes)", human_bytes(s.bytes), s.bytes),
        ),
        ("segments", s.segments.to_string()),
        ("groups", s.groups.to_string()),
    ]));
    print_line(&text)
}

/// A topic in JSON: the proto's field names; durations as `"30s"`, times
/// RFC 3339, unset settings `null`.
#[derive(Debug, Serialize)]
struct TopicView {
    name: String,
    retention_max_age: Option<String>,
    retention_max_bytes: Option<u64>,
    dedup_window: Option<String>,
    create_time: Option<String>,
    stats: Option<TopicStatsView>,
}

#[derive(Debug, Serialize)]
struct TopicStatsView {
    end_offset: u64,
    start_offset: u64,
    published: u64,
    bytes: u64,
    segments: u32,
    groups: u32,
}

impl From<&Topic> for TopicView {
    fn from(t: &Topic) -> Self {
        TopicView {
            name: t.name.clone(),
            retention_max_age: t.retention_max_age.as_ref().map(json_duration),
            retention_max_bytes: t.retention_max_bytes,
            dedup_window: t.dedup_window.as_ref().map(json_duration),
            create_time: t.create_time.as_ref().map(json_time),
            stats: t.stats.map(|s| TopicStatsView {
                end_offset: s.end_offset,
                start_offset: s.start_offset,
                published: s.published,
                bytes: s.bytes,
                segments: s.segments,
                groups: s.groups,
            }),
        }
    }
}
