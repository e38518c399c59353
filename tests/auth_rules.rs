//! Authorization beyond the per-RPC table: implicit creation needs
//! `manage`, lists show only what the caller may see (with page tokens
//! that stay correct), refusals do not reveal whether a topic exists, the
//! auth file reloads without a restart (revoking tokens, keeping the old
//! policy when the new file is bad), health stays open, reflection can be
//! turned off. The audit log is tested in `audit.rs`.

mod common;

use std::time::{Duration, Instant};

use common::secure::{PrincipalSpec, Protection, SecureServer, write_auth_file};
use herald::cli::client::connect::Transport;
use herald::proto;
use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use tonic::Code;

/// A server requiring authentication with an auth file of `principals`
/// (checked every 50 ms), the tokens by principal, and the directory that
/// holds the file.
async fn secured(
    principals: &[PrincipalSpec<'_>],
) -> (
    SecureServer,
    std::collections::HashMap<String, String>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let tokens = write_auth_file(&file, principals);
    let server = SecureServer::start(
        Protection {
            auth_file: Some(file),
            ..Default::default()
        },
        |c| c.auth.reload_interval = Duration::from_millis(50),
    )
    .await;
    (server, tokens, dir)
}

async fn publish(ch: &Transport, topic: &str) -> Result<(), tonic::Status> {
    PublisherServiceClient::new(ch.clone())
        .publish(proto::PublishRequest {
            topic: topic.into(),
            events: vec![common::event("x")],
        })
        .await
        .map(|_| ())
}

async fn topic_names(ch: &Transport, page_size: i32) -> (Vec<Vec<String>>, usize) {
    let mut a = AdminServiceClient::new(ch.clone());
    let (mut pages, mut token) = (Vec::new(), String::new());
    loop {
        let r = a
            .list_topics(proto::ListTopicsRequest {
                page_size,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(r.topics.into_iter().map(|t| t.name).collect());
        if r.next_page_token.is_empty() {
            let n = pages.len();
            return (pages, n);
        }
        token = r.next_page_token;
    }
}

#[tokio::test]
async fn implicit_creation_needs_manage() {
    let (server, tokens, _dir) = secured(&[
        PrincipalSpec {
            name: "admin",
            admin: true,
            rules: &[],
        },
        PrincipalSpec {
            name: "writer",
            admin: false,
            rules: &[(&["publish", "consume"], &["orders.>"])],
        },
        PrincipalSpec {
            name: "owner",
            admin: false,
            rules: &[(&["publish", "consume", "manage"], &["orders.>"])],
        },
    ])
    .await;
    let writer = server.channel(None, Some(&tokens["writer"])).await.unwrap();
    let owner = server.channel(None, Some(&tokens["owner"])).await.unwrap();
    let admin = server.channel(None, Some(&tokens["admin"])).await.unwrap();
    let err = publish(&writer, "orders.new").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("manage"), "{}", err.message());
    let exists = async |name: &str| {
        AdminServiceClient::new(admin.clone())
            .get_topic(proto::GetTopicRequest { name: name.into() })
            .await
            .is_ok()
    };
    assert!(
        !exists("orders.new").await,
        "the refused publish created the topic"
    );
    publish(&owner, "orders.new")
        .await
        .expect("manage may create");
    publish(&writer, "orders.new")
        .await
        .expect("publishing to an existing topic needs publish only");

    // Subscribing to a group that does not exist creates it: manage too.
    let sub = async |ch: &Transport, group: &str| {
        SubscriberServiceClient::new(ch.clone())
            .subscribe(proto::SubscribeRequest {
                topic: "orders.new".into(),
                group: group.into(),
                consumer: "c".into(),
                max_in_flight: Some(1),
            })
            .await
    };
    let err = sub(&writer, "billing").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let groups = AdminServiceClient::new(admin.clone())
        .list_groups(proto::ListGroupsRequest {
            topic: "orders.new".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert!(groups.is_empty(), "the refused subscribe created a group");
    let _stream = sub(&owner, "billing")
        .await
        .expect("manage may create the group");
    let _other = sub(&writer, "billing")
        .await
        .expect("joining an existing group needs consume only");
    server.stop().await;
}

#[tokio::test]
async fn lists_show_what_the_caller_may_see_and_refusals_hide_existence() {
    let (server, tokens, _dir) = secured(&[
        PrincipalSpec {
            name: "admin",
            admin: true,
            rules: &[],
        },
        PrincipalSpec {
            name: "reader",
            admin: false,
            rules: &[(&["consume"], &["a.*"])],
        },
    ])
    .await;
    let admin = server.channel(None, Some(&tokens["admin"])).await.unwrap();
    let reader = server.channel(None, Some(&tokens["reader"])).await.unwrap();
    // 300 topics the reader may not see around 5 it may, past the broker
    // pages the filter fetches (256).
    let mut visible = Vec::new();
    for i in 0..300 {
        publish(&admin, &format!("b.{i:03}")).await.unwrap();
        if i % 60 == 0 {
            let name = format!("a.{i:03}");
            publish(&admin, &name).await.unwrap();
            visible.push(name);
        }
    }
    publish(&admin, "c.last").await.unwrap();
    let (pages, _) = topic_names(&reader, 2).await;
    assert_eq!(
        pages.concat(),
        visible,
        "the reader sees exactly its topics, in order"
    );
    assert!(
        pages.iter().all(|p| !p.is_empty()),
        "no empty page: {pages:?}"
    );
    assert_eq!(pages.len(), 3, "5 topics in pages of 2: {pages:?}");
    let (all, _) = topic_names(&admin, 1000).await;
    assert_eq!(all.concat().len(), 306);

    // Groups: only those of visible topics, unasked.
    let mut a = AdminServiceClient::new(admin.clone());
    for topic in ["a.000", "b.000", "b.299"] {
        a.create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: topic.into(),
                name: "g".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    let mut r = AdminServiceClient::new(reader.clone());
    let groups = r
        .list_groups(proto::ListGroupsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let seen: Vec<_> = groups
        .groups
        .iter()
        .map(|g| (g.topic.clone(), g.name.clone()))
        .collect();
    assert_eq!(seen, [("a.000".to_string(), "g".to_string())]);
    assert!(groups.next_page_token.is_empty(), "no more visible groups");
    // Asking about a topic it may not see: PERMISSION_DENIED, whether it
    // exists or not, and the same words.
    let existing = r
        .list_groups(proto::ListGroupsRequest {
            topic: "b.000".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let missing = r
        .list_groups(proto::ListGroupsRequest {
            topic: "b.nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(existing.code(), Code::PermissionDenied);
    assert_eq!(missing.code(), Code::PermissionDenied);
    assert_eq!(
        existing.message().replace("b.000", "X"),
        missing.message().replace("b.nope", "X")
    );
    for name in ["b.000", "b.nope"] {
        let err = r
            .get_topic(proto::GetTopicRequest { name: name.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{name}");
    }
    // A topic it may see but that does not exist: NOT_FOUND.
    let err = r
        .get_topic(proto::GetTopicRequest {
            name: "a.nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_auth_file_reloads_without_a_restart() {
    let (server, tokens, _dir) = secured(&[
        PrincipalSpec {
            name: "admin",
            admin: true,
            rules: &[],
        },
        PrincipalSpec {
            name: "svc",
            admin: false,
            rules: &[(&["publish", "manage"], &["#"])],
        },
    ])
    .await;
    let path = server.config.auth.file.clone().unwrap();
    // The server reads the file it was started with.
    let svc = server.channel(None, Some(&tokens["svc"])).await.unwrap();
    publish(&svc, "t").await.expect("svc publishes");
    let text = std::fs::read_to_string(&path).unwrap();

    // Revoke svc's token: once reloaded, the cached verification is gone.
    let id = herald::auth::token::id_of(&tokens["svc"])
        .unwrap()
        .to_string();
    let mut ed = herald::auth::edit::Editor::open(&text).unwrap();
    ed.revoke_token("svc", &id).unwrap();
    herald::auth::edit::save(&path, &ed.text()).unwrap();
    eventually("the revoked token still works", async || {
        publish(&svc, "t")
            .await
            .is_err_and(|e| e.code() == Code::Unauthenticated)
    })
    .await;

    // A broken file is logged; the policy in force stays.
    let admin = server.channel(None, Some(&tokens["admin"])).await.unwrap();
    std::fs::write(&path, "token_key = \"oops").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&admin, "t")
        .await
        .expect("the previous policy is still in force");
    assert_eq!(
        publish(&svc, "t").await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // A new principal and token work once the file is valid again (and a
    // forced reload, as SIGHUP does, applies it at once).
    let mut ed = herald::auth::edit::Editor::open(&ed.text()).unwrap();
    ed.add_principal(
        "late",
        false,
        &[herald::auth::edit::NewRule {
            actions: vec!["publish".into()],
            topics: vec!["t".into()],
        }],
    )
    .unwrap();
    let late = ed.add_token("late", "now").unwrap();
    herald::auth::edit::save(&path, &ed.text()).unwrap();
    server.server().reload();
    let late = server.channel(None, Some(&late.token)).await.unwrap();
    publish(&late, "t")
        .await
        .expect("the new principal's token works");
    server.stop().await;
}

#[tokio::test]
async fn health_stays_open_and_reflection_can_be_turned_off() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    for reflection in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.toml");
        write_auth_file(
            &file,
            &[PrincipalSpec {
                name: "a",
                admin: true,
                rules: &[],
            }],
        );
        let server = SecureServer::start(
            Protection {
                auth_file: Some(file),
                ..Default::default()
            },
            |c| c.server.reflection = reflection,
        )
        .await;
        let anonymous = server.channel(None, None).await.unwrap();
        let health = HealthClient::new(anonymous.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health needs no credential")
            .into_inner();
        assert_eq!(health.status, ServingStatus::Serving as i32);
        // The switch covers both versions, v1 and v1alpha.
        macro_rules! list_services {
            ($v:ident) => {{
                use tonic_reflection::pb::$v::ServerReflectionRequest;
                use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
                use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
                let request = ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                };
                ServerReflectionClient::new(anonymous.clone())
                    .server_reflection_info(tokio_stream::iter([request]))
                    .await
                    .map(drop)
            }};
        }
        for (version, result) in [
            ("v1", list_services!(v1)),
            ("v1alpha", list_services!(v1alpha)),
        ] {
            match (reflection, result) {
                (true, Ok(())) => {}
                (false, Err(e)) => assert_eq!(e.code(), Code::Unimplemented, "{version}"),
                (on, other) => panic!("reflection {version} {on}: {other:?}"),
            }
        }
        server.stop().await;
    }
}

/// Acking a delivery of a topic the caller may not consume is refused, also
/// when it follows an id of a permitted group, or an altered id naming the
/// forbidden delivery's group (the guard checks one id per group: only a
/// verified, permitted one lets later ids of its group through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_ids_of_a_forbidden_topic_are_refused_whatever_precedes_them() {
    let (server, tokens, _dir) = secured(&[
        PrincipalSpec {
            name: "admin",
            admin: true,
            rules: &[],
        },
        PrincipalSpec {
            name: "worker",
            admin: false,
            rules: &[(&["publish", "consume", "manage"], &["orders.>"])],
        },
    ])
    .await;
    let admin = server.channel(None, Some(&tokens["admin"])).await.unwrap();
    let worker = server.channel(None, Some(&tokens["worker"])).await.unwrap();
    let mut ids = Vec::new();
    for (topic, ch) in [("orders.eu", &worker), ("payroll", &admin)] {
        publish(&admin, topic).await.unwrap();
        AdminServiceClient::new(admin.clone())
            .create_group(proto::CreateGroupRequest {
                group: Some(proto::Group {
                    topic: topic.into(),
                    name: "g".into(),
                    start_position: Some(common::earliest()),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        let mut sub = SubscriberServiceClient::new(ch.clone());
        let mut stream = sub
            .subscribe(proto::SubscribeRequest {
                topic: topic.into(),
                group: "g".into(),
                consumer: "c".into(),
                max_in_flight: Some(10),
            })
            .await
            .unwrap()
            .into_inner();
        let batch = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        ids.push((batch.deliveries[0].ack_id.clone(), stream));
    }
    let (mine, forbidden) = (ids[0].0.clone(), ids[1].0.clone());
    let mut altered: Vec<&str> = forbidden.split('-').collect();
    let tag = "0123456789abcdef";
    altered[3] = tag;
    let altered = altered.join("-");
    let mut sub = SubscriberServiceClient::new(worker.clone());
    for attempt in [
        vec![mine.clone(), forbidden.clone()],
        vec![altered, forbidden.clone()],
    ] {
        let err = sub
            .ack(proto::AckRequest { ack_ids: attempt })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("ack_ids[1]"), "{err:?}");
    }
    // The forbidden delivery is still pending: its owner can ack it.
    let r = SubscriberServiceClient::new(admin.clone())
        .ack(proto::AckRequest {
            ack_ids: vec![forbidden],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.acked_count, 1);
    server.stop().await;
}
