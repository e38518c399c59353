//! `/metrics`: the Prometheus text exposition of the same OpenTelemetry
//! instruments OTLP exports, parsed with a Prometheus text parser and
//! checked against the broker's own stats.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use common::web::Web;
use common::{TestServer, next_batch, subscribe};
use herald::http::Console;
use herald::proto;
use prometheus_parse::{Scrape, Value};

/// The value of `metric` with exactly these labels (besides the scope).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Value {
    let want: HashMap<&str, &str> = labels.iter().copied().collect();
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == metric
                && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                && s.labels
                    .iter()
                    .filter(|(k, _)| !k.starts_with("otel_"))
                    .count()
                    == want.len()
        })
        .unwrap_or_else(|| panic!("{metric} {labels:?} in the scrape"))
        .value
        .clone()
}

fn number(v: Value) -> f64 {
    match v {
        Value::Counter(n) | Value::Gauge(n) | Value::Untyped(n) => n,
        other => panic!("not a number: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_broker_stats() {
    // What `herald serve` does when the HTTP listener is on, before any
    // instrument is used.
    let provider = herald::cli::telemetry::install_metrics(false, true)
        .expect("meter provider")
        .expect("installed");
    let server = TestServer::start().await;
    herald::cli::telemetry::observe_groups(server.broker());
    let mut web = Web::new(
        Console::new(server.broker().clone(), None)
            .unwrap()
            .router(),
    );

    server
        .create_group(
            "m-orders",
            "billing",
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await;
    for _ in 0..3 {
        server
            .publish_n("m-orders", &format!("b{}", rand_suffix()), 4)
            .await;
    }
    // A test event from the console counts like any other publish.
    let r = web
        .post("/topics/m-orders/publish", &[("type", "T"), ("data", "{}")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "m-orders", "billing", 100).await;
    let mut got = Vec::new();
    while got.len() < 13 {
        got.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    let (acked, nacked) = got.split_at(10);
    sub.ack(proto::AckRequest {
        ack_ids: acked.iter().map(|d| d.ack_id.clone()).collect(),
    })
    .await
    .unwrap();
    sub.nack(proto::NackRequest {
        ack_ids: nacked.iter().map(|d| d.ack_id.clone()).collect(),
        dead_letter: true,
        reason: "poison".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    if server.redis.is_some() {
        // Events this node publishes after the first claim come from its
        // chunk cache (the first claim read them: it had no hint).
        server.publish_n("m-orders", "c", 5).await;
        let cached = next_batch(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(cached.len(), 5);
        sub.ack(proto::AckRequest {
            ack_ids: cached.iter().map(|d| d.ack_id.clone()).collect(),
        })
        .await
        .unwrap();
    }
    // Gauges of the Redis backend follow within 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let resp = web.get("/metrics").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(
        resp.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let scrape = Scrape::parse(resp.body.lines().map(|l| Ok(l.to_string()))).expect("parses");

    let topic = server.broker().get_topic("m-orders").await.unwrap();
    let group = server
        .broker()
        .get_group("m-orders", "billing")
        .await
        .unwrap()
        .stats;
    let t = [("topic", "m-orders")];
    let tg = [("topic", "m-orders"), ("group", "billing")];
    let extra: u32 = if server.redis.is_some() { 5 } else { 0 };
    assert_eq!(topic.stats.published, 13 + u64::from(extra));
    if server.redis.is_some() {
        assert_eq!(
            number(value(
                &scrape,
                "herald_redis_chunk_cache_deliveries_total",
                &tg
            )),
            5.0
        );
    }
    assert_eq!(
        number(value(&scrape, "herald_events_published_total", &t)),
        topic.stats.published as f64
    );
    assert_eq!(
        number(value(&scrape, "herald_events_delivered_total", &tg)),
        group.delivered as f64
    );
    assert_eq!(
        number(value(&scrape, "herald_events_acked_total", &tg)),
        group.acked as f64
    );
    assert_eq!(
        number(value(&scrape, "herald_events_nacked_total", &tg)),
        group.nacked as f64
    );
    assert_eq!(
        number(value(&scrape, "herald_events_dead_lettered_total", &tg)),
        group.dead_lettered as f64
    );
    assert_eq!(group.dead_lettered, 3);
    assert_eq!(
        number(value(&scrape, "herald_group_dead_letters", &tg)),
        group.dead_letter_count as f64
    );
    assert_eq!(
        number(value(&scrape, "herald_group_backlog", &tg)),
        group.backlog as f64
    );
    assert_eq!(
        number(value(&scrape, "herald_group_in_flight", &tg)),
        group.in_flight as f64
    );

    // Histograms with the instruments' buckets: four publish calls, and
    // thirteen first deliveries (and over Redis one call and five more).
    let Value::Histogram(buckets) = value(&scrape, "herald_publish_duration_seconds", &t) else {
        panic!("a histogram")
    };
    let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
    assert_eq!(bounds.first(), Some(&0.00005), "{bounds:?}");
    assert!(
        bounds.contains(&10.0) && bounds.last() == Some(&f64::INFINITY),
        "{bounds:?}"
    );
    assert_eq!(
        buckets.last().unwrap().count,
        if extra > 0 { 5.0 } else { 4.0 },
        "one observation per publish call"
    );
    let Value::Histogram(latency) = value(&scrape, "herald_delivery_latency_seconds", &tg) else {
        panic!("a histogram")
    };
    assert_eq!(latency.last().unwrap().count, 13.0 + f64::from(extra));
    assert!(
        scrape.docs.contains_key("herald_events_published_total")
            || scrape.docs.contains_key("herald_events_published"),
        "HELP text: {:?}",
        scrape.docs.keys()
    );
    server.stop().await;
    let _ = provider.shutdown();
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
