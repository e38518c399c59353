//! Topic and group administration, server info, health and reflection.

mod common;

use std::time::Duration;

use common::*;
use herald::proto;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_groups_crud_with_stats() {
    let server = TestServer::start().await;
    let mut admin = server.admin();
    for name in ["a", "b", "c"] {
        let t = admin
            .create_topic(proto::CreateTopicRequest {
                topic: Some(proto::Topic {
                    name: name.into(),
                    dedup_window: Some(dur(Duration::from_secs(30))),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .topic
            .unwrap();
        assert_eq!(t.dedup_window.unwrap().seconds, 30);
        assert!(t.create_time.is_some());
    }
    // Paging: two pages of two.
    let page = admin
        .list_topics(proto::ListTopicsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.topics
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let page2 = admin
        .list_topics(proto::ListTopicsRequest {
            page_size: 2,
            page_token: page.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page2
            .topics
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );
    assert!(page2.next_page_token.is_empty());
    let err = admin
        .list_topics(proto::ListTopicsRequest {
            page_size: 2,
            page_token: "not a token!".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Update.
    let t = admin
        .update_topic(proto::UpdateTopicRequest {
            topic: Some(proto::Topic {
                name: "a".into(),
                retention_max_bytes: Some(1 << 30),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    assert_eq!(t.retention_max_bytes, Some(1 << 30));
    assert_eq!(
        t.dedup_window.unwrap().seconds,
        30,
        "unset fields keep their value"
    );

    // Groups with stats.
    server.publish_n("a", "x", 10).await;
    server
        .create_group("a", "g1", Duration::from_secs(30), Duration::ZERO)
        .await;
    let g = admin
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "a".into(),
                name: "g2".into(),
                max_delivery_attempts: Some(0),
                filter: Some(proto::Filter {
                    types: vec!["T".into()],
                    patterns: vec!["Order.*".into()],
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(
        g.max_delivery_attempts,
        Some(0),
        "explicit zero is kept, not defaulted"
    );
    assert_eq!(g.ack_deadline.unwrap().seconds, 30, "default lease");
    assert_eq!(
        g.stats.unwrap().backlog,
        0,
        "latest start skips the backlog"
    );
    let g1 = admin
        .get_group(proto::GetGroupRequest {
            topic: "a".into(),
            group: "g1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    let stats = g1.stats.unwrap();
    assert_eq!(stats.backlog, 10);
    assert!(stats.oldest_unacked_age.is_some());
    let updated = admin
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                topic: "a".into(),
                name: "g1".into(),
                ack_deadline: Some(dur(Duration::from_secs(5))),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(updated.ack_deadline.unwrap().seconds, 5);
    let list = admin
        .list_groups(proto::ListGroupsRequest {
            topic: "a".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.groups[0].name, "g1");
    assert_eq!(list.next_page_token, "a/g1");
    let topic = admin
        .get_topic(proto::GetTopicRequest { name: "a".into() })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    let ts = topic.stats.unwrap();
    assert_eq!((ts.end_offset, ts.groups, ts.published), (10, 2, 10));
    assert!(ts.bytes > 0);

    let info = admin
        .get_server_info(proto::GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.topics, info.groups, info.published), (3, 2, 10));
    if server.redis.is_some() {
        assert_eq!(info.storage_backend, "redis");
    } else {
        assert_eq!(info.storage_backend, "embedded");
        assert_eq!(info.fsync, "always");
    }

    // Deletes.
    admin
        .delete_group(proto::DeleteGroupRequest {
            topic: "a".into(),
            group: "g2".into(),
        })
        .await
        .unwrap();
    let err = admin
        .get_group(proto::GetGroupRequest {
            topic: "a".into(),
            group: "g2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // What the topic keeps: its directory, or its keys in Redis (the
    // generation counter outlives the topic on purpose).
    let stored = || match &server.redis {
        Some(r) => r
            .cli(&["--scan", "--pattern", "herald:{a}:*"])
            .lines()
            .filter(|k| *k != "herald:{a}:gen")
            .count(),
        None => usize::from(server.data_dir().join("topics").join("a").exists()),
    };
    assert!(stored() > 0);
    admin
        .delete_topic(proto::DeleteTopicRequest { name: "a".into() })
        .await
        .unwrap();
    assert_eq!(stored(), 0, "events are gone from storage");
    let err = admin
        .get_topic(proto::GetTopicRequest { name: "a".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = admin
        .delete_topic(proto::DeleteTopicRequest { name: "a".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Re-creating starts empty.
    server.publish_n("a", "y", 1).await;
    let topic = admin
        .get_topic(proto::GetTopicRequest { name: "a".into() })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    assert_eq!(topic.stats.unwrap().end_offset, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer() {
    let server = TestServer::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    for service in [
        "",
        "herald.v1.PublisherService",
        "herald.v1.SubscriberService",
        "herald.v1.AdminService",
        "herald.v1.DeadLetterService",
    ] {
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            resp.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    // Both reflection versions answer: v1, and v1alpha for the tools that
    // speak only that (grpcio-reflection, Postman).
    macro_rules! reflect {
        ($v:ident) => {{
            use tonic_reflection::pb::$v::ServerReflectionRequest;
            use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
            let mut reflection = ServerReflectionClient::new(server.channel.clone());
            let requests = vec![
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                },
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::FileContainingSymbol(
                        "herald.v1.SubscriberService".into(),
                    )),
                },
            ];
            let mut stream = reflection
                .server_reflection_info(tokio_stream::iter(requests))
                .await
                .unwrap()
                .into_inner();
            let resp = stream.message().await.unwrap().unwrap();
            let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
                panic!("unexpected reflection answer");
            };
            let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            let resp = stream.message().await.unwrap().unwrap();
            let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else {
                panic!("unexpected reflection answer");
            };
            (names, files.file_descriptor_proto)
        }};
    }
    for (version, (names, files)) in [("v1", reflect!(v1)), ("v1alpha", reflect!(v1alpha))] {
        for want in [
            "herald.v1.PublisherService",
            "herald.v1.SubscriberService",
            "herald.v1.AdminService",
            "herald.v1.DeadLetterService",
            "grpc.health.v1.Health",
            "google.pubsub.v1.Publisher",
            "google.pubsub.v1.Subscriber",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{version}: {want} in {names:?}"
            );
        }
        use prost::Message;
        let methods: Vec<String> = files
            .iter()
            .map(|f| prost_types::FileDescriptorProto::decode(f.as_slice()).unwrap())
            .flat_map(|f| f.service)
            .filter(|s| s.name() == "SubscriberService")
            .flat_map(|s| s.method)
            .map(|m| m.name().to_string())
            .collect();
        assert!(
            methods.iter().any(|m| m == "Consume"),
            "{version}: SubscriberService methods {methods:?}"
        );
    }
    server.stop().await;
}
