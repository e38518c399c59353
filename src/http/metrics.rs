//! `GET /metrics`: Prometheus text exposition of Herald's OpenTelemetry
//! instruments.
//!
//! Edge layer. One set of instruments (`telemetry::metrics` and the group
//! gauges of `cli::telemetry`) feeds both exporters: the meter provider gets
//! a Prometheus reader ([`reader`]) beside the OTLP one, and this page
//! encodes what it collects, at scrape time. OpenTelemetry names become
//! Prometheus names by the specification's rules: dots become underscores,
//! counters get `_total`, units become suffixes (`herald.publish.duration`
//! in `s` is `herald_publish_duration_seconds`), and every series carries
//! `otel_scope_name="herald"`. Like any Prometheus registry this is
//! process-wide. With authentication on, any authenticated principal may
//! scrape it (a bearer token; 401 without one) and gets the series of the
//! topics it may see.

use std::sync::OnceLock;

use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::auth::Action;
use super::session::Caller;
use super::{Console, HttpError};

static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();

/// A Prometheus reader for the meter provider, whose metrics `/metrics`
/// serves. Call once, while building the provider.
///
/// # Errors
/// A reader was made before (a second provider would not be scraped), or
/// the exporter cannot be built.
pub fn reader() -> Result<opentelemetry_prometheus::PrometheusExporter, HttpError> {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .map_err(|e| HttpError::MetricsOff(format!("building the Prometheus exporter: {e}")))?;
    REGISTRY
        .set(registry)
        .map_err(|_| HttpError::MetricsOff("the Prometheus reader was made twice".into()))?;
    Ok(exporter)
}

fn registry() -> Result<&'static prometheus::Registry, HttpError> {
    REGISTRY.get().ok_or_else(|| {
        HttpError::MetricsOff(
            "metrics are off: the meter provider was installed without the Prometheus reader"
                .into(),
        )
    })
}

fn encode(families: &[prometheus::proto::MetricFamily]) -> Result<String, HttpError> {
    prometheus::TextEncoder::new()
        .encode_to_string(families)
        .map_err(|e| HttpError::MetricsOff(format!("encoding the metrics: {e}")))
}

/// The metrics in the Prometheus text format (version 0.0.4).
///
/// # Errors
/// No reader was installed, or encoding failed.
pub fn render() -> Result<String, HttpError> {
    encode(&registry()?.gather())
}

/// The `/metrics` page.
pub(super) async fn page(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, HttpError> {
    console
        .allow(&caller, Action::ScrapeMetrics, None)
        .map_err(|e| match e {
            // A scraper cannot follow a login form: say how to authenticate.
            HttpError::LoginRequired { .. } => HttpError::Unauthenticated(
                "send a token as Authorization: Bearer <token> to scrape /metrics".into(),
            ),
            other => other,
        })?;
    let text = if console.sees_all(&caller) {
        render()?
    } else {
        render_visible(|topic| console.may_see(&caller, topic))?
    };
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

/// [`render`], keeping only the series whose `topic` label passes
/// `visible` (series without one, like `target_info`, are kept).
///
/// # Errors
/// As [`render`].
pub fn render_visible(visible: impl Fn(&str) -> bool) -> Result<String, HttpError> {
    let mut families = registry()?.gather();
    for family in &mut families {
        family.mut_metric().retain(|m| {
            m.get_label()
                .iter()
                .find(|l| l.name() == "topic")
                .is_none_or(|l| visible(l.value()))
        });
    }
    // The encoder refuses a family without series.
    families.retain(|f| !f.get_metric().is_empty());
    encode(&families)
}
