//! `GET /topics`: every topic with its events, bytes, publish rate,
//! retention and dedup window; `POST /topics` creates one and
//! `POST /topics/{topic}/delete` deletes one (after a confirmation).
//!
//! Edge layer: `Broker::list_topics`, `create_topic`, `delete_topic`.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Action;
use super::form::Form;
use super::layout::{self, csrf_field, esc, topic_url};
use super::session::Caller;
use super::{Console, HttpError};
use crate::broker::{TopicInfo, TopicPatch};
use crate::grpc::visible::visible_page;

/// Topics per page.
const PAGE: usize = 100;

/// Query of the topics page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TopicsQuery {
    /// Only topics whose name contains this.
    #[serde(default)]
    q: String,
    /// Page after this topic name.
    after: Option<String>,
    /// A message to show (after an action).
    notice: Option<String>,
}

/// The topics page.
pub(super) async fn page(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<TopicsQuery>,
) -> Result<Markup, HttpError> {
    console.allow(&caller, Action::ListTopics, None)?;
    let broker = console.broker();
    let needle = query.q.trim().to_lowercase();
    // Only topics the caller may see, in full pages (as ListTopics).
    let (topics, next) = if needle.is_empty() && console.sees_all(&caller) {
        broker.list_topics(query.after.as_deref(), PAGE).await?
    } else if needle.is_empty() {
        visible_page(
            query.after.clone(),
            PAGE,
            |after: Option<String>, n| async move { broker.list_topics(after.as_deref(), n).await },
            |t: &TopicInfo| console.may_see(&caller, &t.record.name),
            |t| t.record.name.clone(),
        )
        .await?
    } else {
        let (all, _) = broker.list_topics(None, usize::MAX - 1).await?;
        let found: Vec<TopicInfo> = all
            .into_iter()
            .filter(|t| t.record.name.to_lowercase().contains(&needle))
            .filter(|t| console.may_see(&caller, &t.record.name))
            .take(PAGE)
            .collect();
        (found, None)
    };
    let body = html! {
        h1 { "Topics" }
        form.search method="get" action="/topics" {
            input type="search" name="q" value=(query.q) placeholder="Find a topic" aria-label="Find a topic";
            button type="submit" { "Find" }
        }
        div.scroll { table #topics {
            thead { tr {
                th { "Topic" } th.num { "Events" } th.num { "Bytes" } th.num { "Publish rate" }
                th { "Retention" } th { "Dedup window" } th.num { "Groups" } th {}
            } }
            tbody {
                @for t in &topics { (row(&caller, t, console.rates().topic(&t.record.name))) }
                @if topics.is_empty() { tr { td colspan="8" .muted { "No topics" @if !needle.is_empty() { " match" } "." } } }
            }
        } }
        @if let Some(after) = next {
            p { a href=(format!("/topics?after={}", esc(&after))) { "Next page →" } }
        }
        details.card open[topics.is_empty() && needle.is_empty()] {
            summary { "Create a topic" }
            form method="post" action="/topics" {
                (csrf_field(&caller))
                label { "Name" input name="name" required pattern="[A-Za-z0-9._\\-]+" placeholder="orders"; }
                label { "Retention age" input name="retention_max_age" placeholder="forever (e.g. 7d)"; }
                label { "Retention bytes" input name="retention_max_bytes" inputmode="numeric" placeholder="no limit"; }
                label { "Dedup window" input name="dedup_window" placeholder=(layout::duration(broker.config().topic_defaults.dedup_window)); }
                button type="submit" { "Create topic" }
            }
        }
    };
    let crumbs = [("Topics".to_string(), "/topics".to_string())];
    Ok(layout::page(
        &console,
        &caller,
        "Topics",
        &crumbs,
        query.notice.as_deref(),
        body,
    ))
}

fn row(caller: &Caller, t: &TopicInfo, rate: Option<f64>) -> Markup {
    let s = &t.settings();
    let name = &t.record.name;
    html! {
        tr data-topic=(name) {
            td { a href=(topic_url(name)) { (name) } }
            td.num { (t.stats.end_offset - t.stats.start_offset.min(t.stats.end_offset)) }
            td.num { (layout::bytes(t.stats.bytes)) }
            td.num { (layout::rate(rate)) }
            td { (s.0) }
            td { (s.1) }
            td.num { (t.stats.groups) }
            td { form.inline method="post" action=(format!("{}/delete", topic_url(name)))
                    data-confirm=(format!("Delete topic {name} with its events and groups?")) {
                (csrf_field(caller))
                button.danger.small type="submit" { "Delete" }
            } }
        }
    }
}

/// Retention and dedup window of a topic, as text.
pub(super) trait TopicText {
    /// (retention, dedup window).
    fn settings(&self) -> (String, String);
}

impl TopicText for TopicInfo {
    fn settings(&self) -> (String, String) {
        let s = &self.record.settings;
        let mut retention = Vec::new();
        if let Some(age) = s.retention_max_age {
            retention.push(layout::duration(age));
        }
        if let Some(bytes) = s.retention_max_bytes {
            retention.push(layout::bytes(bytes));
        }
        let retention = if retention.is_empty() {
            "forever".to_string()
        } else {
            retention.join(", ")
        };
        let dedup = if s.dedup_window.is_zero() {
            "off".to_string()
        } else {
            layout::duration(s.dedup_window)
        };
        (retention, dedup)
    }
}

/// `POST /topics`: creates a topic and opens it.
pub(super) async fn create(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    form: Form,
) -> Result<Response, HttpError> {
    let name = form.text("name").unwrap_or_default();
    console.allow(&caller, Action::CreateTopic, Some(name))?;
    let patch = TopicPatch {
        retention_max_age: form.duration("retention_max_age")?.map(Some),
        retention_max_bytes: form.number::<u64>("retention_max_bytes")?.map(Some),
        dedup_window: form.duration("dedup_window")?,
        labels: None,
    };
    console.broker().create_topic(name, &patch).await?;
    Ok(Redirect::to(&format!("{}?notice=Topic+created", topic_url(name))).into_response())
}

/// `POST /topics/{topic}/delete`: deletes a topic (asks first without the script).
pub(super) async fn delete(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    form: Form,
) -> Result<Response, HttpError> {
    console.allow(&caller, Action::DeleteTopic, Some(&topic))?;
    if !form.confirmed() {
        let action = format!("{}/delete", topic_url(&topic));
        let question = format!(
            "Delete topic {topic} with all its events, groups and dead letters? This cannot be undone."
        );
        return Ok(layout::confirm(
            &console,
            &caller,
            "Delete topic",
            &question,
            &action,
            &form,
            &topic_url(&topic),
        )
        .into_response());
    }
    console.broker().delete_topic(&topic).await?;
    let notice = esc(&format!("Topic {topic} deleted"));
    Ok(Redirect::to(&format!("/topics?notice={notice}")).into_response())
}
