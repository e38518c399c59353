//! With authentication on, Pub/Sub calls authenticate like every other call
//! and each maps to one of Herald's actions on the Herald topic its name
//! maps to (issue 12, item 6): no token is UNAUTHENTICATED; publishing
//! needs `publish`, creating and deleting topics `manage`, describing any
//! permission; lists show only what the caller may see.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::secure::{PrincipalSpec, Protection, SecureServer, write_auth_file};
use herald::proto::google::pubsub::v1::publisher_client::PublisherClient;
use herald::proto::google::pubsub::v1::*;
use tonic::Code;

fn principals() -> Vec<PrincipalSpec<'static>> {
    vec![
        PrincipalSpec {
            name: "admin",
            admin: true,
            rules: &[],
        },
        // Publishes to `orders` (the default project's topic) only.
        PrincipalSpec {
            name: "writer",
            admin: false,
            rules: &[(&["publish"], &["orders"])],
        },
        // Consumes from `orders` only.
        PrincipalSpec {
            name: "reader",
            admin: false,
            rules: &[(&["consume"], &["orders"])],
        },
    ]
}

fn message() -> PubsubMessage {
    PubsubMessage {
        data: Bytes::from_static(b"hello"),
        ..PubsubMessage::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_calls_are_authenticated_and_authorized() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let tokens: HashMap<String, String> = write_auth_file(&file, &principals());
    let server = SecureServer::start(
        Protection {
            auth_file: Some(file),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let client = |token: Option<&str>| {
        let server = &server;
        let token = token.map(str::to_string);
        async move { PublisherClient::new(server.channel(None, token.as_deref()).await.unwrap()) }
    };
    let topic = |id: &str| format!("projects/herald/topics/{id}");
    let mut admin = client(Some(&tokens["admin"])).await;
    let mut writer = client(Some(&tokens["writer"])).await;
    let mut nobody = client(None).await;

    for id in ["orders", "secret"] {
        admin
            .create_topic(Topic {
                name: topic(id),
                ..Topic::default()
            })
            .await
            .expect("admin creates");
    }
    let err = nobody
        .get_topic(GetTopicRequest {
            topic: topic("orders"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let publish = |id: &str| PublishRequest {
        topic: topic(id),
        messages: vec![message()],
    };
    writer
        .publish(publish("orders"))
        .await
        .expect("writer publishes to orders");
    let err = writer.publish(publish("secret")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("publish"),
        "names the action: {err:?}"
    );
    // A topic that does not exist and one it may not touch answer alike.
    let missing = writer.publish(publish("missing")).await.unwrap_err();
    assert_eq!(missing.code(), Code::PermissionDenied, "{missing:?}");

    let err = writer
        .create_topic(Topic {
            name: topic("orders2"),
            ..Topic::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "create needs manage: {err:?}"
    );
    let err = writer
        .delete_topic(DeleteTopicRequest {
            topic: topic("orders"),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "delete needs manage: {err:?}"
    );

    writer
        .get_topic(GetTopicRequest {
            topic: topic("orders"),
        })
        .await
        .expect("any permission describes");
    let listed: Vec<String> = writer
        .list_topics(ListTopicsRequest {
            project: "projects/herald".into(),
            ..ListTopicsRequest::default()
        })
        .await
        .expect("list")
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(listed, vec![topic("orders")], "only what it may see");
    subscriptions(&server, &tokens).await;
    server.stop().await;
}

/// The Subscriber: creating needs `manage`; streaming needs `consume`.
async fn subscriptions(server: &SecureServer, tokens: &HashMap<String, String>) {
    use herald::proto::google::pubsub::v1::subscriber_client::SubscriberClient;
    let client = |token: &str| {
        let token = token.to_string();
        async move { SubscriberClient::new(server.channel(None, Some(&token)).await.unwrap()) }
    };
    let mut admin = client(&tokens["admin"]).await;
    let mut reader = client(&tokens["reader"]).await;
    let subscription = |id: &str, topic: &str| Subscription {
        name: format!("projects/herald/subscriptions/{id}"),
        topic: format!("projects/herald/topics/{topic}"),
        ..Subscription::default()
    };
    let err = reader
        .create_subscription(subscription("mine", "orders"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "create needs manage: {err:?}"
    );
    for (id, topic) in [("orders-sub", "orders"), ("secret-sub", "secret")] {
        admin
            .create_subscription(subscription(id, topic))
            .await
            .expect("admin creates");
    }
    let open = |id: &str| StreamingPullRequest {
        subscription: format!("projects/herald/subscriptions/{id}"),
        stream_ack_deadline_seconds: 30,
        ..StreamingPullRequest::default()
    };
    reader
        .streaming_pull(tokio_stream::iter(vec![open("orders-sub")]))
        .await
        .expect("reader consumes orders");
    let err = reader
        .streaming_pull(tokio_stream::iter(vec![open("secret-sub")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = reader
        .get_subscription(GetSubscriptionRequest {
            subscription: "projects/herald/subscriptions/secret-sub".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}
