//! Every RPC of every Herald service × {no credential, bad token, principal
//! without the right, principal with it}: the exact code, and no state
//! change when refused. The RPCs come from the server's own table
//! (`grpc::guard::RPCS`, itself checked against the proto), so a new RPC
//! without a case here fails this test.

mod common;

use std::any::Any;
use std::collections::HashMap;
use std::time::Duration;

use common::secure::{PrincipalSpec, Protection, SecureServer, write_auth_file};
use herald::auth::Action;
use herald::cli::client::connect::Transport;
use herald::grpc::guard::{Need, RPCS};
use herald::proto;
use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::dead_letter_service_client::DeadLetterServiceClient;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use tokio_stream::StreamExt;
use tonic::{Code, Status};

const TOPICS: &[&str] = &["t.>"];

fn principals() -> Vec<PrincipalSpec<'static>> {
    vec![
        PrincipalSpec {
            name: "admin",
            admin: true,
            rules: &[],
        },
        PrincipalSpec {
            name: "publisher",
            admin: false,
            rules: &[(&["publish"], TOPICS)],
        },
        PrincipalSpec {
            name: "consumer",
            admin: false,
            rules: &[(&["consume"], TOPICS)],
        },
        PrincipalSpec {
            name: "manager",
            admin: false,
            rules: &[(&["manage"], TOPICS)],
        },
        PrincipalSpec {
            name: "dlq",
            admin: false,
            rules: &[(&["dead_letters"], TOPICS)],
        },
        PrincipalSpec {
            name: "outsider",
            admin: false,
            rules: &[(
                &["publish", "consume", "manage", "dead_letters"],
                &["other.>"],
            )],
        },
    ]
}

/// The principal holding exactly what `need` asks for on `t.>`.
fn with(need: Need) -> &'static str {
    match need {
        Need::Do(Action::Publish) => "publisher",
        Need::Do(Action::Consume) => "consumer",
        Need::Do(Action::Manage) => "manager",
        Need::Do(Action::DeadLetters) => "dlq",
        Need::View => "consumer",
        Need::Admin => "admin",
    }
}

/// A principal without the right: another right on the same topics where
/// there is one, none at all on them for describe calls.
fn without(need: Need) -> &'static str {
    match need {
        Need::Do(Action::Publish) => "consumer",
        Need::Do(Action::Consume) => "publisher",
        Need::Do(Action::Manage) => "dlq",
        Need::Do(Action::DeadLetters) => "manager",
        Need::View => "outsider",
        Need::Admin => "manager",
    }
}

/// What a refusal names.
fn named(need: Need) -> &'static str {
    match need {
        Need::Do(a) => a.name(),
        Need::View => "view",
        Need::Admin => "admin",
    }
}

struct Fixture {
    topic: String,
    ack_ids: Vec<String>,
    /// The admin's open Subscribe holding the leases of `ack_ids`.
    _leases: tonic::Streaming<proto::SubscribeResponse>,
}

fn event(id: &str) -> proto::Event {
    common::event(id)
}

fn group(topic: &str, name: &str) -> proto::Group {
    proto::Group {
        topic: topic.into(),
        name: name.into(),
        start_position: Some(common::earliest()),
        ..Default::default()
    }
}

/// Topic `t.<Method>` with 3 events, group `g` (3 deliveries leased to an
/// open stream) and group `dl` with one dead letter; made by the admin.
async fn fixture(admin: &Transport, method: &str) -> Fixture {
    let topic = format!("t.{}", method.rsplit('/').next().unwrap());
    let mut a = AdminServiceClient::new(admin.clone());
    let mut p = PublisherServiceClient::new(admin.clone());
    let mut s = SubscriberServiceClient::new(admin.clone());
    a.create_topic(proto::CreateTopicRequest {
        topic: Some(proto::Topic {
            name: topic.clone(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    p.publish(proto::PublishRequest {
        topic: topic.clone(),
        events: vec![event("e0"), event("e1"), event("e2")],
    })
    .await
    .unwrap();
    for g in ["g", "dl"] {
        a.create_group(proto::CreateGroupRequest {
            group: Some(group(&topic, g)),
        })
        .await
        .unwrap();
    }
    let mut dl = subscribe(&mut s, &topic, "dl", 1).await;
    let first = common::next_batch(&mut dl, Duration::from_secs(10)).await;
    s.nack(proto::NackRequest {
        ack_ids: vec![first[0].ack_id.clone()],
        dead_letter: true,
        reason: "poison".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    drop(dl);
    let mut leases = subscribe(&mut s, &topic, "g", 3).await;
    let mut ack_ids = Vec::new();
    while ack_ids.len() < 3 {
        let batch = common::next_batch(&mut leases, Duration::from_secs(10)).await;
        ack_ids.extend(batch.into_iter().map(|d| d.ack_id));
    }
    // Let the dead letter and the released leases of `dl` settle.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = a
            .get_group(proto::GetGroupRequest {
                topic: topic.clone(),
                group: "dl".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .group
            .unwrap()
            .stats
            .unwrap();
        if stats.dead_letter_count == 1 && stats.connected_consumers == 0 && stats.in_flight == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fixture did not settle: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Fixture {
        topic,
        ack_ids,
        _leases: leases,
    }
}

/// What the admin sees of `topic` and every topic's name: what a refused
/// call must leave alone.
async fn snapshot(admin: &Transport, topic: &str) -> String {
    let mut a = AdminServiceClient::new(admin.clone());
    let mut d = DeadLetterServiceClient::new(admin.clone());
    let names: Vec<String> = a
        .list_topics(proto::ListTopicsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut out = format!("topics {names:?}\n");
    let Ok(t) = a
        .get_topic(proto::GetTopicRequest { name: topic.into() })
        .await
    else {
        return out + "topic gone";
    };
    let t = t.into_inner().topic.unwrap();
    let stats = t.stats.unwrap();
    out += &format!(
        "dedup {:?} retention {:?} {:?} end {} published {}\n",
        t.dedup_window,
        t.retention_max_age,
        t.retention_max_bytes,
        stats.end_offset,
        stats.published
    );
    let groups = a
        .list_groups(proto::ListGroupsRequest {
            topic: topic.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    for g in groups {
        let s = g.stats.unwrap();
        let dead: Vec<String> = d
            .list_dead_letters(proto::ListDeadLettersRequest {
                topic: topic.into(),
                group: g.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .dead_letters
            .into_iter()
            .map(|x| x.id)
            .collect();
        out += &format!(
            "group {} deadline {:?} acked {} nacked {} in_flight {} backlog {} floor {} dead {:?} consumers {}\n",
            g.name,
            g.ack_deadline,
            s.acked,
            s.nacked,
            s.in_flight,
            s.backlog,
            s.ack_floor,
            dead,
            s.connected_consumers
        );
    }
    out
}

type Kept = Option<Box<dyn Any + Send>>;

fn none<T>(_: T) -> Kept {
    None
}

async fn subscribe(
    s: &mut SubscriberServiceClient<Transport>,
    topic: &str,
    group: &str,
    max_in_flight: u32,
) -> tonic::Streaming<proto::SubscribeResponse> {
    s.subscribe(proto::SubscribeRequest {
        topic: topic.into(),
        group: group.into(),
        consumer: "admin".into(),
        max_in_flight: Some(max_in_flight),
    })
    .await
    .expect("subscribe")
    .into_inner()
}

/// Makes the call of `method` with `ch`; `Ok` carries what must stay open
/// (a stream) until the state is read.
async fn call(method: &str, ch: Transport, fx: &Fixture) -> Result<Kept, Status> {
    let topic = fx.topic.clone();
    let mut p = PublisherServiceClient::new(ch.clone());
    let mut s = SubscriberServiceClient::new(ch.clone());
    let mut a = AdminServiceClient::new(ch.clone());
    let mut d = DeadLetterServiceClient::new(ch);
    let short = method.strip_prefix("herald.v1.").unwrap();
    match short {
        "PublisherService/Publish" => p
            .publish(proto::PublishRequest {
                topic,
                events: vec![event("new")],
            })
            .await
            .map(none),
        "PublisherService/PublishStream" => {
            let request = proto::PublishStreamRequest {
                topic,
                events: vec![event("new")],
                request_id: 7,
            };
            let mut responses = p
                .publish_stream(tokio_stream::iter([request]))
                .await?
                .into_inner();
            let r = responses.next().await.expect("one response")?;
            assert_eq!(r.request_id, 7);
            if r.error_code != 0 {
                return Err(Status::new(Code::from(r.error_code), r.error_message));
            }
            Ok(None)
        }
        "SubscriberService/Subscribe" => {
            let stream = s
                .subscribe(proto::SubscribeRequest {
                    topic,
                    group: "g".into(),
                    consumer: "probe".into(),
                    max_in_flight: Some(1),
                })
                .await?
                .into_inner();
            Ok(Some(Box::new(stream)))
        }
        "SubscriberService/Consume" => {
            // The client's side stays open with the stream: closing it
            // would end the stream and release its lease.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(proto::ConsumeRequest {
                kind: Some(proto::consume_request::Kind::Open(proto::ConsumeOpen {
                    topic,
                    group: "g".into(),
                    consumer: "probe".into(),
                    max_in_flight: Some(1),
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
            let stream = s
                .consume(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            Ok(Some(Box::new((tx, stream))))
        }
        "SubscriberService/Ack" => s
            .ack(proto::AckRequest {
                ack_ids: vec![fx.ack_ids[0].clone()],
            })
            .await
            .map(none),
        "SubscriberService/Nack" => s
            .nack(proto::NackRequest {
                ack_ids: vec![fx.ack_ids[1].clone()],
                delay: Some(common::dur(Duration::from_secs(3600))),
                ..Default::default()
            })
            .await
            .map(none),
        "SubscriberService/ExtendDeadline" => s
            .extend_deadline(proto::ExtendDeadlineRequest {
                ack_ids: vec![fx.ack_ids[2].clone()],
                extension: Some(common::dur(Duration::from_secs(60))),
            })
            .await
            .map(none),
        "SubscriberService/Read" => {
            let mut stream = s
                .read(proto::ReadRequest {
                    topic,
                    max_events: 1,
                    ..Default::default()
                })
                .await?
                .into_inner();
            stream.next().await.expect("a batch")?;
            Ok(None)
        }
        "AdminService/CreateTopic" => a
            .create_topic(proto::CreateTopicRequest {
                topic: Some(proto::Topic {
                    name: format!("{topic}.new"),
                    ..Default::default()
                }),
            })
            .await
            .map(none),
        "AdminService/GetTopic" => a
            .get_topic(proto::GetTopicRequest { name: topic })
            .await
            .map(none),
        "AdminService/ListTopics" => {
            let topics = a.list_topics(proto::ListTopicsRequest::default()).await?;
            let names: Vec<String> = topics
                .into_inner()
                .topics
                .into_iter()
                .map(|t| t.name)
                .collect();
            Ok(Some(Box::new(names)))
        }
        "AdminService/UpdateTopic" => a
            .update_topic(proto::UpdateTopicRequest {
                topic: Some(proto::Topic {
                    name: topic,
                    dedup_window: Some(common::dur(Duration::from_secs(7))),
                    ..Default::default()
                }),
            })
            .await
            .map(none),
        "AdminService/DeleteTopic" => a
            .delete_topic(proto::DeleteTopicRequest { name: topic })
            .await
            .map(none),
        "AdminService/CreateGroup" => a
            .create_group(proto::CreateGroupRequest {
                group: Some(group(&topic, "new")),
            })
            .await
            .map(none),
        "AdminService/GetGroup" => a
            .get_group(proto::GetGroupRequest {
                topic,
                group: "g".into(),
            })
            .await
            .map(none),
        "AdminService/ListGroups" => a
            .list_groups(proto::ListGroupsRequest {
                topic,
                ..Default::default()
            })
            .await
            .map(none),
        "AdminService/UpdateGroup" => a
            .update_group(proto::UpdateGroupRequest {
                group: Some(proto::Group {
                    topic,
                    name: "g".into(),
                    ack_deadline: Some(common::dur(Duration::from_secs(45))),
                    ..Default::default()
                }),
            })
            .await
            .map(none),
        "AdminService/DeleteGroup" => a
            .delete_group(proto::DeleteGroupRequest {
                topic,
                group: "dl".into(),
            })
            .await
            .map(none),
        "AdminService/Seek" => a
            .seek(proto::SeekRequest {
                topic,
                group: "dl".into(),
                position: Some(proto::Position {
                    kind: Some(proto::position::Kind::Edge(proto::Edge::Latest as i32)),
                }),
            })
            .await
            .map(none),
        "AdminService/GetServerInfo" => a
            .get_server_info(proto::GetServerInfoRequest {})
            .await
            .map(none),
        "DeadLetterService/ListDeadLetters" => d
            .list_dead_letters(proto::ListDeadLettersRequest {
                topic,
                group: "dl".into(),
                ..Default::default()
            })
            .await
            .map(none),
        "DeadLetterService/ReplayDeadLetters" => d
            .replay_dead_letters(proto::ReplayDeadLettersRequest {
                topic,
                group: "dl".into(),
                all: true,
                ..Default::default()
            })
            .await
            .map(none),
        "DeadLetterService/PurgeDeadLetters" => d
            .purge_dead_letters(proto::PurgeDeadLettersRequest {
                topic,
                group: "dl".into(),
                all: true,
                ..Default::default()
            })
            .await
            .map(none),
        other => panic!("no case for {other}: add one"),
    }
}

/// Calls that change what [`snapshot`] shows when they succeed (so the
/// "unchanged when refused" checks are not vacuous).
fn changes_state(method: &str) -> bool {
    !["ExtendDeadline", "Read", "/Get", "/List"]
        .iter()
        .any(|m| method.contains(m))
}

#[tokio::test]
async fn every_rpc_refuses_exactly_and_changes_nothing_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let tokens = write_auth_file(&file, &principals());
    let server = SecureServer::start(
        Protection {
            auth_file: Some(file),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let mut channels: HashMap<&str, Transport> = HashMap::new();
    for p in principals() {
        channels.insert(
            p.name,
            server.channel(None, Some(&tokens[p.name])).await.unwrap(),
        );
    }
    let admin = channels["admin"].clone();
    let anonymous = server.channel(None, None).await.unwrap();
    // A real token id with another secret: the hash check refuses it.
    let real = &tokens["admin"];
    let forged = format!("{}{}", &real[..real.len() - 8], "00000000");
    let forged = server.channel(None, Some(&forged)).await.unwrap();

    for rpc in RPCS {
        let fx = fixture(&admin, rpc.method).await;
        let before = snapshot(&admin, &fx.topic).await;
        let refused = [
            ("no credential", anonymous.clone(), Code::Unauthenticated),
            ("bad token", forged.clone(), Code::Unauthenticated),
            (
                "without the right",
                channels[without(rpc.need)].clone(),
                Code::PermissionDenied,
            ),
        ];
        for (case, ch, code) in refused {
            let err = match call(rpc.method, ch, &fx).await {
                // Listing everything is allowed to any principal: it shows
                // only what the caller may see.
                Ok(Some(names)) if rpc.method.ends_with("/ListTopics") => {
                    assert_eq!(case, "without the right");
                    let names = names.downcast::<Vec<String>>().unwrap();
                    assert!(!names.contains(&fx.topic), "{names:?}");
                    continue;
                }
                Ok(_) => panic!("{}: {case}: allowed", rpc.method),
                Err(e) => e,
            };
            assert_eq!(err.code(), code, "{}: {case}: {err:?}", rpc.method);
            if code == Code::PermissionDenied {
                let message = err.message();
                assert!(
                    message.contains(named(rpc.need)),
                    "{}: {message}",
                    rpc.method
                );
                assert!(
                    message.contains(without(rpc.need)),
                    "{}: {message}",
                    rpc.method
                );
            }
            let after = snapshot(&admin, &fx.topic).await;
            assert_eq!(before, after, "{}: {case} changed state", rpc.method);
        }
        let kept = call(rpc.method, channels[with(rpc.need)].clone(), &fx)
            .await
            .unwrap_or_else(|e| panic!("{}: with the right: {e:?}", rpc.method));
        if rpc.method.ends_with("/ListTopics") {
            let names = kept
                .as_ref()
                .and_then(|k| k.downcast_ref::<Vec<String>>())
                .unwrap();
            assert!(names.contains(&fx.topic), "{names:?}");
        }
        if changes_state(rpc.method) {
            let after = snapshot(&admin, &fx.topic).await;
            assert_ne!(
                before, after,
                "{}: the allowed call changed nothing visible",
                rpc.method
            );
        }
        drop(kept);
    }
    server.stop().await;
}
