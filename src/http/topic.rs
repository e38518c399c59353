//! `GET /topics/{topic}`: a topic's stats and settings, its groups, the
//! live tail of new events, and forms to publish a test event and to
//! create a group.
//!
//! Edge layer: `Broker::get_topic`, `list_groups`, `publish`,
//! `create_group`; the tail itself is `tail.rs`.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Action;
use super::form::Form;
use super::layout::{self, csrf_field, esc, group_url, topic_url};
use super::session::Caller;
use super::topics::TopicText;
use super::{Console, HttpError};
use crate::broker::{AckDurability, Filter, GroupPatch, Position};
use crate::event::Event;

/// Events the tail shows from before the page was opened.
pub(super) const TAIL_HISTORY: u64 = 20;
/// Groups listed on a topic page.
const GROUPS: usize = 500;

/// Query of pages that show a message after an action.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Notice {
    pub notice: Option<String>,
}

/// The topic page.
pub(super) async fn page(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    Query(q): Query<Notice>,
) -> Result<Markup, HttpError> {
    console.allow(&caller, Action::GetTopic, Some(&topic))?;
    let broker = console.broker();
    let info = broker.get_topic(&topic).await?;
    console.allow(&caller, Action::ListGroups, Some(&topic))?;
    let (groups, more) = broker.list_groups(Some(&topic), None, GROUPS).await?;
    let (retention, dedup) = info.settings();
    let s = &info.stats;
    let tail_from = s
        .end_offset
        .saturating_sub(TAIL_HISTORY)
        .max(s.start_offset);
    let url = topic_url(&topic);
    let body = html! {
        h1 { "Topic " (topic) }
        section.cards {
            div.card { dl {
                dt { "Events retained" } dd #events { (s.end_offset - s.start_offset.min(s.end_offset)) }
                dt { "Offsets" } dd { (s.start_offset) " – " (s.end_offset) }
                dt { "Bytes" } dd { (layout::bytes(s.bytes)) " in " (s.segments) " segments" }
                dt { "Published since start" } dd { (s.published) }
                dt { "Publish rate (1 min)" } dd { (layout::rate(console.rates().topic(&topic))) }
            } }
            div.card { dl {
                dt { "Retention" } dd { (retention) }
                dt { "Dedup window" } dd { (dedup) }
                dt { "Created" } dd { (layout::time_us(info.record.created_us)) }
            } }
        }
        h2 { "Groups" }
        div.scroll { table #groups {
            thead { tr {
                th { "Group" } th.num { "Backlog" } th.num { "In flight" } th.num { "Consumers" }
                th.num { "Dead letters" } th.num { "Delivery rate" } th { "Oldest unacked" }
            } }
            tbody {
                @for g in &groups {
                    @let name = &g.record.name;
                    tr data-group=(name) {
                        td { a href=(group_url(&topic, name)) { (name) } }
                        td.num { (g.stats.backlog) }
                        td.num { (g.stats.in_flight) }
                        td.num { (g.stats.connected_consumers) }
                        td.num { a href=(format!("{}/dead-letters", group_url(&topic, name))) { (g.stats.dead_letter_count) } }
                        td.num { (layout::rate(console.rates().group(&topic, name))) }
                        td { (layout::age(g.stats.oldest_unacked_age)) }
                    }
                }
                @if groups.is_empty() { tr { td colspan="7" .muted { "No groups yet." } } }
            }
        } }
        @if more.is_some() { p.muted { "Showing the first " (GROUPS) " groups." } }
        details.card {
            summary { "Create a group" }
            form method="post" action=(format!("{url}/groups")) {
                (csrf_field(&caller))
                label { "Name" input name="name" required placeholder="billing"; }
                label { "Start at" select name="start" {
                    option value="latest" { "latest (only new events)" }
                    option value="earliest" { "earliest (all retained events)" }
                } }
                label { "Event types (comma-separated, empty = all)" input name="types" placeholder="OrderPlaced, OrderShipped"; }
                label.check { input type="checkbox" name="ordered" value="1"; " Per-key ordering" }
                label.check { input type="checkbox" name="ack_sync" value="1"; " Answer acks only once they are durable (sync)" }
                button type="submit" { "Create group" }
            }
        }
        h2 { "Live tail" }
        p.muted { "The last " (TAIL_HISTORY) " events, then new ones as they are published." }
        div #tail.tail data-src=(format!("{url}/tail?from={tail_from}")) aria-live="polite" {
            p.muted.tail-status { "Connecting… (needs JavaScript)" }
        }
        details.card {
            summary { "Publish a test event" }
            form method="post" action=(format!("{url}/publish")) {
                (csrf_field(&caller))
                label { "Type" input name="type" required placeholder="OrderPlaced"; }
                label { "Key" input name="key" placeholder="order-1"; }
                label { "Id (empty: assigned)" input name="id"; }
                label { "Content type" input name="content_type" value="application/json"; }
                label { "Data" textarea name="data" rows="4" placeholder="{\"total\": 42}" {} }
                button type="submit" { "Publish" }
            }
        }
        form.inline method="post" action=(format!("{url}/delete"))
            data-confirm=(format!("Delete topic {topic} with its events and groups?")) {
            (csrf_field(&caller))
            button.danger type="submit" { "Delete topic" }
        }
    };
    let crumbs = [
        ("Topics".to_string(), "/topics".to_string()),
        (topic.clone(), url.clone()),
    ];
    Ok(layout::page(
        &console,
        &caller,
        &topic,
        &crumbs,
        q.notice.as_deref(),
        body,
    ))
}

/// `POST /topics/{topic}/publish`: publishes one event from the form.
pub(super) async fn publish(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    form: Form,
) -> Result<Response, HttpError> {
    console.allow(&caller, Action::Publish, Some(&topic))?;
    console.allow_implicit_create(&caller, &topic).await?;
    let event = Event {
        id: form.text("id").unwrap_or_default().to_string(),
        event_type: form.text("type").unwrap_or_default().to_string(),
        source: "herald-console".into(),
        key: form.text("key").unwrap_or_default().to_string(),
        content_type: form.text("content_type").unwrap_or_default().to_string(),
        data: bytes::Bytes::from(form.get("data").unwrap_or_default().to_string()),
        ..Event::default()
    };
    let started = std::time::Instant::now();
    let published = console.broker().publish(&topic, vec![event]).await?;
    // Recorded at the edge, as the gRPC publisher does.
    let stored = published.events.iter().filter(|e| !e.duplicate).count() as u64;
    crate::telemetry::metrics::metrics().published(&topic, stored, started.elapsed());
    let notice = match published.events.first() {
        Some(e) if e.duplicate => format!(
            "Duplicate of the event at offset {} (not stored again)",
            e.offset
        ),
        Some(e) => format!("Published at offset {} (id {})", e.offset, e.id),
        None => "Nothing published".to_string(),
    };
    Ok(Redirect::to(&format!("{}?notice={}", topic_url(&topic), esc(&notice))).into_response())
}

/// `POST /topics/{topic}/groups`: creates a group and opens it.
pub(super) async fn create_group(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    form: Form,
) -> Result<Response, HttpError> {
    console.allow(&caller, Action::CreateGroup, Some(&topic))?;
    let name = form.text("name").unwrap_or_default();
    let start = match form.text("start") {
        Some("earliest") => Position::Earliest,
        _ => Position::Latest,
    };
    let patch = GroupPatch {
        filter: Some(Filter {
            types: list(form.get("types")),
            patterns: list(form.get("patterns")),
        }),
        ordered: Some(form.get("ordered") == Some("1")),
        ack_durability: (form.get("ack_sync") == Some("1")).then_some(AckDurability::Sync),
        ..GroupPatch::default()
    };
    console
        .broker()
        .create_group(&topic, name, &patch, Some(start))
        .await?;
    Ok(Redirect::to(&format!("{}?notice=Group+created", group_url(&topic, name))).into_response())
}

/// A comma-separated list field.
pub(super) fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
