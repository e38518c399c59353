//! Crash safety: a `herald serve` child process under publish load is
//! killed with SIGKILL; after a restart every event whose Publish returned OK
//! is present, in order, with no duplicates in the log.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use herald::proto;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::storage::embedded::log::{LogOptions, TopicLog};
use tokio_util::task::TaskTracker;

/// Starts `herald serve` on a free port; returns the child and its address.
fn spawn_server(data_dir: &std::path::Path) -> (Child, String) {
    spawn_server_with(data_dir, &[])
}

/// [`spawn_server`] with extra `HERALD_*` settings in the environment.
fn spawn_server_with(data_dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .env("HERALD_HTTP__ENABLED", "false")
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--fsync",
            "always",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let stderr = child.stderr.take().unwrap();
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
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_server(dir.path());
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Four publishers, each with its own id sequence; remember what was acknowledged.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for p in 0..4 {
        let mut client = PublisherServiceClient::new(channel.clone());
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0u64.. {
                let events: Vec<proto::Event> = (0..20)
                    .map(|i| proto::Event {
                        id: format!("p{p}-{:08}", batch * 20 + i),
                        r#type: "Crash".into(),
                        data: Bytes::from(vec![p as u8; 200]),
                        ..Default::default()
                    })
                    .collect();
                match client
                    .publish(proto::PublishRequest {
                        topic: "crash".into(),
                        events,
                    })
                    .await
                {
                    Ok(resp) => {
                        let mut a = acked.lock().unwrap();
                        for r in resp.into_inner().results {
                            a.insert(r.id, r.offset);
                        }
                    }
                    Err(_) => return batch,
                }
            }
            unreachable!()
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("publishers notice")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 1000, "load was real: {} acked", acked.len());

    // Read the log back directly (this also runs torn-tail recovery).
    let tracker = TaskTracker::new();
    let log = TopicLog::open(
        dir.path().join("topics").join("crash"),
        LogOptions::default(),
        &tracker,
    )
    .await
    .expect("log reopens after kill -9");
    let end = log.end_offset();
    let mut seen: HashSet<String> = HashSet::new();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut offset = 0;
    while offset < end {
        let events = log.read(offset, 10_000, 8 << 20).unwrap();
        assert!(!events.is_empty());
        for e in events {
            assert_eq!(e.offset, offset, "dense offsets");
            offset += 1;
            let id = e.event.id.clone();
            assert!(seen.insert(id.clone()), "{id} stored twice");
            let (publisher, seq) = id.split_once('-').unwrap();
            let seq: u64 = seq.parse().unwrap();
            if let Some(prev) = last_seq.insert(publisher.to_string(), seq) {
                assert!(
                    seq > prev,
                    "{publisher}'s events out of order: {prev} then {seq}"
                );
            }
            if let Some(&acked_offset) = acked.get(&id) {
                assert_eq!(acked_offset, e.offset, "{id} kept its acknowledged offset");
            }
        }
    }
    let missing: Vec<&String> = acked.keys().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    log.close().await.unwrap();

    // And the server itself comes back with the same log.
    let (mut child, addr) = spawn_server(dir.path());
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let topic = herald::proto::admin_service_client::AdminServiceClient::new(channel)
        .get_topic(proto::GetTopicRequest {
            name: "crash".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    assert_eq!(topic.stats.unwrap().end_offset, end);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Regression (issue 8, finding 10): a `kill -9` inside the flush interval
/// handed an event out again as attempt 1 although it had been delivered
/// three times. `delivery_attempt` must never go backwards across a crash
/// (one more than before is allowed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_never_repeats_a_delivery_attempt() {
    use herald::proto::admin_service_client::AdminServiceClient;
    use herald::proto::subscriber_service_client::SubscriberServiceClient;
    let dir = tempfile::tempdir().unwrap();
    // A long flush interval: nothing is written on the timer during the test.
    let env = [("HERALD_GROUPS__STATE_FLUSH_INTERVAL", "30s")];
    let (mut child, addr) = spawn_server_with(dir.path(), &env);
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AdminServiceClient::new(channel.clone())
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "t".into(),
                name: "g".into(),
                start_position: Some(proto::Position {
                    kind: Some(proto::position::Kind::Edge(proto::Edge::Earliest as i32)),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    PublisherServiceClient::new(channel.clone())
        .publish(proto::PublishRequest {
            topic: "t".into(),
            events: vec![proto::Event {
                id: "e".into(),
                r#type: "T".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    let mut sub = SubscriberServiceClient::new(channel.clone());
    let mut stream = sub
        .subscribe(proto::SubscribeRequest {
            topic: "t".into(),
            group: "g".into(),
            consumer: "c".into(),
            max_in_flight: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = 0;
    for expected in 1..=3 {
        let d = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .deliveries
            .remove(0);
        assert_eq!(d.delivery_attempt, expected);
        last = d.delivery_attempt;
        if expected < 3 {
            sub.nack(proto::NackRequest {
                ack_ids: vec![d.ack_id],
                delay: Some(prost_types::Duration::default()),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stream);

    let (mut child, addr) = spawn_server_with(dir.path(), &env);
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sub = SubscriberServiceClient::new(channel);
    let mut stream = sub
        .subscribe(proto::SubscribeRequest {
            topic: "t".into(),
            group: "g".into(),
            consumer: "c".into(),
            max_in_flight: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    let d = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the unacked event comes back")
        .unwrap()
        .unwrap()
        .deliveries
        .remove(0);
    assert!(
        d.delivery_attempt > last,
        "attempt {} after a crash that followed attempt {last}",
        d.delivery_attempt
    );
    assert!(d.delivery_attempt <= last + 2, "{}", d.delivery_attempt);
    child.kill().unwrap();
    child.wait().unwrap();
}
