//! The OpenTelemetry metric instruments Herald records into.
//!
//! Counters (`herald.events.*`) are incremented once per batch with
//! `add(n)`; histograms are in seconds. Every recording method first checks
//! whether metrics are on, so with no exporter configured the hot path pays a
//! branch and builds no attributes. [`install`] turns them on; it must run
//! before the first [`metrics`] call (the binary does it at start-up, before
//! serving), otherwise the no-op instruments stay.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

/// Name of the meter (instrumentation scope) of every instrument.
pub const METER_NAME: &str = "herald";
/// Attribute naming the topic on every metric.
pub const TOPIC: &str = "topic";
/// Attribute naming the consumer group on group metrics.
pub const GROUP: &str = "group";

/// Bucket bounds of the duration histograms, in seconds: 50 µs to 10 s.
/// (The SDK's default buckets are meant for milliseconds.)
const SECONDS_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Herald's instruments.
pub struct Metrics {
    /// A meter provider with an exporter is installed.
    enabled: bool,
    published: Counter<u64>,
    delivered: Counter<u64>,
    acked: Counter<u64>,
    nacked: Counter<u64>,
    dead_lettered: Counter<u64>,
    from_cache: Counter<u64>,
    publish_duration: Histogram<f64>,
    delivery_latency: Histogram<f64>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Creates the instruments from `meter` and turns recording on. Returns
/// false when the instruments were already created (then they stay as they
/// were: off if nothing installed them before).
pub fn install(meter: &Meter) -> bool {
    METRICS.set(Metrics::new(meter, true)).is_ok()
}

/// The instruments; no-ops unless [`install`] ran first.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new(&opentelemetry::global::meter(METER_NAME), false))
}

impl Metrics {
    fn new(meter: &Meter, enabled: bool) -> Metrics {
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .with_unit("{event}")
                .build()
        };
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_description(description)
                .with_unit("s")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build()
        };
        Metrics {
            enabled,
            published: counter(
                "herald.events.published",
                "Events stored by Publish and PublishStream (duplicates within the dedup window not counted)",
            ),
            delivered: counter(
                "herald.events.delivered",
                "Deliveries handed to consumers, redeliveries included",
            ),
            acked: counter("herald.events.acked", "Deliveries acknowledged"),
            nacked: counter("herald.events.nacked", "Deliveries rejected by Nack"),
            dead_lettered: counter(
                "herald.events.dead_lettered",
                "Events moved to a group's dead-letter queue",
            ),
            from_cache: counter(
                "herald.redis.chunk_cache.deliveries",
                "First deliveries whose events this node took from its chunk cache instead of reading them from Redis (Redis backend)",
            ),
            publish_duration: seconds(
                "herald.publish.duration",
                "Time to store one Publish call or PublishStream request, until durable",
            ),
            delivery_latency: seconds(
                "herald.delivery.latency",
                "Publish time to first delivery of an event",
            ),
        }
    }

    /// A meter provider with an exporter is installed.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records one publish call: `stored` new events in `topic`, taking `took`.
    pub fn published(&self, topic: &str, stored: u64, took: Duration) {
        if !self.enabled {
            return;
        }
        let attrs = [KeyValue::new(TOPIC, topic.to_owned())];
        if stored > 0 {
            self.published.add(stored, &attrs);
        }
        self.publish_duration.record(took.as_secs_f64(), &attrs);
    }
}

/// Instruments bound to one (topic, group): the attributes are built once,
/// so recording allocates nothing. Used by the group task and by each
/// consumer stream.
#[derive(Clone)]
pub struct GroupMetrics {
    /// `None` when metrics are off.
    attrs: Option<[KeyValue; 2]>,
}

impl GroupMetrics {
    /// Instruments for `group` of `topic`.
    pub fn new(topic: &str, group: &str) -> GroupMetrics {
        GroupMetrics {
            attrs: metrics().enabled.then(|| {
                [
                    KeyValue::new(TOPIC, topic.to_owned()),
                    KeyValue::new(GROUP, group.to_owned()),
                ]
            }),
        }
    }

    /// Metrics are on.
    pub fn enabled(&self) -> bool {
        self.attrs.is_some()
    }

    /// `n` deliveries handed out.
    pub fn delivered(&self, n: usize) {
        self.add(|m| &m.delivered, n);
    }

    /// `n` deliveries acknowledged.
    pub fn acked(&self, n: usize) {
        self.add(|m| &m.acked, n);
    }

    /// `n` deliveries nacked.
    pub fn nacked(&self, n: usize) {
        self.add(|m| &m.nacked, n);
    }

    /// `n` events dead-lettered.
    pub fn dead_lettered(&self, n: usize) {
        self.add(|m| &m.dead_lettered, n);
    }

    /// `n` deliveries whose events came from the node's chunk cache.
    pub fn from_cache(&self, n: usize) {
        self.add(|m| &m.from_cache, n);
    }

    /// An event published at `publish_time_us` was first delivered at `now_us`.
    pub fn delivery_latency(&self, publish_time_us: i64, now_us: i64) {
        if let Some(attrs) = &self.attrs {
            let seconds = now_us.saturating_sub(publish_time_us).max(0) as f64 / 1e6;
            metrics().delivery_latency.record(seconds, attrs);
        }
    }

    fn add(&self, counter: impl FnOnce(&Metrics) -> &Counter<u64>, n: usize) {
        if let Some(attrs) = &self.attrs
            && n > 0
        {
            counter(metrics()).add(n as u64, attrs);
        }
    }
}
