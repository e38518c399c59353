//! `GET /`: version, backend, uptime, totals, and publish and delivery
//! rates over the last minutes.
//!
//! Edge layer: [`Broker::server_info`](crate::broker::Broker::server_info),
//! the groups' gauges and the rate samples.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::auth::Action;
use super::layout::{self, rate};
use super::session::Caller;
use super::{Console, HttpError};

/// The overview page. It shows the whole server, so it needs what
/// GetServerInfo needs (admin); anyone else logged in is sent to the
/// topics they may see.
pub(super) async fn page(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, HttpError> {
    match console.allow(&caller, Action::GetServerInfo, None) {
        Err(HttpError::Forbidden(_)) => return Ok(Redirect::to("/topics").into_response()),
        other => other?,
    }
    let info = console.broker().server_info();
    let (mut backlog, mut in_flight, mut dead) = (0u64, 0u64, 0u64);
    for (_, _, g) in console.broker().group_gauges() {
        backlog += g.backlog.load(Ordering::Relaxed);
        in_flight += g.in_flight.load(Ordering::Relaxed);
        dead += g.dead_letters.load(Ordering::Relaxed);
    }
    let rates = console.rates();
    let windows = [
        ("1 min", Duration::from_secs(60)),
        ("5 min", Duration::from_secs(300)),
        ("15 min", Duration::from_secs(900)),
    ];
    let (published_series, delivered_series) = rates.series();
    let body = html! {
        h1 { "Overview" }
        section.cards {
            div.card { h3 { "Server" }
                dl {
                    dt { "Version" } dd { (info.version) }
                    dt { "Storage" } dd { (info.storage_backend) " (fsync " (info.fsync) ")" }
                    dt { "Uptime" } dd { (layout::duration(info.uptime)) }
                    dt { "Started" } dd { (humantime::format_rfc3339_seconds(info.started)) }
                }
            }
            div.card { h3 { "Totals" }
                dl {
                    dt { "Topics" } dd #topics { a href="/topics" { (info.topics) } }
                    dt { "Groups" } dd #groups { (info.groups) }
                    dt { "Consumers connected" } dd #consumers { (info.connected_consumers) }
                    dt { "Published since start" } dd #published { (info.published) }
                    dt { "Backlog" } dd #backlog { (backlog) }
                    dt { "In flight" } dd #in-flight { (in_flight) }
                    dt { "Dead letters" } dd #dead-letters { (dead) }
                }
            }
        }
        section.card {
            h3 { "Rates" }
            div.scroll { table {
                thead { tr { th { "over the last" } th.num { "published" } th.num { "delivered" } } }
                tbody {
                    @for (label, window) in windows {
                        @let (p, d) = rates.server(window);
                        tr { td { (label) } td.num { (rate(p)) } td.num { (rate(d)) } }
                    }
                }
            } }
            div.charts {
                figure { (layout::sparkline(&published_series, "published per second")) figcaption { "published/s, last 15 min" } }
                figure { (layout::sparkline(&delivered_series, "delivered per second")) figcaption { "delivered/s, last 15 min" } }
            }
            p.muted { "Sampled every " (super::SAMPLE_INTERVAL.as_secs()) " s." }
        }
    };
    Ok(layout::page(&console, &caller, "Overview", &[], None, body).into_response())
}
