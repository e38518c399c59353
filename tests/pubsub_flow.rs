//! A StreamingPull's own settings (issue 12): `stream_ack_deadline_seconds`
//! leases the stream's messages for that long whatever the subscription's
//! ack deadline, `max_outstanding_bytes` bounds each response; and a
//! subscription's `message_retention_duration` is its group's max message
//! age. Runs on both backends (`semantics_files.rs`).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pubsub::*;
use common::*;
use herald::proto::google::pubsub::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_deadline_is_the_lease_of_its_messages() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &[]).await;
    subscriber
        .create_subscription(Subscription {
            name: sub("slow"),
            topic: TOPIC.into(),
            ack_deadline_seconds: 600,
            ..Subscription::default()
        })
        .await
        .expect("create");
    publish(&mut publisher, 1).await;
    // A 10 s stream deadline on a 600 s subscription: unacked, the message
    // comes back after about 10 s, not 10 minutes.
    let (_tx, mut stream) = pull(&mut subscriber, "slow", 10).await.expect("open");
    let first = next(&mut stream).await;
    assert_eq!(first[0].delivery_attempt, 1);
    let held = Instant::now();
    let again = tokio::time::timeout(Duration::from_secs(25), async {
        loop {
            let r = stream.message().await.expect("stream ok").expect("stream open");
            if !r.received_messages.is_empty() {
                return r.received_messages;
            }
        }
    })
    .await
    .expect("redelivered after the stream's deadline");
    assert_eq!(again[0].delivery_attempt, 2);
    assert!(held.elapsed() >= Duration::from_secs(9), "{:?}", held.elapsed());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_outstanding_bytes_bounds_each_response() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &["bytes"]).await;
    let data = (0..4).map(|i| Bytes::from(vec![b'a' + i; 1000])).collect();
    publish_data(&mut publisher, data).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(StreamingPullRequest {
        subscription: sub("bytes"),
        stream_ack_deadline_seconds: 60,
        max_outstanding_bytes: 1500,
        ..StreamingPullRequest::default()
    })
    .await
    .unwrap();
    let mut stream = subscriber
        .streaming_pull(ReceiverStream::new(rx))
        .await
        .expect("open")
        .into_inner();
    let mut got = 0;
    while got < 4 {
        let batch = next(&mut stream).await;
        assert_eq!(batch.len(), 1, "one 1000-byte message per 1500-byte response");
        got += batch.len();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_retention_duration_is_the_groups_max_message_age() {
    let server = TestServer::start().await;
    let (_publisher, mut subscriber) = setup(&server, &[]).await;
    let retention = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
    let created = subscriber
        .create_subscription(Subscription {
            name: sub("aged"),
            topic: TOPIC.into(),
            message_retention_duration: retention(600),
            ..Subscription::default()
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.message_retention_duration, retention(600));
    let group = server
        .admin()
        .get_group(herald::proto::GetGroupRequest {
            topic: "jobs".into(),
            group: "aged".into(),
        })
        .await
        .expect("get group")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(group.max_message_age, Some(dur(Duration::from_secs(600))));
    let short = subscriber
        .create_subscription(Subscription {
            name: sub("short"),
            topic: TOPIC.into(),
            message_retention_duration: retention(60),
            ..Subscription::default()
        })
        .await
        .expect_err("under 10 minutes");
    assert_eq!(short.code(), tonic::Code::InvalidArgument, "{short:?}");
    // Unset by update mask: the topic's retention again.
    let updated = subscriber
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: sub("aged"),
                ..Subscription::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["message_retention_duration".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.message_retention_duration, None);
    server.stop().await;
}
