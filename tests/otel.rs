//! OpenTelemetry: a `herald serve` child process exports over OTLP/gRPC to an
//! in-process collector. One event published under a known trace context is
//! consumed and acked; the collector must receive the `publish`, `deliver`
//! and `ack` spans with their attributes, the deliver span in the
//! publisher's trace, and the `herald.events.*` counters; the consumer must
//! see the publisher's `traceparent` in the event's attributes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::proto;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// What the collector received.
#[derive(Default, Clone)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    metrics: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut names = self.metrics.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                names.extend(sm.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Starts the collector on a free port; returns its endpoint and inbox.
async fn start_collector() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(received.clone()))
        .add_service(MetricsServiceServer::new(received.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    (format!("http://{addr}"), received)
}

/// The server child; killed when dropped, so a failing test leaves none behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `herald serve` exporting to `endpoint`; returns it and its address.
fn spawn_server(data_dir: &std::path::Path, endpoint: &str) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .env("HERALD_HTTP__ENABLED", "false")
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_METRICS_EXPORTER")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if line.contains("herald is serving") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["addr"].as_str().unwrap().to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (server, addr)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attributes as text (strings as they are, numbers in decimal).
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(i) => i.to_string(),
                Value::BoolValue(b) => b.to_string(),
                Value::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_the_collector_in_the_publishers_trace() {
    let (endpoint, received) = start_collector().await;
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = spawn_server(dir.path(), &endpoint);
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut publisher = PublisherServiceClient::new(channel.clone());
    let mut subscriber = SubscriberServiceClient::new(channel);

    // Subscribe first: a new group starts at the end of the topic.
    let mut deliveries = subscriber
        .subscribe(proto::SubscribeRequest {
            topic: "orders".into(),
            group: "billing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let mut publish = Request::new(proto::PublishRequest {
        topic: "orders".into(),
        events: vec![proto::Event {
            id: "order-42".into(),
            r#type: "OrderPlaced".into(),
            data: bytes::Bytes::from_static(b"{}"),
            ..Default::default()
        }],
    });
    publish
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    publish
        .metadata_mut()
        .insert("tracestate", "vendor=abc".parse().unwrap());
    publisher.publish(publish).await.unwrap();

    let batch = tokio::time::timeout(Duration::from_secs(5), deliveries.next())
        .await
        .expect("a delivery in time")
        .expect("stream open")
        .unwrap();
    let delivery = &batch.deliveries[0];
    let event = delivery.event.as_ref().unwrap();
    assert_eq!(event.id, "order-42");
    assert_eq!(
        event.attributes.get("traceparent"),
        Some(&traceparent),
        "the publisher's trace context travels with the event: {:?}",
        event.attributes
    );
    assert_eq!(
        event.attributes.get("tracestate").map(String::as_str),
        Some("vendor=abc")
    );
    let acked = subscriber
        .ack(proto::AckRequest {
            ack_ids: vec![delivery.ack_id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.acked_count, 1);

    // Wait for the exports (200 ms schedule in the child).
    let wanted_metrics = [
        "herald.events.published",
        "herald.events.delivered",
        "herald.events.acked",
        "herald.publish.duration",
        "herald.group.backlog",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let (spans, metrics) = loop {
        let spans = received.spans.lock().unwrap().clone();
        let metrics = received.metrics.lock().unwrap().clone();
        let has_span = |name: &str| spans.iter().any(|s| s.name == name);
        let complete = ["publish", "deliver", "ack"].iter().all(|n| has_span(n))
            && wanted_metrics
                .iter()
                .all(|m| metrics.iter().any(|n| n == m));
        if complete || Instant::now() > deadline {
            break (spans, metrics);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
                panic!("no {name} span among {names:?}")
            })
            .clone()
    };

    let publish = find("publish");
    let attrs = attributes(&publish);
    assert_eq!(
        hex(&publish.trace_id),
        TRACE_ID,
        "publish continues the client's trace"
    );
    assert_eq!(hex(&publish.parent_span_id), CLIENT_SPAN);
    assert_eq!(attrs["messaging.system"], "herald");
    assert_eq!(attrs["messaging.destination.name"], "orders");
    assert_eq!(attrs["topic"], "orders");
    assert_eq!(attrs["event.type"], "OrderPlaced");
    assert_eq!(attrs["event.id"], "order-42");
    assert_eq!(attrs["messaging.message.id"], "order-42");
    assert_eq!(attrs["messaging.batch.message_count"], "1");

    let deliver = find("deliver");
    let attrs = attributes(&deliver);
    let in_trace = hex(&deliver.trace_id) == TRACE_ID
        || deliver.links.iter().any(|l| hex(&l.trace_id) == TRACE_ID);
    assert!(
        in_trace,
        "deliver span is in the publisher's trace: {deliver:?}"
    );
    assert_eq!(attrs["topic"], "orders");
    assert_eq!(attrs["messaging.destination.name"], "orders");
    assert_eq!(attrs["group"], "billing");
    assert_eq!(attrs["messaging.consumer.group.name"], "billing");
    assert_eq!(attrs["event.type"], "OrderPlaced");
    assert_eq!(attrs["event.id"], "order-42");
    assert_eq!(attrs["offset"], event.offset.to_string());
    assert_eq!(attrs["delivery_attempt"], "1");

    let ack = find("ack");
    let attrs = attributes(&ack);
    assert_eq!(attrs["topic"], "orders");
    assert_eq!(attrs["group"], "billing");
    assert_eq!(attrs["messaging.consumer.group.name"], "billing");
    assert_eq!(attrs["acked"], "1");

    for name in wanted_metrics {
        assert!(
            metrics.iter().any(|m| m == name),
            "metric {name} exported; got {metrics:?}"
        );
    }
}
