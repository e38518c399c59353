//! Logs, traces and metrics: `tracing` to stderr (text or JSON,
//! `RUST_LOG`-style filter), and OTLP/gRPC export of traces and metrics when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or the signal's own
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`)
//! is set. The standard `OTEL_*` variables configure the exporters
//! (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_METRIC_EXPORT_INTERVAL`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`…);
//! `OTEL_TRACES_EXPORTER=none` / `OTEL_METRICS_EXPORTER=none` turn one signal
//! off, `OTEL_SDK_DISABLED=true` both.
//!
//! Herald's spans (`publish`, `deliver`, `ack`, `nack`) are at DEBUG level:
//! the log filter decides whether they show in the logs (their close is
//! logged), and the OTLP exporter takes Herald's spans at DEBUG and above
//! whatever the log filter says. With no endpoint set nothing is exported
//! and the spans are off unless the log filter asks for them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::broker::Broker;
use crate::config::LogFormat;
use crate::telemetry::metrics::{self, GROUP, METER_NAME, TOPIC};

/// Keeps the exporters alive; [`Telemetry::shutdown`] flushes them.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporters, if any.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
        if let Some(provider) = self.meter
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing metrics failed: {e}");
        }
    }
}

/// Whether a signal is to be exported: an endpoint is set for it and
/// neither `OTEL_SDK_DISABLED` nor its `OTEL_*_EXPORTER=none` turns it off.
fn export_wanted(signal_endpoint: &str, exporter: &str) -> bool {
    let set = |key: &str| std::env::var_os(key).is_some_and(|v| !v.is_empty());
    let is = |key: &str, value: &str| {
        std::env::var(key).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set(signal_endpoint))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is(exporter, "none")
}

/// `service.name` = herald unless `OTEL_SERVICE_NAME` says otherwise, plus
/// what `OTEL_RESOURCE_ATTRIBUTES` adds.
fn resource() -> opentelemetry_sdk::Resource {
    let builder = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        builder.build()
    } else {
        builder.with_service_name("herald").build()
    }
}

/// Installs the global subscriber, and the OTLP trace and metric exporters
/// when configured; with `prometheus` (the HTTP listener is on) the
/// metrics also go to the console's `/metrics`. `filter` is used unless
/// `RUST_LOG` is set. Must run inside the tokio runtime (the gRPC exporters
/// live on it).
///
/// # Errors
/// The filter does not parse, or an exporter cannot be built.
pub fn init(format: LogFormat, filter: &str, prometheus: bool) -> anyhow::Result<Telemetry> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(&env)
            .map_err(|e| anyhow::anyhow!("RUST_LOG={env:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(filter)
            .map_err(|e| anyhow::anyhow!("log.filter {filter:?} is not a valid filter: {e}"))?,
    };
    // Span closes are logged, so Herald's DEBUG spans show in the logs when
    // the filter lets them through.
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_span_events(FmtSpan::CLOSE)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_span_events(FmtSpan::CLOSE)
            .boxed(),
    }
    .with_filter(filter);

    let tracer = if export_wanted("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER") {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| anyhow::anyhow!("building the OTLP trace exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        Some(provider)
    } else {
        None
    };
    // Only Herald's own spans: the exporter's gRPC client (tonic, h2,
    // hyper) must not trace itself into the queue it is draining. Thread
    // and source-location attributes say nothing on a tokio runtime and
    // would weigh down every `deliver` span.
    let otel = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("herald"))
            .with_threads(false)
            .with_location(false)
            .with_filter(Targets::new().with_target("herald", Level::DEBUG))
    });

    let otlp_metrics = export_wanted(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_METRICS_EXPORTER",
    );
    let meter = install_metrics(otlp_metrics, prometheus)?;

    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    Ok(Telemetry { tracer, meter })
}

/// Installs the global meter provider with an OTLP reader (`otlp`) and the
/// Prometheus reader of `/metrics` (`prometheus`), and turns Herald's
/// instruments on; with neither, nothing is installed and the instruments
/// stay off. Must run before the first instrument is used (before the
/// server starts); `init` calls it, and in-process tests that scrape
/// `/metrics` call it themselves.
///
/// # Errors
/// An exporter cannot be built, or a Prometheus reader was made before.
pub fn install_metrics(otlp: bool, prometheus: bool) -> anyhow::Result<Option<SdkMeterProvider>> {
    if !otlp && !prometheus {
        return Ok(None);
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource());
    if otlp {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| anyhow::anyhow!("building the OTLP metric exporter: {e}"))?;
        // Reads OTEL_METRIC_EXPORT_INTERVAL (ms; default 60 s).
        builder = builder.with_reader(PeriodicReader::builder(exporter).build());
    }
    if prometheus {
        builder = builder.with_reader(crate::http::metrics::reader()?);
    }
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    if !metrics::install(&opentelemetry::global::meter(METER_NAME)) {
        eprintln!("herald: metric instruments were created before telemetry; metrics stay off");
    }
    Ok(Some(provider))
}

/// Registers the per-group gauges (`herald.group.backlog`,
/// `herald.group.in_flight`, `herald.group.dead_letters`, by topic and
/// group) read from `broker` at each metric export. Does nothing when
/// metrics are off.
pub fn observe_groups(broker: &Broker) {
    if !metrics::metrics().enabled() {
        return;
    }
    type Pick = fn(&crate::broker::GroupGauges) -> &std::sync::atomic::AtomicU64;
    let gauges: [(&'static str, &'static str, Pick); 3] = [
        (
            "herald.group.backlog",
            "Events of the group not yet acknowledged",
            |g| &g.backlog,
        ),
        (
            "herald.group.in_flight",
            "Deliveries leased to consumers and not yet settled",
            |g| &g.in_flight,
        ),
        (
            "herald.group.dead_letters",
            "Events in the group's dead-letter queue",
            |g| &g.dead_letters,
        ),
    ];
    let meter = opentelemetry::global::meter(METER_NAME);
    for (name, description, pick) in gauges {
        let broker = broker.clone();
        // The SDK keeps the callback for the provider's lifetime; the
        // returned handle need not be kept.
        let _gauge = meter
            .u64_observable_gauge(name)
            .with_description(description)
            .with_unit("{event}")
            .with_callback(move |observer| {
                for (topic, group, g) in broker.group_gauges() {
                    observer.observe(
                        pick(&g).load(std::sync::atomic::Ordering::Relaxed),
                        &[
                            opentelemetry::KeyValue::new(TOPIC, topic),
                            opentelemetry::KeyValue::new(GROUP, group),
                        ],
                    );
                }
            })
            .build();
    }
}
