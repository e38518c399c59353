//! The official Google Cloud Pub/Sub clients run unchanged against Herald
//! with `PUBSUB_EMULATOR_HOST` (issue 12): Python (pinned in
//! `tests/pubsub/requirements.txt`, installed into `target/pubsub-venv`)
//! and Node (`tests/pubsub/node`, pinned by its lockfile):
//! the Publisher API's answers, name rules and errors, and the published
//! messages read back through `herald.v1`; the Node scenario and the whole
//! Python scenario run against the `herald` binary. Runs on both backends
//! (`semantics_files.rs`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::clients::{node_env, python_env, run};
use common::*;
use herald::proto;
use tokio_stream::StreamExt;

fn pubsub_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pubsub")
}

/// Runs `tests/pubsub/{script}` (Python, or Node for `.js`) with `args`
/// against `server` and returns the JSON of the last line it printed.
fn run_script(server: &TestServer, script: &str, args: &[&str]) -> serde_json::Value {
    run_script_at(&server.addr().to_string(), script, args)
}

/// [`run_script`] against the server at `addr`.
fn run_script_at(addr: &str, script: &str, args: &[&str]) -> serde_json::Value {
    let dir = pubsub_dir();
    let program = if script.ends_with(".js") {
        node_env(&dir.join("node"));
        "node".into()
    } else {
        python_env("pubsub-venv", &dir.join("requirements.txt"))
    };
    let out = run(
        Command::new(program)
            .arg(dir.join(script))
            .args(args)
            .env("PUBSUB_EMULATOR_HOST", addr)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(300),
    );
    assert!(
        out.success(),
        "{script} failed ({}):\n{}\n{}",
        out.describe_exit(),
        out.stdout,
        out.stderr
    );
    let line = out.stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).expect("JSON")
}

/// Runs `publisher.py` for `project`/`topic` and returns the message ids
/// it printed.
fn run_publisher(server: &TestServer, project: &str, topic: &str) -> Vec<String> {
    run_script(server, "publisher.py", &[project, topic])["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect()
}

/// Every event of Herald topic `topic`, through `herald.v1` Read.
async fn read_all(server: &TestServer, topic: &str) -> Vec<proto::Event> {
    let mut stream = server
        .subscriber()
        .read(proto::ReadRequest {
            topic: topic.into(),
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    let mut all = Vec::new();
    while let Some(batch) = stream.next().await {
        all.extend(batch.expect("batch").events);
    }
    all
}

async fn check_published(server: &TestServer, project: &str, herald_topic: &str) {
    let ids = run_publisher(server, project, "orders");
    let events = read_all(server, herald_topic).await;
    let got: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, ids, "message ids are the events' ids, in order");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.r#type, "google.pubsub.v1.PubsubMessage");
        assert_eq!(e.key, "user-1", "ordering_key is the key");
        assert_eq!(&e.data[..], format!("order-{i}").as_bytes());
        let n = i.to_string();
        assert_eq!(
            e.attributes.get("n").map(String::as_str),
            Some(n.as_str()),
            "attributes: {:?}",
            e.attributes
        );
        assert_eq!(e.attributes.get("kind").map(String::as_str), Some("OrderPlaced"));
    }
    // The update through Pub/Sub is Herald's retention.
    let topic = server
        .admin()
        .get_topic(proto::GetTopicRequest {
            name: herald_topic.into(),
        })
        .await
        .expect("get topic")
        .into_inner()
        .topic
        .expect("topic");
    assert_eq!(topic.retention_max_age, Some(dur(Duration::from_secs(3600))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_publishes_to_the_default_project() {
    let server = TestServer::start().await;
    check_published(&server, "herald", "orders").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_project_maps_to_prefixed_herald_names() {
    let server = TestServer::start().await;
    // A herald.v1 topic of the default project is not another project's.
    server.publish_n("orders", "h", 1).await;
    check_published(&server, "other-proj", "1other-proj.orders").await;
    assert_eq!(read_all(&server, "orders").await.len(), 1, "projects are isolated");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_subscriber_receives_over_streaming_pull() {
    let server = TestServer::start().await;
    let printed = run_script(&server, "subscriber.py", &["herald", "payments", "billing"]);
    assert_eq!(printed["attempts"]["3"], 2, "{printed}");
    // The subscription was the group `billing` of topic `payments`, and
    // its deletion through Pub/Sub deleted the group.
    let err = server
        .admin()
        .get_group(proto::GetGroupRequest {
            topic: "payments".into(),
            group: "billing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    server.stop().await;
}

/// Starts the `herald` binary on this suite's backend (a fresh
/// `redis-server` in the Redis suite) over `dir`.
fn start_binary(dir: &std::path::Path) -> (common::child::ChildServer, Option<common::redis::RedisServer>) {
    let redis = common::redis::redis_suite().then(|| common::redis::RedisServer::start(&[]));
    let url = redis.as_ref().map(common::redis::RedisServer::url);
    let mut env = vec![("HERALD_GROUPS__STATE_FLUSH_INTERVAL", "20ms")];
    if let Some(url) = &url {
        env.extend([("HERALD_STORAGE__BACKEND", "redis"), ("HERALD_REDIS__URL", url.as_str())]);
    }
    (common::child::ChildServer::start(dir, &env, &[]), redis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_node_client_publishes_and_receives() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, _redis) = start_binary(dir.path());
    let printed = run_script_at(&child.addr, "node/scenario.js", &["herald", "node-orders", "node-sub"]);
    assert_eq!(printed["attempts"]["2"], 2, "{printed}");
    assert_eq!(printed["ids"].as_array().map(Vec::len), Some(5), "{printed}");
    // Deleted through Pub/Sub: gone for herald.v1 too.
    let err = proto::admin_service_client::AdminServiceClient::new(child.channel().await)
        .get_topic(proto::GetTopicRequest {
            name: "node-orders".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    child.terminate();
}

/// The whole scenario through the official Python client against
/// the `herald` binary (not the in-process server): 1,000 ordered messages
/// through the batching publisher, per-key order with nacks redelivered at
/// attempt 2, a filter, Seek to a time, and a dead-letter policy moving a
/// message to its topic with Pub/Sub's source attributes, which is also in
/// the subscription's own dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_runs_the_whole_scenario_against_the_binary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, _redis) = start_binary(dir.path());
    let printed = run_script_at(&child.addr, "scenario.py", &["herald"]);
    eprintln!("scenario: {printed}");
    assert_eq!(printed["published"], 1000, "{printed}");
    assert_eq!(printed["redelivered"], 100, "{printed}");
    assert_eq!(printed["filtered"], 20, "{printed}");
    assert_eq!(printed["after_seek"], 1000, "{printed}");
    let mut dead_letters =
        proto::dead_letter_service_client::DeadLetterServiceClient::new(child.channel().await);
    let listed = dead_letters
        .list_dead_letters(proto::ListDeadLettersRequest {
            topic: "fragile".into(),
            group: "fragile-sub".into(),
            ..Default::default()
        })
        .await
        .expect("list dead letters")
        .into_inner();
    assert_eq!(listed.dead_letters.len(), 1, "{listed:?}");
    let d = &listed.dead_letters[0];
    assert_eq!(d.attempts, 5);
    assert_eq!(&d.event.as_ref().expect("event").data[..], b"poison");
    child.terminate();
}
