//! Admin operations racing each other are linearizable (issue 8, finding 2):
//! a group is never created on a topic that a concurrent DeleteTopic removed,
//! and an UpdateGroup racing DeleteGroup never brings the group back.
//!
//! Each race is made deterministic by holding the broker's admin lock
//! (a test hook) while both calls queue up behind it, the delete first.

mod common;

use std::future::Future;
use std::time::Duration;

use common::*;
use herald::broker::{Broker, BrokerError, GroupPatch, TopicPatch};

/// Groups the server counts equal the groups it lists, and every listed
/// group's topic exists.
async fn assert_consistent(broker: &Broker, context: &str) {
    let info = broker.server_info();
    let (groups, _) = broker.list_groups(None, None, 10_000).await.unwrap();
    assert_eq!(
        info.groups as usize,
        groups.len(),
        "{context}: GetServerInfo counts groups that cannot be listed"
    );
    for g in &groups {
        assert!(
            broker.get_topic(&g.record.topic).await.is_ok(),
            "{context}: group {} lives on a deleted topic",
            g.record.name
        );
    }
}

/// Runs `first` then `second` so that both are past their lock-free checks
/// and wait for the admin lock, `first` ahead of `second`; returns both
/// results.
async fn queue_behind_admin_lock<A, B>(
    broker: &Broker,
    first: impl Future<Output = A> + Send + 'static,
    second: impl Future<Output = B> + Send + 'static,
) -> (A, B)
where
    A: Send + 'static,
    B: Send + 'static,
{
    let guard = broker.hold_admin_lock_for_test().await;
    let first = tokio::spawn(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn(second);
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(guard);
    (first.await.unwrap(), second.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_group_racing_delete_topic_never_orphans_a_group() {
    for auto_create in [false, true] {
        let mut server = TestServer::start_with(|c| c.auto_create = auto_create).await;
        let broker = server.broker().clone();
        broker
            .create_topic("orders", &TopicPatch::default())
            .await
            .unwrap();
        let (b1, b2) = (broker.clone(), broker.clone());
        let (deleted, created) = queue_behind_admin_lock(
            &broker,
            async move { b1.delete_topic("orders").await },
            async move {
                b2.create_group("orders", "billing", &GroupPatch::default(), None)
                    .await
                    .map(|_| ())
            },
        )
        .await;
        deleted.expect("delete succeeds");
        match created {
            // Linearized after the delete: no topic, or a new one made for it.
            Err(BrokerError::NotFound(_)) => assert!(!auto_create),
            Ok(()) => assert!(auto_create, "created a group on a deleted topic"),
            Err(e) => panic!("unexpected {e}"),
        }
        assert_consistent(&broker, "after the race").await;
        drop(broker);
        server.restart().await;
        assert_consistent(server.broker(), "after restart").await;
        // The topic's new events reach the group (it is not stuck on a
        // cursor of the deleted topic).
        if auto_create {
            server.publish_n("orders", "e", 3).await;
            let stats = server.group_stats("orders", "billing").await;
            assert_eq!(stats.backlog, 3, "{stats:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_creating_subscribe_racing_delete_topic_never_orphans_a_group() {
    let mut server = TestServer::start().await;
    let broker = server.broker().clone();
    broker
        .create_topic("orders", &TopicPatch::default())
        .await
        .unwrap();
    let (b1, b2) = (broker.clone(), broker.clone());
    let (deleted, subscribed) = queue_behind_admin_lock(
        &broker,
        async move { b1.delete_topic("orders").await },
        async move { b2.subscribe("orders", "billing", Some(1)).await.is_ok() },
    )
    .await;
    deleted.expect("delete succeeds");
    assert!(subscribed, "auto-create makes a new topic and group");
    assert_consistent(&broker, "after the race").await;
    drop(broker);
    server.restart().await;
    assert_consistent(server.broker(), "after restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_group_racing_delete_group_never_brings_it_back() {
    let mut server = TestServer::start().await;
    let broker = server.broker().clone();
    broker
        .create_topic("orders", &TopicPatch::default())
        .await
        .unwrap();
    broker
        .create_group("orders", "billing", &GroupPatch::default(), None)
        .await
        .unwrap();
    let (b1, b2) = (broker.clone(), broker.clone());
    let (deleted, updated) = queue_behind_admin_lock(
        &broker,
        async move { b1.delete_group("orders", "billing").await },
        async move {
            let patch = GroupPatch {
                ack_deadline: Some(Duration::from_secs(7)),
                ..GroupPatch::default()
            };
            b2.update_group("orders", "billing", &patch)
                .await
                .map(|_| ())
        },
    )
    .await;
    deleted.expect("delete succeeds");
    match updated {
        Err(BrokerError::NotFound(_)) => {}
        other => panic!("an update that lost the race says NOT_FOUND, got {other:?}"),
    }
    assert!(broker.get_group("orders", "billing").await.is_err());
    drop(broker);
    server.restart().await;
    let (groups, _) = server
        .broker()
        .list_groups(Some("orders"), None, 1000)
        .await
        .unwrap();
    assert!(
        groups.is_empty(),
        "the deleted group came back after restart"
    );
}

/// Regression (issue 8, finding 8): a CreateGroup that fails on a start
/// offset past the end had already auto-created its topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_start_offset_creates_nothing() {
    let server = TestServer::start().await;
    let err = server
        .admin()
        .create_group(herald::proto::CreateGroupRequest {
            group: Some(herald::proto::Group {
                topic: "never".into(),
                name: "g".into(),
                start_position: Some(herald::proto::Position {
                    kind: Some(herald::proto::position::Kind::Offset(5)),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert!(
        server.broker().get_topic("never").await.is_err(),
        "the failed CreateGroup created its topic"
    );
}
