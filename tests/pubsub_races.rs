//! Subscription names across topics (issue 12): a name is unique even
//! when several CreateSubscription calls of it race on different topics,
//! and a subscription deleted and created again on another topic is found
//! there. Runs on both backends (`semantics_files.rs`).

mod common;

use common::*;
use herald::proto::google::pubsub::v1::publisher_client::PublisherClient;
use herald::proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use herald::proto::google::pubsub::v1::*;
use tonic::Code;

const RACERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_of_one_subscription_name_leave_exactly_one() {
    let server = TestServer::start().await;
    let channel = connect(server.addr()).await;
    let mut publisher = PublisherClient::new(channel.clone());
    for i in 0..RACERS {
        publisher
            .create_topic(Topic {
                name: format!("projects/herald/topics/race-{i}"),
                ..Topic::default()
            })
            .await
            .expect("create topic");
    }
    for round in 0..3 {
        let name = format!("projects/herald/subscriptions/contested-{round}");
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..RACERS {
            let mut subscriber = SubscriberClient::new(channel.clone());
            let name = name.clone();
            calls.spawn(async move {
                subscriber
                    .create_subscription(Subscription {
                        name,
                        topic: format!("projects/herald/topics/race-{i}"),
                        ..Subscription::default()
                    })
                    .await
            });
        }
        let results = calls.join_all().await;
        let mut created = Vec::new();
        for r in results {
            match r {
                Ok(s) => created.push(s.into_inner().topic),
                Err(e) => assert_eq!(e.code(), Code::AlreadyExists, "{e:?}"),
            }
        }
        assert_eq!(created.len(), 1, "round {round}: created on {created:?}");
        let groups = server
            .broker()
            .list_groups(None, None, 1000)
            .await
            .expect("list groups")
            .0;
        let named: Vec<_> = groups
            .iter()
            .filter(|g| g.record.name == format!("contested-{round}"))
            .map(|g| g.record.topic.clone())
            .collect();
        assert_eq!(named.len(), 1, "round {round}: groups on {named:?}");
        assert_eq!(format!("projects/herald/topics/{}", named[0]), created[0]);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_recreated_on_another_topic_is_found_there() {
    let server = TestServer::start().await;
    let channel = connect(server.addr()).await;
    let mut publisher = PublisherClient::new(channel.clone());
    let mut subscriber = SubscriberClient::new(channel);
    for t in ["first", "second"] {
        publisher
            .create_topic(Topic {
                name: format!("projects/herald/topics/{t}"),
                ..Topic::default()
            })
            .await
            .expect("create topic");
    }
    let name = "projects/herald/subscriptions/moving".to_string();
    let topic_of = |subscriber: &mut SubscriberClient<_>| {
        let mut subscriber = subscriber.clone();
        let name = name.clone();
        async move {
            subscriber
                .get_subscription(GetSubscriptionRequest { subscription: name })
                .await
                .map(|s| s.into_inner().topic)
        }
    };
    subscriber
        .create_subscription(Subscription {
            name: name.clone(),
            topic: "projects/herald/topics/first".into(),
            ..Subscription::default()
        })
        .await
        .expect("create subscription");
    // Found once: remembered on `first`.
    assert_eq!(topic_of(&mut subscriber).await.unwrap(), "projects/herald/topics/first");
    // Moved behind the Pub/Sub layer's back, through herald.v1: the
    // remembered topic is stale while the name exists on another.
    let mut admin = server.admin();
    admin
        .delete_group(herald::proto::DeleteGroupRequest {
            topic: "first".into(),
            group: "moving".into(),
        })
        .await
        .expect("delete group");
    admin
        .create_group(herald::proto::CreateGroupRequest {
            group: Some(herald::proto::Group {
                topic: "second".into(),
                name: "moving".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create group");
    assert_eq!(topic_of(&mut subscriber).await.unwrap(), "projects/herald/topics/second");
    server.stop().await;
}
