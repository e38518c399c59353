//! Dead-letter forwarding (the cross-topic outbox of issue 9, which the
//! Pub/Sub front door's `dead_letter_policy` maps onto): a group with a
//! `dead_letter_topic` also publishes each dead letter to that topic, once,
//! with attributes saying where it came from, and keeps it in its own
//! dead-letter queue. Runs on both backends (`semantics_files.rs`).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use herald::proto;
use tonic::Code;

async fn create_forwarding(server: &TestServer, group: &str, target: &str) -> Result<(), tonic::Status> {
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "orders".into(),
                name: group.into(),
                start_position: Some(earliest()),
                max_delivery_attempts: Some(3),
                dead_letter_topic: Some(target.into()),
                ..Default::default()
            }),
        })
        .await
        .map(|_| ())
}

/// Creates a topic without a dedup window, so that an event forwarded
/// twice would be stored twice.
async fn create_topic(server: &TestServer, name: &str) {
    server
        .admin()
        .create_topic(proto::CreateTopicRequest {
            topic: Some(proto::Topic {
                name: name.into(),
                dedup_window: Some(dur(Duration::ZERO)),
                ..Default::default()
            }),
        })
        .await
        .expect("create topic");
}

/// Subscribes to `orders`/`group` and nacks `n` events as poison.
async fn poison(server: &TestServer, group: &str, n: usize) {
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "orders", group, 100).await;
    let mut done = 0;
    while done < n {
        let batch = next_batch(&mut stream, Duration::from_secs(10)).await;
        done += batch.len();
        client
            .nack(proto::NackRequest {
                ack_ids: batch.iter().map(|d| d.ack_id.clone()).collect(),
                dead_letter: true,
                reason: "cannot parse".into(),
                ..Default::default()
            })
            .await
            .expect("nack");
    }
}

/// Waits up to `within` for `topic` to hold `n` events.
async fn holds(server: &TestServer, topic: &str, n: u64, within: Duration) {
    let t0 = Instant::now();
    loop {
        let end = server.end_offset(topic).await;
        if end == n {
            return;
        }
        assert!(end < n, "{topic} holds {end} events, expected {n}");
        assert!(t0.elapsed() < within, "{topic} holds {end} of {n} events after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events of `topic` from the start.
async fn read_all(server: &TestServer, topic: &str, n: usize) -> Vec<proto::Event> {
    server.create_group(topic, "reader", Duration::from_secs(30), Duration::from_millis(100)).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, topic, "reader", 100).await;
    let mut events = Vec::new();
    while events.len() < n {
        let batch = next_batch(&mut stream, Duration::from_secs(10)).await;
        events.extend(batch.into_iter().map(|d| d.event.expect("event")));
    }
    events
}

fn attributes(e: &proto::Event) -> HashMap<String, String> {
    e.attributes.clone().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_forwarded_once_and_stay_in_the_queue() {
    let mut server = TestServer::start().await;
    create_topic(&server, "orders").await;
    create_topic(&server, "orders-dlq").await;
    create_forwarding(&server, "billing", "orders-dlq").await.expect("create");
    let offsets = server.publish_n("orders", "o", 5).await;
    poison(&server, "billing", 5).await;

    holds(&server, "orders-dlq", 5, Duration::from_secs(10)).await;
    let events = read_all(&server, "orders-dlq", 5).await;
    let mut forwarded: Vec<(String, HashMap<String, String>)> =
        events.iter().map(|e| (e.id.clone(), attributes(e))).collect();
    forwarded.sort_by_key(|(_, a)| a["herald-dead-letter-offset"].parse::<u64>().unwrap());
    for ((id, a), offset) in forwarded.iter().zip(&offsets) {
        assert!(id.starts_with("herald-dl-"), "{id}");
        assert_eq!(a["herald-dead-letter-topic"], "orders");
        assert_eq!(a["herald-dead-letter-group"], "billing");
        assert_eq!(a["herald-dead-letter-attempts"], "1");
        assert_eq!(a["herald-dead-letter-reason"], "cannot parse");
        assert_eq!(a["herald-dead-letter-offset"], offset.to_string());
        assert!(a["herald-dead-letter-publish-time"].ends_with('Z'), "{a:?}");
    }
    assert!(events.iter().all(|e| e.r#type == "T" && e.data.starts_with(b"payload")), "{events:?}");

    // Still in the group's own queue, where it can be replayed.
    let stats = server.group_stats("orders", "billing").await;
    assert_eq!(stats.dead_letter_count, 5);

    // Once: nothing more arrives, not after a restart either (the position
    // is stored).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(server.end_offset("orders-dlq").await, 5);
    server.restart().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.end_offset("orders-dlq").await, 5, "forwarded again after a restart");

    // A later dead letter is forwarded after the restart.
    server.publish_n("orders", "later", 1).await;
    poison(&server, "billing", 1).await;
    holds(&server, "orders-dlq", 6, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_waits_for_its_topic_to_exist() {
    let server = TestServer::start().await;
    create_topic(&server, "orders").await;
    create_forwarding(&server, "billing", "parked").await.expect("create");
    server.publish_n("orders", "o", 2).await;
    poison(&server, "billing", 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let missing = server
        .admin()
        .get_topic(proto::GetTopicRequest { name: "parked".into() })
        .await
        .expect_err("not created by forwarding");
    assert_eq!(missing.code(), Code::NotFound);
    create_topic(&server, "parked").await;
    holds(&server, "parked", 2, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_cannot_forward_to_its_own_topic_or_a_bad_name() {
    let server = TestServer::start().await;
    create_topic(&server, "orders").await;
    for target in ["orders", "bad name"] {
        let e = create_forwarding(&server, "g", target).await.expect_err(target);
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("group.dead_letter_topic"), "{e:?}");
    }
    // Set and cleared by UpdateGroup.
    create_forwarding(&server, "g", "elsewhere").await.expect("create");
    let cleared = server
        .admin()
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                topic: "orders".into(),
                name: "g".into(),
                dead_letter_topic: Some(String::new()),
                ..Default::default()
            }),
        })
        .await
        .expect("update")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(cleared.dead_letter_topic.as_deref(), Some(""));
}
