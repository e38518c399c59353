//! `GET /topics/{topic}/groups/{group}`: a consumer group's backlog, in
//! flight, oldest unacked age, consumers, counters and blocked keys; its
//! settings (editable), Seek, and delete.
//!
//! Edge layer: `Broker::get_group`, `update_group`, `seek`, `delete_group`.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::auth::Action;
use super::form::Form;
use super::layout::{self, csrf_field, esc, group_url, topic_url};
use super::session::Caller;
use super::topic::{Notice, list};
use super::{Console, HttpError};
use crate::broker::{AckDurability, Filter, GroupPatch, Position};

/// The group page.
pub(super) async fn page(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path((topic, group)): Path<(String, String)>,
    Query(q): Query<Notice>,
) -> Result<Markup, HttpError> {
    console.allow(&caller, Action::GetGroup, Some(&topic))?;
    let info = console.broker().get_group(&topic, &group).await?;
    let (s, set) = (&info.stats, &info.record.settings);
    let url = group_url(&topic, &group);
    let body = html! {
        h1 { "Group " (group) }
        section.cards {
            div.card #gauges { h3 { "Now" } dl {
                dt { "Backlog" } dd #backlog { (s.backlog) }
                dt { "In flight" } dd #in-flight { (s.in_flight) }
                dt { "Oldest unacked" } dd #oldest-unacked { (layout::age(s.oldest_unacked_age)) }
                dt { "Consumers connected" } dd #consumers { (s.connected_consumers) }
                dt { "Dead letters" } dd #dead-letter-count {
                    a href=(format!("{url}/dead-letters")) { (s.dead_letter_count) }
                    @if let Some(age) = s.oldest_dead_letter_age { " (oldest " (layout::duration(age)) ")" }
                }
                dt { "Blocked keys" } dd #blocked-keys { (s.blocked_keys) }
                dt { "Delivery rate (1 min)" } dd { (layout::rate(console.rates().group(&topic, &group))) }
            } }
            div.card #counters { h3 { "Since start" } dl {
                dt { "Delivered" } dd #delivered { (s.delivered) }
                dt { "Acked" } dd #acked { (s.acked) }
                dt { "Nacked" } dd #nacked { (s.nacked) }
                dt { "Redelivered" } dd #redelivered { (s.redelivered) }
                dt { "Dead-lettered" } dd #dead-lettered { (s.dead_lettered) }
                dt { "Filtered out" } dd { (s.filtered) }
                dt { "Expired by retention" } dd { (s.expired) }
                dt { "Ack floor" } dd { (s.ack_floor) }
                dt { "Memory" } dd { (layout::bytes(s.buffered_bytes)) }
            } }
        }
        p { a.button href=(format!("{url}/dead-letters")) { "Dead letters (" (s.dead_letter_count) ")" } }
        @if !s.oldest_blocked.is_empty() {
            h2 { "Blocked keys" }
            div.scroll { table #blocked {
                thead { tr { th { "Key" } th.num { "Offset" } th.num { "Attempts" } th.num { "Waiting" } th { "Since" } } }
                tbody { @for b in &s.oldest_blocked {
                    tr { td { code { (b.key) } } td.num { (b.offset) } td.num { (b.attempts) } td.num { (b.waiting) } td { (layout::ago_us(b.since_us)) } }
                } }
            } }
        }
        h2 { "Settings" }
        form.card #settings method="post" action=(format!("{url}/settings")) {
            (csrf_field(&caller))
            label { "Event types (comma-separated, empty = all)" input name="types" value=(set.filter.types.join(", ")); }
            label { "Patterns (comma-separated)" input name="patterns" value=(set.filter.patterns.join(", ")); }
            label { "Ack deadline" input name="ack_deadline" value=(layout::duration(set.ack_deadline)) required; }
            label { "Min backoff" input name="min_backoff" value=(layout::duration(set.retry.min_backoff)) required; }
            label { "Max backoff" input name="max_backoff" value=(layout::duration(set.retry.max_backoff)) required; }
            label { "Backoff multiplier" input name="multiplier" value=(set.retry.multiplier) inputmode="decimal" required; }
            label { "Max delivery attempts (0 = never dead-letter)" input name="max_delivery_attempts" value=(set.max_delivery_attempts) inputmode="numeric" required; }
            label.check { input type="checkbox" name="ack_sync" value="1" checked[set.ack_durability == AckDurability::Sync]; " Answer acks only once they are durable (sync)" }
            p.muted { "Per-key ordering: " (if set.ordered { "on" } else { "off" }) " (fixed at creation). Started at " (position(&info.record.start)) "."
                @if let Some(ttl) = set.expire_after { " Temporary: deleted after " (layout::duration(ttl)) " without a consumer." }
                @if let Some(age) = set.max_message_age { " Unacknowledged events older than " (layout::duration(age)) " are dropped." } }
            button type="submit" { "Save settings" }
        }
        h2 { "Seek" }
        form.card #seek method="post" action=(format!("{url}/seek"))
            data-confirm=(format!("Move group {group}? Events before the target count as acknowledged, events from it on are delivered again.")) {
            (csrf_field(&caller))
            label { "To" select name="to" {
                option value="earliest" { "earliest retained event" }
                option value="latest" { "latest (skip everything)" }
                option value="offset" { "offset…" }
                option value="time" { "publish time (UTC)…" }
            } }
            label { "Offset" input name="offset" inputmode="numeric"; }
            label { "Time (UTC)" input name="time" type="datetime-local" step="1"; }
            button type="submit" { "Seek" }
        }
        form.inline method="post" action=(format!("{url}/delete"))
            data-confirm=(format!("Delete group {group} with its progress and dead letters?")) {
            (csrf_field(&caller))
            button.danger type="submit" { "Delete group" }
        }
    };
    let crumbs = [
        ("Topics".to_string(), "/topics".to_string()),
        (topic.clone(), topic_url(&topic)),
        (group.clone(), url.clone()),
    ];
    Ok(layout::page(
        &console,
        &caller,
        &group,
        &crumbs,
        q.notice.as_deref(),
        body,
    ))
}

fn position(p: &Position) -> String {
    match p {
        Position::Earliest => "earliest".into(),
        Position::Latest => "latest".into(),
        Position::Offset(o) => format!("offset {o}"),
        Position::Time(us) => layout::time_us(*us),
    }
}

/// `POST …/settings`: changes the group's settings.
pub(super) async fn update(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path((topic, group)): Path<(String, String)>,
    form: Form,
) -> Result<Response, HttpError> {
    console.allow(&caller, Action::UpdateGroup, Some(&topic))?;
    let patch = GroupPatch {
        filter: Some(Filter {
            types: list(form.get("types")),
            patterns: list(form.get("patterns")),
        }),
        ack_deadline: form.duration("ack_deadline")?,
        min_backoff: form.duration("min_backoff")?,
        max_backoff: form.duration("max_backoff")?,
        multiplier: form.number("multiplier")?,
        max_delivery_attempts: form.number("max_delivery_attempts")?,
        ordered: None,
        ack_durability: Some(if form.get("ack_sync") == Some("1") {
            AckDurability::Sync
        } else {
            AckDurability::Batched
        }),
        expire_after: None,
        attribute_filter: None,
        dead_letter_topic: None,
        labels: None,
        max_message_age: None,
    };
    console
        .broker()
        .update_group(&topic, &group, &patch)
        .await?;
    Ok(back(&topic, &group, "Settings saved"))
}

/// `POST …/seek`: moves the group (asks first without the script).
pub(super) async fn seek(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path((topic, group)): Path<(String, String)>,
    form: Form,
) -> Result<Response, HttpError> {
    console.allow(&caller, Action::Seek, Some(&topic))?;
    let to = match form.text("to") {
        Some("earliest") => Position::Earliest,
        Some("latest") => Position::Latest,
        Some("offset") => {
            Position::Offset(form.number("offset")?.ok_or_else(|| {
                HttpError::BadRequest("offset: give the offset to seek to".into())
            })?)
        }
        Some("time") => Position::Time(
            parse_time("time", form.text("time"))?
                .ok_or_else(|| HttpError::BadRequest("time: give the time to seek to".into()))?,
        ),
        other => {
            return Err(HttpError::BadRequest(format!(
                "to: {other:?} is not earliest, latest, offset or time"
            )));
        }
    };
    if !form.confirmed() {
        let question = format!(
            "Move group {group} to {}? Events before it count as acknowledged, events from it on are delivered again.",
            position(&to)
        );
        let action = format!("{}/seek", group_url(&topic, &group));
        return Ok(layout::confirm(
            &console,
            &caller,
            "Seek",
            &question,
            &action,
            &form,
            &group_url(&topic, &group),
        )
        .into_response());
    }
    let offset = console.broker().seek(&topic, &group, to).await?;
    Ok(back(&topic, &group, &format!("Moved to offset {offset}")))
}

/// `POST …/delete`: deletes the group (asks first without the script).
pub(super) async fn delete(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path((topic, group)): Path<(String, String)>,
    form: Form,
) -> Result<Response, HttpError> {
    console.allow(&caller, Action::DeleteGroup, Some(&topic))?;
    if !form.confirmed() {
        let question = format!(
            "Delete group {group} of topic {topic} with its progress and dead letters? This cannot be undone."
        );
        let action = format!("{}/delete", group_url(&topic, &group));
        return Ok(layout::confirm(
            &console,
            &caller,
            "Delete group",
            &question,
            &action,
            &form,
            &group_url(&topic, &group),
        )
        .into_response());
    }
    console.broker().delete_group(&topic, &group).await?;
    let notice = esc(&format!("Group {group} deleted"));
    Ok(Redirect::to(&format!("{}?notice={notice}", topic_url(&topic))).into_response())
}

fn back(topic: &str, group: &str, notice: &str) -> Response {
    Redirect::to(&format!(
        "{}?notice={}",
        group_url(topic, group),
        esc(notice)
    ))
    .into_response()
}

/// A time field (`2024-05-01T12:30`, with or without seconds and `Z`,
/// always UTC) as µs since the epoch; `None` when empty.
pub(super) fn parse_time(field: &str, value: Option<&str>) -> Result<Option<i64>, HttpError> {
    let Some(v) = value else { return Ok(None) };
    let mut text = v.trim_end_matches('Z').replace(' ', "T");
    if text.len() == 16 {
        text.push_str(":00");
    }
    let t = humantime::parse_rfc3339_weak(&text).map_err(|e| {
        HttpError::BadRequest(format!(
            "{field}: {v:?} is not a time like 2024-05-01T12:30:00 ({e})"
        ))
    })?;
    let us = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| HttpError::BadRequest(format!("{field}: {v:?} is before 1970")))?
        .as_micros();
    Ok(Some(i64::try_from(us).unwrap_or(i64::MAX)))
}
