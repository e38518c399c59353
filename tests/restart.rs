//! A restart keeps topics, events and group progress: only unacked events
//! come back.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use herald::proto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_topics_events_and_group_progress() {
    let mut server = TestServer::start().await;
    server
        .create_group("orders", "billing", Duration::from_secs(60), Duration::ZERO)
        .await;
    server.publish_n("orders", "o", 60).await;

    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "orders", "billing", 60).await;
    let mut delivered = Vec::new();
    while delivered.len() < 60 {
        delivered.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    // Ack 50 of the 60, out of order (every offset except 10 of them).
    let (to_ack, unacked): (Vec<_>, Vec<_>) = delivered
        .iter()
        .partition(|d| d.event.as_ref().unwrap().offset % 6 != 5);
    assert_eq!(to_ack.len(), 50);
    let resp = ack(
        &mut client,
        to_ack.iter().map(|d| d.ack_id.clone()).collect(),
    )
    .await;
    assert_eq!(resp.acked_count, 50);
    drop(stream);
    // 40 more that no consumer has seen yet.
    let mut publisher = server.publisher();
    publisher
        .publish(proto::PublishRequest {
            topic: "orders".into(),
            events: (60..100).map(|i| event(&format!("o-{i}"))).collect(),
        })
        .await
        .unwrap();

    server.restart().await;

    let topic = server
        .admin()
        .get_topic(proto::GetTopicRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    assert_eq!(topic.stats.unwrap().end_offset, 100, "events survive");
    let group = server
        .admin()
        .get_group(proto::GetGroupRequest {
            topic: "orders".into(),
            group: "billing".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(group.ack_deadline.unwrap().seconds, 60, "settings survive");
    assert_eq!(group.stats.unwrap().backlog, 50);

    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "orders", "billing", 1000).await;
    let mut again = Vec::new();
    while again.len() < 50 {
        again.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing more"
    );
    let got: BTreeSet<u64> = again
        .iter()
        .map(|d| d.event.as_ref().unwrap().offset)
        .collect();
    let want: BTreeSet<u64> = unacked
        .iter()
        .map(|d| d.event.as_ref().unwrap().offset)
        .chain(60..100)
        .collect();
    assert_eq!(got, want, "exactly the unacked events come back");
    for d in &again {
        let offset = d.event.as_ref().unwrap().offset;
        let expected_attempt = if offset < 60 { 2 } else { 1 };
        assert_eq!(d.delivery_attempt, expected_attempt, "offset {offset}");
    }
    server.stop().await;
}

/// Regression (issue 8, finding 11): a `kill -9` during create or delete can
/// leave a topic directory without a metadata record; the next start removes
/// it, so a later topic of that name starts empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_directories_without_a_record_are_removed_at_start() {
    let mut server = TestServer::start().await;
    if server.redis.is_some() {
        return; // the data directory's layout: embedded backend only
    }
    server.publish_n("kept", "k", 3).await;
    let orphan = server.data_dir().join("topics").join("ghost");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("00000000000000000000.log"), b"old events").unwrap();
    server.restart().await;
    assert!(!orphan.exists(), "the orphan directory is still there");
    assert!(server.data_dir().join("topics").join("kept").exists());
    assert_eq!(server.end_offset("kept").await, 3);
}
