//! Exactly-once delivery through generated Pub/Sub stubs (issue 12): a
//! subscription with `enable_exactly_once_delivery` is a group with durable
//! acks, and answers per ack id — INVALID_ARGUMENT with an ErrorInfo naming
//! each failed id on unary calls, confirmations on StreamingPull — while a
//! subscription without it keeps Pub/Sub's best-effort acks. Runs on both
//! backends (`semantics_files.rs`).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::pubsub::*;
use common::*;
use herald::proto;
use herald::proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use herald::proto::google::pubsub::v1::*;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const INVALID: &str = "PERMANENT_FAILURE_INVALID_ACK_ID";

async fn create(subscriber: &mut SubscriberClient<Channel>, id: &str, once: bool) -> Subscription {
    subscriber
        .create_subscription(Subscription {
            name: sub(id),
            topic: TOPIC.into(),
            enable_exactly_once_delivery: once,
            ..Subscription::default()
        })
        .await
        .expect("create subscription")
        .into_inner()
}

/// The ack ids an exactly-once failure names, with their codes.
fn failed_ids(status: &tonic::Status) -> HashMap<String, String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "EXACTLY_ONCE_ACKID_FAILURE");
    assert_eq!(info.domain, "pubsub.googleapis.com");
    info.metadata
}

async fn next_response(stream: &mut tonic::Streaming<StreamingPullResponse>) -> StreamingPullResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a response in time")
        .expect("stream ok")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_subscription_is_a_group_with_durable_acks() {
    let server = TestServer::start().await;
    let (_publisher, mut subscriber) = setup(&server, &[]).await;
    let once = create(&mut subscriber, "once", true).await;
    assert!(once.enable_exactly_once_delivery);
    assert_eq!(once.state, subscription::State::Active as i32);
    let plain = create(&mut subscriber, "plain", false).await;
    assert!(!plain.enable_exactly_once_delivery);
    let durability = |group: &str| {
        let mut admin = server.admin();
        let group = group.to_string();
        async move {
            let g = admin
                .get_group(proto::GetGroupRequest {
                    topic: "jobs".into(),
                    group,
                })
                .await
                .expect("get group")
                .into_inner();
            g.group.expect("group").ack_durability
        }
    };
    assert_eq!(durability("once").await, proto::AckDurability::Sync as i32);
    assert_eq!(durability("plain").await, proto::AckDurability::Batched as i32);
    // Switched off and on again by update mask.
    let updated = subscriber
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: sub("plain"),
                enable_exactly_once_delivery: true,
                ..Subscription::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enable_exactly_once_delivery".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();
    assert!(updated.enable_exactly_once_delivery);
    assert_eq!(durability("plain").await, proto::AckDurability::Sync as i32);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_acks_name_each_ack_id_that_failed() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &[]).await;
    create(&mut subscriber, "once", true).await;
    create(&mut subscriber, "plain", false).await;
    publish(&mut publisher, 2).await;
    let (_tx, mut stream) = pull(&mut subscriber, "once", 60).await.expect("open");
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(next(&mut stream).await);
    }
    let (first, second) = (got[0].ack_id.clone(), got[1].ack_id.clone());
    let (_tx2, mut other) = pull(&mut subscriber, "plain", 60).await.expect("open");
    let foreign = next(&mut other).await[0].ack_id.clone();

    // All valid: OK.
    subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: sub("once"),
            ack_ids: vec![first.clone()],
        })
        .await
        .expect("a valid ack");
    // Already acked, malformed and of another subscription fail one by one;
    // the valid one in the same call is acked.
    let err = subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: sub("once"),
            ack_ids: vec![first.clone(), "not-an-ack-id".into(), foreign.clone(), second.clone()],
        })
        .await
        .expect_err("some failed");
    let failed = failed_ids(&err);
    assert_eq!(failed.len(), 3, "{failed:?}");
    for id in [&first, &foreign] {
        assert_eq!(failed.get(id).map(String::as_str), Some(INVALID), "{failed:?}");
    }
    assert_eq!(failed["not-an-ack-id"], INVALID);
    assert!(!failed.contains_key(&second), "{failed:?}");
    assert_eq!(server.group_stats("jobs", "once").await.acked, 2);
    // A deadline change of a done delivery fails the same way.
    let err = subscriber
        .modify_ack_deadline(ModifyAckDeadlineRequest {
            subscription: sub("once"),
            ack_ids: vec![second.clone()],
            ack_deadline_seconds: 30,
        })
        .await
        .expect_err("already acked");
    assert_eq!(failed_ids(&err).len(), 1);

    // Without exactly-once delivery acks stay best effort: an ack id that is
    // done already is not an error, and one of another subscription fails
    // the whole call as before.
    subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: sub("plain"),
            ack_ids: vec![foreign.clone(), foreign.clone()],
        })
        .await
        .expect("best effort");
    let err = subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: sub("plain"),
            ack_ids: vec![second],
        })
        .await
        .expect_err("another subscription's");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.get_details_error_info().is_none(), "{err:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_pull_confirms_acks_and_deadline_changes() {
    let server = TestServer::start().await;
    let (mut publisher, mut subscriber) = setup(&server, &[]).await;
    create(&mut subscriber, "once", true).await;
    publish(&mut publisher, 3).await;
    let (tx, mut stream) = pull(&mut subscriber, "once", 60).await.expect("open");
    let mut got = Vec::new();
    while got.len() < 3 {
        let r = next_response(&mut stream).await;
        let props = r.subscription_properties.expect("subscription properties");
        assert!(props.exactly_once_delivery_enabled);
        assert!(!props.message_ordering_enabled);
        got.extend(r.received_messages);
    }
    let ids: Vec<String> = got.iter().map(|m| m.ack_id.clone()).collect();
    tx.send(StreamingPullRequest {
        ack_ids: vec![ids[0].clone(), "bogus".into()],
        modify_deadline_seconds: vec![30, 30],
        modify_deadline_ack_ids: vec![ids[1].clone(), ids[0].clone()],
        ..StreamingPullRequest::default()
    })
    .await
    .unwrap();
    let r = next_response(&mut stream).await;
    assert!(r.received_messages.is_empty());
    let acked = r.acknowledge_confirmation.expect("ack confirmation");
    assert_eq!(acked.ack_ids, [ids[0].clone()]);
    assert_eq!(acked.invalid_ack_ids, ["bogus".to_string()]);
    let modified = r.modify_ack_deadline_confirmation.expect("deadline confirmation");
    assert_eq!(modified.ack_ids, [ids[1].clone()]);
    // Acked in the same request before its deadline change: done.
    assert_eq!(modified.invalid_ack_ids, [ids[0].clone()]);
    // A nack (deadline 0) is confirmed too, and redelivers at once.
    tx.send(StreamingPullRequest {
        modify_deadline_seconds: vec![0],
        modify_deadline_ack_ids: vec![ids[2].clone()],
        ..StreamingPullRequest::default()
    })
    .await
    .unwrap();
    let mut confirmed = false;
    let mut redelivered = None;
    while !confirmed || redelivered.is_none() {
        let r = next_response(&mut stream).await;
        if let Some(c) = r.modify_ack_deadline_confirmation {
            assert_eq!(c.ack_ids, [ids[2].clone()]);
            confirmed = true;
        }
        if let Some(m) = r.received_messages.into_iter().next() {
            redelivered = Some(m);
        }
    }
    assert_eq!(redelivered.expect("redelivered").delivery_attempt, 2);
    server.stop().await;
}
