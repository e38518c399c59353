//! Idle topics and groups cost next to nothing (issue 8, finding 9): with
//! 10,000 topics and 10,000 idle groups a `herald serve` process starts in
//! under 10 s, then uses under 5% of a core and under 1 GiB of memory.
//!
//! The metadata is written in one transaction, then served by a child
//! process whose CPU time, memory and threads are read from `/proc`.

mod common;

use std::time::{Duration, Instant};

use common::child::ChildServer;
use herald::broker::{GroupRecord, Position, TopicRecord};
use herald::config::Config;
use herald::proto;
use herald::storage::embedded::meta::{MetaStore, StateHeader};

const TOPICS: usize = 10_000;

/// A directory on a RAM file system when there is one (its fsyncs cost
/// nothing, which keeps the set-up short), else a normal temp dir.
fn fast_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("temp dir")
}

/// Writes the records of `TOPICS` topics with one group each in one
/// metadata transaction (their log directories are created when the server
/// opens them).
fn populate(dir: &std::path::Path) {
    let started = Instant::now();
    let store = MetaStore::open(&dir.join("meta.redb")).expect("open meta");
    let defaults = Config::default().broker();
    let mut topics = Vec::with_capacity(TOPICS);
    let mut groups = Vec::with_capacity(TOPICS);
    for i in 0..TOPICS {
        let name = format!("topic-{i:05}");
        let topic = TopicRecord {
            name: name.clone(),
            created_us: 1,
            settings: defaults.topic_defaults.clone(),
        };
        let group = GroupRecord {
            topic: name.clone(),
            name: "workers".into(),
            created_us: 1,
            start: Position::Earliest,
            settings: defaults.group_defaults.clone(),
        };
        let header = StateHeader {
            generation: i as u64 + 1,
            ..StateHeader::default()
        };
        topics.push((name.clone(), serde_json::to_vec(&topic).unwrap()));
        groups.push((
            name,
            "workers".to_string(),
            serde_json::to_vec(&group).unwrap(),
            header,
        ));
    }
    store.create_many(&topics, &groups).expect("bulk create");
    eprintln!(
        "wrote {TOPICS} topics and groups in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_topics_and_groups_cost_next_to_nothing() {
    let dir = fast_dir();
    populate(dir.path());
    // The first start makes every topic's directory (as CreateTopic would
    // have); what is measured is a restart.
    let mut first = ChildServer::start(dir.path(), &[], &[]);
    first.terminate();

    let started = Instant::now();
    let server = ChildServer::start(dir.path(), &[], &[]);
    let startup = started.elapsed();
    eprintln!("started in {startup:?}");
    assert!(
        startup < Duration::from_secs(10),
        "start-up took {startup:?}"
    );

    // Let start-up work settle, then measure an idle stretch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_before = server.cpu_time();
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let cpu = server.cpu_time() - cpu_before;
    let rss_mib = server.status_kib("VmRSS") / 1024;
    let threads = server.status_kib("Threads");
    eprintln!("idle: cpu {cpu:?} over {window:?}, rss {rss_mib} MiB, {threads} threads");
    assert!(
        cpu < window / 20,
        "idle server used {cpu:?} of CPU in {window:?} (5% is {:?})",
        window / 20
    );
    assert!(rss_mib < 1024, "idle server holds {rss_mib} MiB");
    assert!(threads < 200, "{threads} threads for idle topics");

    // And it serves: one of them takes an event and delivers it.
    let channel = server.channel().await;
    proto::publisher_service_client::PublisherServiceClient::new(channel.clone())
        .publish(proto::PublishRequest {
            topic: "topic-04242".into(),
            events: vec![proto::Event {
                r#type: "T".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    let mut stream = proto::subscriber_service_client::SubscriberServiceClient::new(channel)
        .subscribe(proto::SubscribeRequest {
            topic: "topic-04242".into(),
            group: "workers".into(),
            consumer: "c".into(),
            max_in_flight: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.deliveries.len(), 1);
}
