//! `GET …/groups/{group}/dead-letters`: a group's dead letters, filtered
//! by type and dead-letter time, page by page, each with its event, reason,
//! attempts and times; replay or purge one, a selection, or all that match
//! (each after a confirmation step).
//!
//! Edge layer: `Broker::list_dead_letters`, `replay_dead_letters`,
//! `purge_dead_letters`, with the same selection rules as
//! `DeadLetterService` (`broker::dead_letter::selection`).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Action;
use super::form::Form;
use super::group::parse_time;
use super::layout::{self, csrf_field, esc, group_url, topic_url};
use super::session::Caller;
use super::topic::list;
use super::{Console, HttpError};
use crate::broker::dead_letter::selection;
use crate::broker::{DeadLetter, DeadLetterFilter};

/// Dead letters per page unless the query asks for another size.
const PAGE: usize = 20;
/// Largest page the query may ask for.
const MAX_PAGE: usize = 200;

/// Filter and page of the list.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    /// Event types, comma-separated.
    #[serde(default, rename = "type")]
    types: String,
    /// Dead-lettered at or after (UTC).
    #[serde(default)]
    from: String,
    /// Dead-lettered before (UTC).
    #[serde(default)]
    to: String,
    /// Oldest first.
    #[serde(default)]
    oldest: String,
    /// Page token.
    #[serde(default)]
    page: String,
    /// Entries per page.
    size: Option<usize>,
    /// A message to show (after an action).
    notice: Option<String>,
}

fn filter_of(
    types: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<DeadLetterFilter, HttpError> {
    Ok(DeadLetterFilter {
        types: list(types),
        start_us: parse_time("from", from.filter(|v| !v.trim().is_empty()))?,
        end_us: parse_time("to", to.filter(|v| !v.trim().is_empty()))?,
    })
}

/// The list page.
pub(super) async fn page(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path((topic, group)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Markup, HttpError> {
    console.allow(&caller, Action::ListDeadLetters, Some(&topic))?;
    let filter = filter_of(Some(&q.types), Some(&q.from), Some(&q.to))?;
    let oldest = q.oldest == "1";
    let size = q.size.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let page = console
        .broker()
        .list_dead_letters(&topic, &group, size, &q.page, oldest, &filter)
        .await?;
    let url = format!("{}/dead-letters", group_url(&topic, &group));
    let filter_query = format!(
        "type={}&from={}&to={}&oldest={}",
        esc(&q.types),
        esc(&q.from),
        esc(&q.to),
        if oldest { "1" } else { "" }
    );
    let body = html! {
        h1 { "Dead letters of " (group) }
        form.card.filters method="get" action=(url) {
            label { "Event types" input name="type" value=(q.types) placeholder="all"; }
            label { "Dead-lettered from (UTC)" input name="from" type="datetime-local" step="1" value=(q.from); }
            label { "to (UTC)" input name="to" type="datetime-local" step="1" value=(q.to); }
            label.check { input type="checkbox" name="oldest" value="1" checked[oldest]; " Oldest first" }
            button type="submit" { "Filter" }
        }
        p #total { (page.total) " dead letters match." }
        form #dead-letters method="post" action=(format!("{url}/replay")) {
            (csrf_field(&caller))
            input type="hidden" name="type" value=(q.types);
            input type="hidden" name="from" value=(q.from);
            input type="hidden" name="to" value=(q.to);
            div.actions {
                button type="submit" name="selected" value="1" formaction=(format!("{url}/replay"))
                    data-confirm="Replay the selected dead letters into this group?" { "Replay selected" }
                button.danger type="submit" name="selected" value="1" formaction=(format!("{url}/purge"))
                    data-confirm="Purge the selected dead letters? This cannot be undone." { "Purge selected" }
                button type="submit" name="all" value="1" formaction=(format!("{url}/replay"))
                    data-confirm=(format!("Replay all {} matching dead letters into this group?", page.total)) { "Replay all " (page.total) }
                button.danger type="submit" name="all" value="1" formaction=(format!("{url}/purge"))
                    data-confirm=(format!("Purge all {} matching dead letters? This cannot be undone.", page.total)) { "Purge all " (page.total) }
            }
            div.scroll { table #dead-letter-list {
                thead { tr {
                    th { input type="checkbox" data-select-all aria-label="Select all on this page"; }
                    th.num { "Id" } th { "Event" } th.num { "Attempts" } th { "Last reason" }
                    th { "First failure" } th { "Last failure" } th { "Dead-lettered" } th {}
                } }
                tbody { @for dl in &page.entries { (row(&url, dl)) } }
            } }
            @if page.entries.is_empty() { p.muted { "No dead letters" @if filter != DeadLetterFilter::default() { " match the filter" } "." } }
        }
        @if let Some(next) = &page.next_token {
            p { a href=(format!("{url}?{filter_query}&page={}&size={size}", esc(next))) { "Next page →" } }
        }
    };
    let crumbs = [
        ("Topics".to_string(), "/topics".to_string()),
        (topic.clone(), topic_url(&topic)),
        (group.clone(), group_url(&topic, &group)),
        ("Dead letters".to_string(), url.clone()),
    ];
    Ok(layout::page(
        &console,
        &caller,
        &format!("Dead letters of {group}"),
        &crumbs,
        q.notice.as_deref(),
        body,
    ))
}

fn row(url: &str, dl: &DeadLetter) -> Markup {
    let e = &dl.event;
    html! {
        tr data-id=(dl.id) {
            td { input type="checkbox" name="ids" value=(dl.id) aria-label=(format!("Select {}", dl.id)); }
            td.num { (dl.id) }
            td {
                details {
                    summary { b { (e.event.event_type) } " #" (e.offset) @if !e.event.key.is_empty() { " key " code { (e.event.key) } } }
                    dl.event {
                        dt { "Id" } dd { code { (e.event.id) } }
                        dt { "Published" } dd { (layout::time_us(e.publish_time_us)) }
                        @if !e.event.source.is_empty() { dt { "Source" } dd { (e.event.source) } }
                        @if !e.event.content_type.is_empty() { dt { "Content type" } dd { (e.event.content_type) } }
                        @for (k, v) in &e.event.attributes { dt { (k) } dd { code { (v) } } }
                    }
                    (layout::payload(&e.event.data))
                }
            }
            td.num { (dl.attempts) }
            td.reason { (dl.last_reason) }
            td { (layout::time_us(dl.first_failure_us)) }
            td { (layout::time_us(dl.last_failure_us)) }
            td { (layout::time_us(dl.dead_letter_us)) }
            td.row-actions {
                button.small type="submit" name="one" value=(dl.id) formaction=(format!("{url}/replay"))
                    data-confirm=(format!("Replay dead letter {} into this group?", dl.id)) { "Replay" }
                button.small.danger type="submit" name="one" value=(dl.id) formaction=(format!("{url}/purge"))
                    data-confirm=(format!("Purge dead letter {}? This cannot be undone.", dl.id)) { "Purge" }
            }
        }
    }
}

/// What a replay or purge form selects: one row (`one`), the checked rows
/// (`ids`), or all that match the filter (`all`).
fn selected(form: &Form) -> Result<(crate::broker::Selection, String), HttpError> {
    let (ids, all): (Vec<String>, bool) = if let Some(one) = form.text("one") {
        (vec![one.to_string()], false)
    } else if form.get("all") == Some("1") {
        (Vec::new(), true)
    } else {
        let ids: Vec<String> = form.all("ids").into_iter().map(str::to_string).collect();
        if ids.is_empty() {
            return Err(HttpError::BadRequest(
                "select at least one dead letter".into(),
            ));
        }
        (ids, false)
    };
    let filter = if all {
        filter_of(form.get("type"), form.get("from"), form.get("to"))?
    } else {
        DeadLetterFilter::default()
    };
    let what = if all {
        "all matching dead letters".to_string()
    } else if ids.len() == 1 {
        format!("dead letter {}", ids[0])
    } else {
        format!("{} dead letters ({})", ids.len(), ids.join(", "))
    };
    Ok((selection(&ids, all, filter)?, what))
}

/// `POST …/dead-letters/replay`.
pub(super) async fn replay(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path((topic, group)): Path<(String, String)>,
    form: Form,
) -> Result<Response, HttpError> {
    act(console, caller, topic, group, form, true).await
}

/// `POST …/dead-letters/purge`.
pub(super) async fn purge(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path((topic, group)): Path<(String, String)>,
    form: Form,
) -> Result<Response, HttpError> {
    act(console, caller, topic, group, form, false).await
}

async fn act(
    console: Console,
    caller: Caller,
    topic: String,
    group: String,
    form: Form,
    replay: bool,
) -> Result<Response, HttpError> {
    let action = if replay {
        Action::ReplayDeadLetters
    } else {
        Action::PurgeDeadLetters
    };
    console.allow(&caller, action, Some(&topic))?;
    let (selection, what) = selected(&form)?;
    let verb = if replay { "Replay" } else { "Purge" };
    let url = format!("{}/dead-letters", group_url(&topic, &group));
    if !form.confirmed() {
        let question = if replay {
            format!(
                "Replay {what} into group {group}? Attempts start again at 1; other groups are not touched."
            )
        } else {
            format!("Purge {what} of group {group}? This cannot be undone.")
        };
        let target = format!("{url}/{}", verb.to_lowercase());
        return Ok(
            layout::confirm(&console, &caller, verb, &question, &target, &form, &url)
                .into_response(),
        );
    }
    let broker = console.broker();
    let counts = if replay {
        broker
            .replay_dead_letters(&topic, &group, selection)
            .await?
    } else {
        broker.purge_dead_letters(&topic, &group, selection).await?
    };
    let done = if replay { "Replayed" } else { "Purged" };
    let notice = format!("{done} {}; {} left", counts.changed, counts.remaining);
    Ok(Redirect::to(&format!("{url}?notice={}", esc(&notice))).into_response())
}
