//! StreamingPull, Acknowledge and ModifyAckDeadline through generated
//! Pub/Sub stubs (issue 12): exact delivery attempts, deadline 0 as a nack,
//! ack ids bound to their subscription, and the status each stream ends
//! with. Runs on both backends (`semantics_files.rs`).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::pubsub::*;
use common::*;
use herald::proto::google::pubsub::v1::publisher_client::PublisherClient;
use herald::proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use herald::proto::google::pubsub::v1::*;
use tonic::Code;
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_pull_acks_and_nacks_with_exact_attempts() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &["workers"]).await;
    publish(&mut publisher, 3).await;
    let (tx, mut stream) = pull(&mut subscriber, "workers", 30).await.expect("open");
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(next(&mut stream).await);
    }
    assert!(got.iter().all(|m| m.delivery_attempt == 1), "{got:?}");
    // Ack the first two on the stream; deadline 0 on the third: a nack.
    tx.send(StreamingPullRequest {
        ack_ids: got[..2].iter().map(|m| m.ack_id.clone()).collect(),
        modify_deadline_seconds: vec![0],
        modify_deadline_ack_ids: vec![got[2].ack_id.clone()],
        ..StreamingPullRequest::default()
    })
    .await
    .unwrap();
    let again = next(&mut stream).await;
    assert_eq!(again.len(), 1, "{again:?}");
    let redelivered = &again[0];
    assert_eq!(redelivered.delivery_attempt, 2);
    assert_eq!(
        redelivered.message.as_ref().unwrap().message_id,
        got[2].message.as_ref().unwrap().message_id
    );
    // Unary Acknowledge settles a streamed delivery too.
    subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: sub("workers"),
            ack_ids: vec![redelivered.ack_id.clone()],
        })
        .await
        .expect("acknowledge");
    let stats = server.group_stats("jobs", "workers").await;
    assert_eq!(stats.acked, 3, "{stats:?}");
    // The client closes its side: the stream ends OK.
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_ids_are_bound_to_their_subscription() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &["one", "two"]).await;
    publish(&mut publisher, 1).await;
    let (_tx, mut stream) = pull(&mut subscriber, "one", 30).await.expect("open");
    let got = next(&mut stream).await;
    let err = subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: sub("two"),
            ack_ids: vec![got[0].ack_id.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = subscriber
        .modify_ack_deadline(ModifyAckDeadlineRequest {
            subscription: sub("one"),
            ack_ids: vec![got[0].ack_id.clone()],
            ack_deadline_seconds: 601,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_with_a_status_that_says_why() {
    let server = TestServer::start().await;
    let (_publisher, mut subscriber) = setup(&server, &["stream-sub"]).await;
    let err = pull(&mut subscriber, "stream-sub", 5).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "deadline out of range: {err:?}");
    let err = pull(&mut subscriber, "missing", 30).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = pull(&mut subscriber, "Not/A/Name", 30).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Mismatched deadline lists end the stream with INVALID_ARGUMENT.
    let (tx, mut stream) = pull(&mut subscriber, "stream-sub", 30).await.expect("open");
    tx.send(StreamingPullRequest {
        modify_deadline_seconds: vec![10, 10],
        modify_deadline_ack_ids: vec!["x".into()],
        ..StreamingPullRequest::default()
    })
    .await
    .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap();
    assert_eq!(end.unwrap_err().code(), Code::InvalidArgument);

    // Deleting the subscription ends its streams with NOT_FOUND.
    let (_tx, mut stream) = pull(&mut subscriber, "stream-sub", 30).await.expect("open");
    subscriber
        .delete_subscription(DeleteSubscriptionRequest {
            subscription: sub("stream-sub"),
        })
        .await
        .expect("delete");
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap();
    assert_eq!(end.unwrap_err().code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_subscription_and_seek_to_a_time() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &["replayed"]).await;
    let updated = subscriber
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: sub("replayed"),
                ack_deadline_seconds: 45,
                ..Subscription::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["ack_deadline_seconds".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.ack_deadline_seconds, 45);
    let err = subscriber
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: sub("replayed"),
                filter: "attributes.k = \"v\"".into(),
                ..Subscription::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["filter".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "not supported yet: {err:?}");

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    publish(&mut publisher, 3).await;
    let (_tx, mut stream) = pull(&mut subscriber, "replayed", 30).await.expect("open");
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(next(&mut stream).await);
    }
    subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: sub("replayed"),
            ack_ids: got.iter().map(|m| m.ack_id.clone()).collect(),
        })
        .await
        .expect("ack");
    // Seek back to before the publish: the three are delivered again.
    subscriber
        .seek(SeekRequest {
            subscription: sub("replayed"),
            target: Some(seek_request::Target::Time(prost_types::Timestamp {
                seconds: i64::try_from(before.as_secs()).unwrap(),
                nanos: 0,
            })),
        })
        .await
        .expect("seek");
    let mut again = Vec::new();
    while again.len() < 3 {
        again.extend(next(&mut stream).await);
    }
    let ids = |ms: &[ReceivedMessage]| -> Vec<String> {
        ms.iter().map(|m| m.message.as_ref().unwrap().message_id.clone()).collect()
    };
    assert_eq!(ids(&again), ids(&got));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_through_herald_are_pulled_through_pubsub() {
    let server = TestServer::start().await;
    let (_publisher, mut subscriber) = setup(&server, &["bridge"]).await;
    let mut event = event("order-1");
    event.key = "customer-9".into();
    event.attributes.insert("region".into(), "eu".into());
    server
        .publisher()
        .publish(herald::proto::PublishRequest {
            topic: "jobs".into(),
            events: vec![event],
        })
        .await
        .expect("herald.v1 publish");
    let (_tx, mut stream) = pull(&mut subscriber, "bridge", 30).await.expect("open");
    let got = next(&mut stream).await;
    let message = got[0].message.as_ref().expect("message");
    assert_eq!(message.message_id, "order-1");
    assert_eq!(&message.data[..], b"payload of order-1");
    assert_eq!(message.ordering_key, "customer-9");
    assert_eq!(message.attributes.get("region").map(String::as_str), Some("eu"));
    assert!(message.publish_time.is_some());
    assert_eq!(got[0].delivery_attempt, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_delivers_matching_messages_and_acks_the_rest() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &[]).await;
    let with_filter = |id: &str, filter: &str| Subscription {
        name: sub(id),
        topic: TOPIC.into(),
        filter: filter.into(),
        ..Subscription::default()
    };
    let err = subscriber
        .create_subscription(with_filter("broken", "attributes.region = eu"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("Invalid filter"), "{err:?}");
    let filter = "attributes.region = \"eu\" AND NOT attributes:test";
    let created = subscriber
        .create_subscription(with_filter("europe", filter))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.filter, filter);
    let err = subscriber
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(with_filter("europe", "attributes:x")),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["filter".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "fixed at creation: {err:?}");

    let message = |i: usize, attrs: &[(&str, &str)]| PubsubMessage {
        data: Bytes::from(format!("m-{i}")),
        attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..PubsubMessage::default()
    };
    publisher
        .publish(PublishRequest {
            topic: TOPIC.into(),
            messages: vec![
                message(0, &[("region", "eu")]),
                message(1, &[("region", "us")]),
                message(2, &[("region", "eu"), ("test", "1")]),
                message(3, &[("region", "eu")]),
                message(4, &[]),
            ]
            .into_iter()
            .map(|mut m| {
                if m.attributes.is_empty() {
                    m.attributes.insert("other".into(), "x".into());
                }
                m
            })
            .collect(),
        })
        .await
        .expect("publish");
    let (_tx, mut stream) = pull(&mut subscriber, "europe", 30).await.expect("open");
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(next(&mut stream).await);
    }
    let data: Vec<Vec<u8>> = got
        .iter()
        .map(|m| m.message.as_ref().unwrap().data.to_vec())
        .collect();
    assert_eq!(data, vec![b"m-0".to_vec(), b"m-3".to_vec()]);
    // The three others were acked by the server (the last one perhaps
    // just after the second match was sent).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = server.group_stats("jobs", "europe").await;
        if stats.acked == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_policy_moves_messages_to_its_topic_with_the_source_attributes() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &[]).await;
    let dlq_topic = "projects/herald/topics/jobs-dlq";
    let policy = |topic: &str, attempts| DeadLetterPolicy {
        dead_letter_topic: topic.into(),
        max_delivery_attempts: attempts,
    };
    let with_policy = |p: DeadLetterPolicy| Subscription {
        name: sub("fragile"),
        topic: TOPIC.into(),
        dead_letter_policy: Some(p),
        retry_policy: Some(RetryPolicy {
            minimum_backoff: Some(prost_types::Duration { seconds: 0, nanos: 0 }),
            maximum_backoff: Some(prost_types::Duration { seconds: 0, nanos: 0 }),
        }),
        ..Subscription::default()
    };
    // The topic must exist, and the attempts be within Pub/Sub's bounds.
    let missing = subscriber
        .create_subscription(with_policy(policy(dlq_topic, 5)))
        .await
        .expect_err("no such topic");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    publisher
        .create_topic(Topic {
            name: dlq_topic.into(),
            ..Topic::default()
        })
        .await
        .expect("create dlq topic");
    let few = subscriber
        .create_subscription(with_policy(policy(dlq_topic, 4)))
        .await
        .expect_err("4 attempts");
    assert_eq!(few.code(), Code::InvalidArgument, "{few:?}");
    let created = subscriber
        .create_subscription(with_policy(policy(dlq_topic, 0)))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.dead_letter_policy, Some(policy(dlq_topic, 5)), "0 means 5");
    subscriber
        .create_subscription(Subscription {
            name: sub("dlq-reader"),
            topic: dlq_topic.into(),
            ..Subscription::default()
        })
        .await
        .expect("create dlq reader");

    publisher
        .publish(PublishRequest {
            topic: TOPIC.into(),
            messages: vec![PubsubMessage {
                data: Bytes::from_static(b"poison"),
                attributes: [("kind".to_string(), "bad".to_string())].into(),
                ..PubsubMessage::default()
            }],
        })
        .await
        .expect("publish");
    // Five deliveries, each nacked (deadline 0).
    let (tx, mut stream) = pull(&mut subscriber, "fragile", 30).await.expect("open");
    for attempt in 1..=5 {
        let got = next(&mut stream).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].delivery_attempt, attempt);
        tx.send(StreamingPullRequest {
            modify_deadline_seconds: vec![0],
            modify_deadline_ack_ids: vec![got[0].ack_id.clone()],
            ..StreamingPullRequest::default()
        })
        .await
        .unwrap();
    }
    let (_tx, mut dlq) = pull(&mut subscriber, "dlq-reader", 30).await.expect("open dlq");
    let moved = next(&mut dlq).await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    let m = moved[0].message.as_ref().unwrap();
    assert_eq!(&m.data[..], b"poison");
    let a = &m.attributes;
    assert_eq!(a["kind"], "bad");
    assert_eq!(a["CloudPubSubDeadLetterSourceDeliveryCount"], "5");
    assert_eq!(a["CloudPubSubDeadLetterSourceSubscription"], "fragile");
    assert_eq!(a["CloudPubSubDeadLetterSourceSubscriptionProject"], "herald");
    assert!(a.contains_key("CloudPubSubDeadLetterSourceTopicPublishTime"), "{a:?}");
    // Also in Herald's own dead-letter queue of the group.
    let listed = server
        .dead_letters()
        .list_dead_letters(herald::proto::ListDeadLettersRequest {
            topic: "jobs".into(),
            group: "fragile".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.dead_letters.len(), 1);
    // Removing the policy (update mask) stops forwarding.
    let updated = subscriber
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: sub("fragile"),
                ..Subscription::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["dead_letter_policy".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.dead_letter_policy, None);
}

async fn unary_pull(
    subscriber: &mut SubscriberClient<Channel>,
    id: &str,
    max: i32,
    immediately: bool,
) -> Vec<ReceivedMessage> {
    #[allow(deprecated)]
    let request = PullRequest {
        subscription: sub(id),
        max_messages: max,
        return_immediately: immediately,
    };
    subscriber
        .pull(request)
        .await
        .expect("pull")
        .into_inner()
        .received_messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_pull_leases_what_it_returns_until_acked_or_nacked() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &["pullers"]).await;
    let started = std::time::Instant::now();
    assert!(unary_pull(&mut subscriber, "pullers", 10, true).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(2), "return_immediately");
    publish(&mut publisher, 3).await;

    let first = unary_pull(&mut subscriber, "pullers", 2, false).await;
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|m| m.delivery_attempt == 1), "{first:?}");
    subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: sub("pullers"),
            ack_ids: vec![first[0].ack_id.clone()],
        })
        .await
        .expect("ack");
    // The unacked one stays leased to its puller: the next pull gets the
    // third message only.
    let second = unary_pull(&mut subscriber, "pullers", 10, false).await;
    let data = |m: &ReceivedMessage| m.message.as_ref().unwrap().data.clone();
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(![data(&first[0]), data(&first[1])].contains(&data(&second[0])));
    assert!(unary_pull(&mut subscriber, "pullers", 10, true).await.is_empty());
    // A nack (deadline 0) makes it available again, at attempt 2.
    subscriber
        .modify_ack_deadline(ModifyAckDeadlineRequest {
            subscription: sub("pullers"),
            ack_ids: vec![first[1].ack_id.clone()],
            ack_deadline_seconds: 0,
        })
        .await
        .expect("nack");
    let again = unary_pull(&mut subscriber, "pullers", 10, false).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(data(&again[0]), data(&first[1]));
    assert_eq!(again[0].delivery_attempt, 2);
    let bad = subscriber
        .pull(PullRequest {
            subscription: sub("pullers"),
            max_messages: 0,
            ..PullRequest::default()
        })
        .await
        .expect_err("max_messages 0");
    assert_eq!(bad.code(), Code::InvalidArgument);
}

/// Pulls until `n` messages came, acks them, and returns their data.
async fn pull_and_ack(subscriber: &mut SubscriberClient<Channel>, id: &str, n: usize) -> Vec<Bytes> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(unary_pull(subscriber, id, 10, false).await);
    }
    subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: sub(id),
            ack_ids: got.iter().map(|m| m.ack_id.clone()).collect(),
        })
        .await
        .expect("ack");
    let mut data: Vec<Bytes> = got.into_iter().map(|m| m.message.unwrap().data).collect();
    data.sort();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_remember_where_a_subscription_stood() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &["workers"]).await;
    let snap = "projects/herald/snapshots/before-batch-2";
    publish(&mut publisher, 3).await;
    pull_and_ack(&mut subscriber, "workers", 3).await;
    let created = subscriber
        .create_snapshot(CreateSnapshotRequest {
            name: snap.into(),
            subscription: sub("workers"),
            ..CreateSnapshotRequest::default()
        })
        .await
        .expect("create snapshot")
        .into_inner();
    assert_eq!((created.name.as_str(), created.topic.as_str()), (snap, TOPIC));
    let week = 7 * 24 * 3600;
    let expires = created.expire_time.expect("expire_time").seconds;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((expires - now - week).abs() < 60, "{expires} vs {now}");
    let again = subscriber
        .create_snapshot(CreateSnapshotRequest {
            name: snap.into(),
            subscription: sub("workers"),
            ..CreateSnapshotRequest::default()
        })
        .await
        .expect_err("exists");
    assert_eq!(again.code(), Code::AlreadyExists);

    // Three more, received and acked; Seek to the snapshot brings back
    // what came after it, and nothing before.
    publish_range(&mut publisher, 3..6).await;
    let after = pull_and_ack(&mut subscriber, "workers", 3).await;
    subscriber
        .seek(SeekRequest {
            subscription: sub("workers"),
            target: Some(seek_request::Target::Snapshot(snap.into())),
        })
        .await
        .expect("seek to snapshot");
    assert_eq!(pull_and_ack(&mut subscriber, "workers", 3).await, after);
    assert!(unary_pull(&mut subscriber, "workers", 10, true).await.is_empty());

    // Listed and read back; not a subscription.
    let listed = subscriber
        .list_snapshots(ListSnapshotsRequest {
            project: "projects/herald".into(),
            ..ListSnapshotsRequest::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.snapshots.len(), 1, "{listed:?}");
    let subs = subscriber
        .list_subscriptions(ListSubscriptionsRequest {
            project: "projects/herald".into(),
            ..ListSubscriptionsRequest::default()
        })
        .await
        .expect("list subscriptions")
        .into_inner();
    assert_eq!(subs.subscriptions.len(), 1, "{subs:?}");
    let of_topic = publisher
        .list_topic_snapshots(ListTopicSnapshotsRequest {
            topic: TOPIC.into(),
            ..ListTopicSnapshotsRequest::default()
        })
        .await
        .expect("list topic snapshots")
        .into_inner();
    assert_eq!(of_topic.snapshots, vec![snap.to_string()]);
    let updated = subscriber
        .update_snapshot(UpdateSnapshotRequest {
            snapshot: Some(Snapshot {
                name: snap.into(),
                expire_time: Some(prost_types::Timestamp {
                    seconds: now + 3600,
                    nanos: 0,
                }),
                ..Snapshot::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["expire_time".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();
    assert!((updated.expire_time.unwrap().seconds - now - 3600).abs() < 60);

    subscriber
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot: snap.into(),
        })
        .await
        .expect("delete");
    for e in [
        subscriber
            .get_snapshot(GetSnapshotRequest {
                snapshot: snap.into(),
            })
            .await
            .expect_err("deleted"),
        subscriber
            .seek(SeekRequest {
                subscription: sub("workers"),
                target: Some(seek_request::Target::Snapshot(snap.into())),
            })
            .await
            .expect_err("deleted"),
    ] {
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
}

async fn topic_of(subscriber: &mut SubscriberClient<Channel>, id: &str) -> (String, bool) {
    let s = subscriber
        .get_subscription(GetSubscriptionRequest {
            subscription: sub(id),
        })
        .await
        .expect("get subscription")
        .into_inner();
    (s.topic, s.detached)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_subscriptions_outlive_their_topic_and_deliver_nothing() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &["workers", "audit"]).await;
    publisher
        .detach_subscription(DetachSubscriptionRequest {
            subscription: sub("workers"),
        })
        .await
        .expect("detach");
    assert_eq!(topic_of(&mut subscriber, "workers").await, ("_deleted-topic_".into(), true));
    let attached = publisher
        .list_topic_subscriptions(ListTopicSubscriptionsRequest {
            topic: TOPIC.into(),
            ..ListTopicSubscriptionsRequest::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(attached.subscriptions, vec![sub("audit")]);
    publish(&mut publisher, 2).await;
    assert!(unary_pull(&mut subscriber, "workers", 10, true).await.is_empty());
    assert_eq!(pull_and_ack(&mut subscriber, "audit", 2).await.len(), 2);

    // Deleting the topic detaches the rest; the topic is gone.
    publisher
        .delete_topic(DeleteTopicRequest {
            topic: TOPIC.into(),
        })
        .await
        .expect("delete topic");
    assert_eq!(topic_of(&mut subscriber, "audit").await, ("_deleted-topic_".into(), true));
    let gone = publisher
        .get_topic(GetTopicRequest {
            topic: TOPIC.into(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
    let listed = subscriber
        .list_subscriptions(ListSubscriptionsRequest {
            project: "projects/herald".into(),
            ..ListSubscriptionsRequest::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.subscriptions.len(), 2, "{listed:?}");
    // Names stay taken until the detached subscriptions are deleted.
    publisher
        .create_topic(Topic {
            name: TOPIC.into(),
            ..Topic::default()
        })
        .await
        .expect("create topic again");
    let taken = subscriber
        .create_subscription(Subscription {
            name: sub("audit"),
            topic: TOPIC.into(),
            ..Subscription::default()
        })
        .await
        .expect_err("name taken");
    assert_eq!(taken.code(), Code::AlreadyExists);
    subscriber
        .delete_subscription(DeleteSubscriptionRequest {
            subscription: sub("audit"),
        })
        .await
        .expect("delete detached");
    subscriber
        .create_subscription(Subscription {
            name: sub("audit"),
            topic: TOPIC.into(),
            ..Subscription::default()
        })
        .await
        .expect("name free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_herald_does_not_offer_answers_unimplemented_saying_so() {
    let server = TestServer::start().await;
    let (_publisher, mut subscriber) = setup(&server, &[]).await;
    let push = subscriber
        .create_subscription(Subscription {
            name: sub("pushed"),
            topic: TOPIC.into(),
            push_config: Some(PushConfig {
                push_endpoint: "https://example.invalid/push".into(),
                ..PushConfig::default()
            }),
            ..Subscription::default()
        })
        .await
        .expect_err("push");
    assert_eq!(push.code(), Code::Unimplemented, "{push:?}");
    assert!(push.message().contains("Push delivery"), "{push:?}");
    let export = subscriber
        .create_subscription(Subscription {
            name: sub("exported"),
            topic: TOPIC.into(),
            bigquery_config: Some(BigQueryConfig {
                table: "p.d.t".into(),
                ..BigQueryConfig::default()
            }),
            ..Subscription::default()
        })
        .await
        .expect_err("export");
    assert_eq!(export.code(), Code::Unimplemented, "{export:?}");
    assert!(export.message().contains("Export subscriptions"), "{export:?}");
    let schema = PublisherClient::new(connect(server.addr()).await)
        .create_topic(Topic {
            name: "projects/herald/topics/typed".into(),
            schema_settings: Some(SchemaSettings {
                schema: "projects/herald/schemas/s".into(),
                ..SchemaSettings::default()
            }),
            ..Topic::default()
        })
        .await
        .expect_err("schema");
    assert_eq!(schema.code(), Code::Unimplemented, "{schema:?}");
    assert!(schema.message().contains("Schemas"), "{schema:?}");
    let mut raw = common::raw::connect(server.addr()).await;
    for (path, says) in [
        ("/google.iam.v1.IAMPolicy/GetIamPolicy", "IAM policies are not offered"),
        ("/google.pubsub.v1.SchemaService/CreateSchema", "schemas are not offered"),
    ] {
        let (code, message) = raw.call(path, Bytes::from_static(&[0, 0, 0, 0, 0])).await.code().await;
        assert_eq!(code, Code::Unimplemented, "{path}");
        assert!(message.contains(says), "{path}: {message}");
    }
    // retain_acked_messages is what Herald does anyway.
    let kept = subscriber
        .create_subscription(Subscription {
            name: sub("kept"),
            topic: TOPIC.into(),
            retain_acked_messages: true,
            ..Subscription::default()
        })
        .await
        .expect("retain_acked_messages")
        .into_inner();
    assert!(kept.retain_acked_messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_stored_read_back_and_checked() {
    let server = TestServer::start().await;
    let channel = connect(server.addr()).await;
    let mut publisher = PublisherClient::new(channel.clone());
    let mut subscriber = SubscriberClient::new(channel);
    let labels = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let topic = publisher
        .create_topic(Topic {
            name: TOPIC.into(),
            labels: labels(&[("team", "billing")]),
            ..Topic::default()
        })
        .await
        .expect("create topic")
        .into_inner();
    assert_eq!(topic.labels, labels(&[("team", "billing")]));
    subscriber
        .create_subscription(Subscription {
            name: sub("workers"),
            topic: TOPIC.into(),
            labels: labels(&[("env", "test")]),
            ..Subscription::default()
        })
        .await
        .expect("create subscription");
    let updated = subscriber
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: sub("workers"),
                labels: labels(&[("env", "prod"), ("tier", "1")]),
                ..Subscription::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into()],
            }),
        })
        .await
        .expect("update labels")
        .into_inner();
    assert_eq!(updated.labels, labels(&[("env", "prod"), ("tier", "1")]));
    let got = publisher
        .get_topic(GetTopicRequest {
            topic: TOPIC.into(),
        })
        .await
        .expect("get topic")
        .into_inner();
    assert_eq!(got.labels, labels(&[("team", "billing")]));
    let bad = subscriber
        .create_subscription(Subscription {
            name: sub("badly-labelled"),
            topic: TOPIC.into(),
            labels: labels(&[("Team", "x")]),
            ..Subscription::default()
        })
        .await
        .expect_err("upper case key");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
}
