//! `GET /topics/{topic}/tail?from=N`: the live tail of a topic as
//! server-sent events, each an HTML fragment of one event (payload as
//! pretty JSON when it parses), rendered here so the script only inserts it.
//!
//! Edge layer: `Broker::read` with `follow`, the same history read as
//! `SubscriberService.Read`; no group state is touched. A busy topic is
//! thinned out for the browser: of a batch, only the last
//! [`MAX_PER_BATCH`] events are sent, with a note of how many were skipped.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::auth::Action;
use super::layout;
use super::session::Caller;
use super::{Console, HttpError};
use crate::broker::{Position, ReadRequest};
use crate::event::StoredEvent;

/// Most events of one read batch sent to the browser.
pub(super) const MAX_PER_BATCH: usize = 50;

/// Query of the tail.
#[derive(Debug, Deserialize)]
pub(super) struct TailQuery {
    /// First offset to show; the end of the topic (only new events) when unset.
    from: Option<u64>,
}

/// The SSE stream.
pub(super) async fn stream(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    Query(q): Query<TailQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, HttpError> {
    console.allow(&caller, Action::Read, Some(&topic))?;
    let broker = console.broker();
    let info = broker.get_topic(&topic).await?;
    // A reconnecting browser says which event it saw last.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|last| last + 1);
    // Retention may have moved the start since the page was rendered.
    let start = match resume.or(q.from) {
        Some(from) => Position::Offset(from.max(info.stats.start_offset)),
        None => Position::Latest,
    };
    let mut events = broker
        .read(
            &topic,
            ReadRequest {
                start: Some(start),
                types: Vec::new(),
                follow: true,
                max_events: 0,
            },
        )
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let status = SseEvent::default().event("status").data("live");
        if tx.send(Ok(status)).await.is_err() {
            return;
        }
        while let Some(batch) = events.next().await {
            let out = match batch {
                Ok(batch) => render_batch(&batch),
                Err(e) => {
                    let ended = SseEvent::default().event("end").data(e.to_string());
                    let _ = tx.send(Ok(ended)).await;
                    return;
                }
            };
            for event in out {
                // The browser left: dropping `events` ends the read.
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream: ReceiverStream<Result<SseEvent, Infallible>> = ReceiverStream::new(rx);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn render_batch(batch: &[Arc<StoredEvent>]) -> Vec<SseEvent> {
    let skip = batch.len().saturating_sub(MAX_PER_BATCH);
    let mut out = Vec::with_capacity(batch.len() - skip + 1);
    if skip > 0 {
        let note = html! { p.muted.skipped { (skip) " events skipped (the tail shows at most " (MAX_PER_BATCH) " per batch)" } };
        out.push(SseEvent::default().event("event").data(note.into_string()));
    }
    for e in &batch[skip..] {
        out.push(
            SseEvent::default()
                .event("event")
                .id(e.offset.to_string())
                .data(fragment(e).into_string()),
        );
    }
    out
}

/// One event as the tail shows it.
pub(super) fn fragment(e: &StoredEvent) -> Markup {
    let ev = &e.event;
    html! {
        article.event data-offset=(e.offset) {
            header {
                span.offset { "#" (e.offset) }
                " " b.type { (ev.event_type) }
                @if !ev.key.is_empty() { " " span.key { "key " code { (ev.key) } } }
                " " time datetime=(layout::time_us(e.publish_time_us)) { (layout::time_us(e.publish_time_us)) }
                " " span.id.muted { (ev.id) }
            }
            (layout::payload(&ev.data))
        }
    }
}
