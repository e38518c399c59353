//! Idempotent publish (dedup window) and retention, end to end.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use herald::proto;

async fn create_topic(server: &TestServer, name: &str, dedup: Duration, max_bytes: Option<u64>) {
    server
        .admin()
        .create_topic(proto::CreateTopicRequest {
            topic: Some(proto::Topic {
                name: name.into(),
                dedup_window: Some(dur(dedup)),
                retention_max_bytes: max_bytes,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

async fn publish(server: &TestServer, topic: &str, ids: &[&str]) -> Vec<(u64, bool)> {
    server
        .publisher()
        .publish(proto::PublishRequest {
            topic: topic.into(),
            events: ids.iter().map(|id| event(id)).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .into_iter()
        .map(|r| (r.offset, r.duplicate))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_within_the_window_are_not_stored_twice_even_across_restart() {
    let mut server = TestServer::start().await;
    create_topic(&server, "pay", Duration::from_secs(120), None).await;
    assert_eq!(
        publish(&server, "pay", &["a", "b"]).await,
        vec![(0, false), (1, false)]
    );
    assert_eq!(
        publish(&server, "pay", &["b", "c", "c"]).await,
        vec![(1, true), (2, false), (2, true)]
    );
    assert_eq!(server.end_offset("pay").await, 3);
    server.restart().await;
    assert_eq!(
        publish(&server, "pay", &["a", "d"]).await,
        vec![(0, true), (3, false)],
        "the window survives a restart"
    );
    assert_eq!(server.end_offset("pay").await, 4);
    // What is stored is each first arrival, in order.
    let want: Vec<(u64, String)> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(o, id)| (o as u64, id.to_string()))
        .collect();
    assert_eq!(stored(&server, "pay").await, want);

    // Dedup off (window 0) stores duplicates.
    create_topic(&server, "raw", Duration::ZERO, None).await;
    assert_eq!(
        publish(&server, "raw", &["a", "a"]).await,
        vec![(0, false), (1, false)]
    );
    server.stop().await;
}

/// Every event of `topic` from offset 0: (offset, id).
async fn stored(server: &TestServer, topic: &str) -> Vec<(u64, String)> {
    read_events(server.channel.clone(), topic, 0, 0)
        .await
        .into_iter()
        .map(|e| (e.offset, e.id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_spread_over_a_large_call_keep_the_others_in_order() {
    // 300 events in one call (stored in several pieces by the Redis
    // backend), every tenth a repeat of an earlier call's id.
    let server = TestServer::start().await;
    create_topic(&server, "big", Duration::from_secs(120), None).await;
    let first: Vec<String> = (0..200).map(|i| format!("a-{i}")).collect();
    let refs: Vec<&str> = first.iter().map(String::as_str).collect();
    publish(&server, "big", &refs).await;
    let second: Vec<String> = (0..300)
        .map(|i| if i % 10 == 0 { format!("a-{}", i / 2) } else { format!("b-{i}") })
        .collect();
    let refs: Vec<&str> = second.iter().map(String::as_str).collect();
    let results = publish(&server, "big", &refs).await;
    let mut next = 200;
    for (i, (offset, duplicate)) in results.iter().enumerate() {
        if i % 10 == 0 {
            assert_eq!((*offset, *duplicate), ((i / 2) as u64, true), "event {i}");
        } else {
            assert_eq!((*offset, *duplicate), (next, false), "event {i}");
            next += 1;
        }
    }
    let want: Vec<(u64, String)> = first
        .iter()
        .chain(second.iter().filter(|id| id.starts_with('b')))
        .enumerate()
        .map(|(o, id)| (o as u64, id.clone()))
        .collect();
    assert_eq!(stored(&server, "big").await, want);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_is_accepted_again_after_the_window() {
    let server = TestServer::start().await;
    create_topic(&server, "pay", Duration::from_millis(300), None).await;
    assert_eq!(publish(&server, "pay", &["a"]).await, vec![(0, false)]);
    assert_eq!(publish(&server, "pay", &["a"]).await, vec![(0, true)]);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(publish(&server, "pay", &["a"]).await, vec![(1, false)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments_and_groups_skip_forward() {
    let server = TestServer::start_with(|c| {
        c.storage.segment_bytes = 4096;
        c.storage.retention_interval = Duration::from_millis(100);
    })
    .await;
    create_topic(&server, "logs", Duration::ZERO, Some(16 * 1024)).await;
    server
        .create_group("logs", "slow", Duration::from_secs(30), Duration::ZERO)
        .await;
    let mut publisher = server.publisher();
    for batch in 0..20 {
        let events = (0..10)
            .map(|i| proto::Event {
                data: Bytes::from(vec![7u8; 300]),
                ..event(&format!("l{}", batch * 10 + i))
            })
            .collect();
        publisher
            .publish(proto::PublishRequest {
                topic: "logs".into(),
                events,
            })
            .await
            .unwrap();
    }
    let dir = server.data_dir().join("topics").join("logs");
    let segments = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count()
    };
    // Wait for the retention task.
    let mut start = 0;
    for _ in 0..50 {
        let t = server
            .admin()
            .get_topic(proto::GetTopicRequest {
                name: "logs".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .topic
            .unwrap();
        let stats = t.stats.unwrap();
        start = stats.start_offset;
        if start > 0 && stats.bytes <= 16 * 1024 + 4096 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(start > 0, "old segments were deleted");
    if server.redis.is_none() {
        assert!(
            segments(&dir) <= 6,
            "files are gone from disk: {}",
            segments(&dir)
        );
    }

    // Reads before the retained start: OUT_OF_RANGE naming the first offset.
    let err = server
        .subscriber()
        .read(proto::ReadRequest {
            topic: "logs".into(),
            start: Some(proto::read_request::Start::Offset(0)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    assert!(
        err.message()
            .contains(&format!("first available offset {start}")),
        "{}",
        err.message()
    );

    // The group, still at 0, skips forward and counts what it lost.
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "logs", "slow", 1000).await;
    let first = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert!(first[0].event.as_ref().unwrap().offset >= start);
    let stats = server.group_stats("logs", "slow").await;
    assert!(
        stats.expired >= start,
        "skipped events are counted: {} < {start}",
        stats.expired
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_drops_unacknowledged_events_past_its_max_message_age() {
    let server = TestServer::start().await;
    let age = Duration::from_millis(1500);
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "aged".into(),
                name: "g".into(),
                start_position: Some(earliest()),
                max_message_age: Some(dur(age)),
                ..Default::default()
            }),
        })
        .await
        .expect("create group");
    let got = server
        .admin()
        .get_group(proto::GetGroupRequest {
            topic: "aged".into(),
            group: "g".into(),
        })
        .await
        .expect("get group")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(got.max_message_age, Some(dur(age)));
    server.publish_n("aged", "old", 2).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "aged", "g", 10).await;
    let first = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 2, "fresh events are delivered");
    // One is nacked with a delay that outlives its age, the other released
    // when the stream ends: both are dropped, not redelivered.
    let resp = client
        .nack(proto::NackRequest {
            ack_ids: vec![first[0].ack_id.clone()],
            delay: Some(dur(Duration::from_secs(2))),
            ..Default::default()
        })
        .await
        .expect("nack")
        .into_inner();
    assert_eq!(resp.results[0].outcome, proto::LeaseOutcome::Ok as i32);
    drop(stream);
    // Published while no consumer is there, then left to age.
    server.publish_n("aged", "stale", 300).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.publish_n("aged", "fresh", 1).await;
    // One slot: the stale backlog must not take a slot (or a wake-up) each.
    let mut stream = subscribe(&mut client, "aged", "g", 1).await;
    let batch = next_batch(&mut stream, Duration::from_secs(2)).await;
    let got: Vec<&str> = batch
        .iter()
        .map(|d| d.event.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(got, ["fresh-0"], "only the event within the age is delivered");
    // Its slot back, the group passes over what is left of the old ones.
    ack(&mut client, batch.iter().map(|d| d.ack_id.clone()).collect()).await;
    assert!(maybe_batch(&mut stream, Duration::from_millis(500)).await.is_none());
    let stats = server.group_stats("aged", "g").await;
    // The nacked one, the released one and the stale ones.
    assert_eq!(stats.expired, 302, "{stats:?}");
    server.stop().await;
}
