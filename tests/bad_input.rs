//! Bad requests get a precise status and change nothing.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::raw;
use common::*;
use herald::proto;
use tonic::Code;
use tonic_types::StatusExt;

async fn topic_names(server: &TestServer) -> Vec<String> {
    server
        .admin()
        .list_topics(proto::ListTopicsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_sizes_and_ack_ids_are_rejected_without_effect() {
    let server = TestServer::start_with(|c| {
        c.limits.max_event_bytes = 1024;
        c.limits.max_request_bytes = 4096;
    })
    .await;
    server.publish_n("good", "g", 3).await;
    let mut publisher = server.publisher();

    let long = "x".repeat(10_000);
    for (name, why) in [
        ("", "empty"),
        (long.as_str(), "overlong"),
        ("bad/name", "illegal"),
        ("sp ace", "illegal"),
    ] {
        let err = publisher
            .publish(proto::PublishRequest {
                topic: name.into(),
                events: vec![event("a")],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{why} topic name");
        assert!(err.message().starts_with("topic: "), "{}", err.message());
        assert!(
            err.message().len() < 300,
            "long input is truncated in the message"
        );
        let mut sub = server.subscriber();
        let err = sub
            .subscribe(proto::SubscribeRequest {
                topic: "good".into(),
                group: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{why} group name");
    }

    // Oversized event: the message and the field details name events[1].data.
    let big = proto::Event {
        data: Bytes::from(vec![0u8; 2000]),
        ..event("big")
    };
    let err = publisher
        .publish(proto::PublishRequest {
            topic: "good".into(),
            events: vec![event("ok"), big],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("events[1].data:"),
        "{}",
        err.message()
    );
    let details = err.get_error_details();
    assert_eq!(
        details.bad_request().unwrap().field_violations[0].field,
        "events[1].data"
    );

    // Oversized request: five events of ~1000 bytes exceed 4096.
    let chunky: Vec<proto::Event> = (0..5)
        .map(|i| proto::Event {
            data: Bytes::from(vec![1u8; 900]),
            ..event(&format!("c{i}"))
        })
        .collect();
    let err = publisher
        .publish(proto::PublishRequest {
            topic: "good".into(),
            events: chunky,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("events: request of"),
        "{}",
        err.message()
    );

    // Empty batch, missing type, overlong id.
    for (events, field) in [
        (vec![], "events"),
        (
            vec![proto::Event {
                r#type: String::new(),
                ..event("x")
            }],
            "events[0].type",
        ),
        (
            vec![proto::Event {
                id: "i".repeat(300),
                ..event("x")
            }],
            "events[0].id",
        ),
    ] {
        let err = publisher
            .publish(proto::PublishRequest {
                topic: "good".into(),
                events,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "{}",
            err.message()
        );
    }

    // A genuine ack id, of a group deleted right after (so it is known to
    // be well-formed and signed, and acts on nothing).
    server
        .create_group("good", "probe", Duration::from_secs(30), Duration::ZERO)
        .await;
    let mut sub = server.subscriber();
    let valid = {
        let mut stream = subscribe(&mut sub, "good", "probe", 1).await;
        next_batch(&mut stream, Duration::from_secs(5)).await[0]
            .ack_id
            .clone()
    };
    server
        .admin()
        .delete_group(proto::DeleteGroupRequest {
            topic: "good".into(),
            group: "probe".into(),
        })
        .await
        .unwrap();

    // Malformed, forged or guessed ack ids: the whole call is rejected,
    // naming the index.
    for bad in ["1-1-0-1", "1-1-0-1-0000000000000000"] {
        let err = sub
            .ack(proto::AckRequest {
                ack_ids: vec![bad.into()],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    for bad in ["", "nope", "1-2-3", "zz-1-1-1", &long] {
        let err = sub
            .ack(proto::AckRequest {
                ack_ids: vec![valid.clone(), bad.to_string()],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:.20}");
        assert!(
            err.message().starts_with("ack_ids[1]:"),
            "{}",
            err.message()
        );
    }
    // Ids of a group that is gone are reported, not errors.
    let resp = sub
        .ack(proto::AckRequest {
            ack_ids: vec![valid.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results[0].outcome, proto::LeaseOutcome::Unknown as i32);
    // Negative nack delay and a zero extension.
    let err = sub
        .nack(proto::NackRequest {
            ack_ids: vec![valid.clone()],
            delay: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("delay:"), "{}", err.message());
    let err = sub
        .extend_deadline(proto::ExtendDeadlineRequest {
            ack_ids: vec![valid.clone()],
            extension: Some(dur(Duration::ZERO)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Bad group settings.
    let err = server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "good".into(),
                name: "g".into(),
                retry_policy: Some(proto::RetryPolicy {
                    multiplier: Some(0.1),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("group.retry_policy.multiplier:"),
        "{}",
        err.message()
    );
    let err = server
        .admin()
        .create_topic(proto::CreateTopicRequest {
            topic: Some(proto::Topic {
                name: "good".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // Nothing changed.
    assert_eq!(topic_names(&server).await, vec!["good".to_string()]);
    assert_eq!(server.end_offset("good").await, 3);
    let groups = server
        .admin()
        .list_groups(proto::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(groups.groups.is_empty(), "{:?}", groups.groups);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_with_auto_create_off_is_not_found() {
    let server = TestServer::start_with(|c| c.auto_create = false).await;
    let err = server
        .publisher()
        .publish(proto::PublishRequest {
            topic: "nope".into(),
            events: vec![event("a")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("\"nope\""), "{}", err.message());
    let err = server
        .subscriber()
        .subscribe(proto::SubscribeRequest {
            topic: "nope".into(),
            group: "g".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    server
        .admin()
        .create_topic(proto::CreateTopicRequest {
            topic: Some(proto::Topic {
                name: "yes".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let err = server
        .subscriber()
        .subscribe(proto::SubscribeRequest {
            topic: "yes".into(),
            group: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "groups are not auto-created either"
    );
    assert_eq!(topic_names(&server).await, vec!["yes".to_string()]);
    assert_eq!(server.end_offset("yes").await, 0);
    server.stop().await;
}

const PUBLISH: &str = "/herald.v1.PublisherService/Publish";
const PUBLISH_STREAM: &str = "/herald.v1.PublisherService/PublishStream";

/// A frame header announcing a message of `len` bytes, followed by only a
/// few of them: enough for the server to judge the size.
fn announce(len: u32) -> Bytes {
    let mut b = Vec::from([0u8]);
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&[0u8; 64]);
    Bytes::from(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_undecodable_messages_get_resource_exhausted_and_invalid_argument() {
    let server = TestServer::start_with(|c| {
        c.limits.max_event_bytes = 1024;
        c.limits.max_request_bytes = 4096;
    })
    .await;

    // Over the decoding limit (max_request_bytes + 1 MiB for Publish and
    // Subscribe, tonic's 4 MiB elsewhere), from an ordinary client: unary
    // and server-streaming calls, in two services.
    let huge = Bytes::from(vec![7u8; 2 << 20]);
    let err = server
        .publisher()
        .publish(proto::PublishRequest {
            topic: "good".into(),
            events: vec![proto::Event {
                data: huge,
                ..event("huge")
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("too large"), "{}", err.message());
    let err = server
        .subscriber()
        .subscribe(proto::SubscribeRequest {
            topic: "t".repeat(2 << 20),
            group: "g".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    let err = server
        .admin()
        .create_topic(proto::CreateTopicRequest {
            topic: Some(proto::Topic {
                name: "t".repeat(5 << 20),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());

    // Bodies that are not the request message, over raw HTTP/2, in every
    // service (health included).
    let mut conn = raw::connect(server.addr()).await;
    let garbage = raw::frame(b"\xff\xff\xff\xff\xff");
    for path in [
        PUBLISH,
        "/herald.v1.SubscriberService/Subscribe",
        "/herald.v1.SubscriberService/Ack",
        "/herald.v1.AdminService/ListTopics",
        "/herald.v1.DeadLetterService/ListDeadLetters",
        "/grpc.health.v1.Health/Check",
    ] {
        let (code, message) = conn.call(path, garbage.clone()).await.code().await;
        assert_eq!(code, Code::InvalidArgument, "{path}: {message}");
        assert!(message.contains("decode"), "{path}: {message}");
    }
    // A message cut short by the end of the body, and none at all.
    let whole = raw::encode(&proto::PublishRequest {
        topic: "good".into(),
        events: vec![event("cut")],
    });
    for body in [whole.slice(..whole.len() - 3), Bytes::new()] {
        let (code, message) = conn.call(PUBLISH, body).await.code().await;
        assert_eq!(code, Code::InvalidArgument, "{message}");
    }
    // A raw frame announcing too large a message is judged by its header.
    let (code, message) = conn.call(PUBLISH, announce(2 << 20)).await.code().await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");

    assert!(topic_names(&server).await.is_empty(), "nothing was stored");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_message_mid_publish_stream_answers_the_earlier_requests_then_ends_with_its_code() {
    let server = TestServer::start_with(|c| {
        c.limits.max_event_bytes = 1024;
        c.limits.max_request_bytes = 4096;
    })
    .await;
    // Enough requests that many still await their append when the bad
    // message arrives.
    const REQUESTS: u64 = 50;
    let mut conn = raw::connect(server.addr()).await;
    for (bad, code, what) in [
        (raw::frame(b"\xff\xff\xff"), Code::InvalidArgument, "decode"),
        (announce(2 << 20), Code::ResourceExhausted, "too large"),
    ] {
        let (mut requests, response) = conn.start(PUBLISH_STREAM).await;
        for id in 1..=REQUESTS {
            let request = proto::PublishStreamRequest {
                topic: "s".into(),
                events: vec![event(&format!("{what}-{id}"))],
                request_id: id,
            };
            requests.send_data(raw::encode(&request), false).unwrap();
        }
        // The client goes on as if nothing happened: the request stream
        // stays open after the bad message.
        requests.send_data(bad, false).unwrap();
        let (messages, status) = tokio::time::timeout(Duration::from_secs(10), response.finish())
            .await
            .expect("the stream ends");
        let answered: Vec<(u64, i32, usize)> = messages
            .iter()
            .map(|m| {
                let r =
                    <proto::PublishStreamResponse as prost::Message>::decode(m.clone()).unwrap();
                (r.request_id, r.error_code, r.results.len())
            })
            .collect();
        let expected: Vec<(u64, i32, usize)> = (1..=REQUESTS).map(|id| (id, 0, 1)).collect();
        assert_eq!(
            answered, expected,
            "every earlier request is answered, in order ({what})"
        );
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(what), "{}", status.message());
    }
    assert_eq!(server.end_offset("s").await, 2 * REQUESTS);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_stream_answers_every_request_in_order_and_a_refused_one_alone() {
    let server = TestServer::start().await;
    // More requests than may wait for their answer at once, over three
    // topics, sent without waiting; every 97th names no valid topic.
    const REQUESTS: u64 = 700;
    let requests: Vec<proto::PublishStreamRequest> = (0..REQUESTS)
        .map(|id| proto::PublishStreamRequest {
            topic: if id % 97 == 50 {
                "not a name!".into()
            } else {
                format!("p{}", id % 3)
            },
            events: vec![event(&format!("{id}-a")), event(&format!("{id}-b"))],
            request_id: id,
        })
        .collect();
    let mut responses = server
        .publisher()
        .publish_stream(tokio_stream::iter(requests))
        .await
        .expect("publish stream")
        .into_inner();
    let mut next = [0u64; 3];
    let mut answered = 0;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(30), responses.message())
        .await
        .expect("answers in time")
        .expect("the stream ends OK")
    {
        assert_eq!(r.request_id, answered, "answers come in request order");
        if r.request_id % 97 == 50 {
            assert_eq!(r.error_code, Code::InvalidArgument as i32, "{}", r.error_message);
            assert!(r.results.is_empty());
        } else {
            assert_eq!(r.error_code, 0, "{}", r.error_message);
            let topic = (r.request_id % 3) as usize;
            let offsets: Vec<u64> = r.results.iter().map(|x| x.offset).collect();
            assert_eq!(offsets, [next[topic], next[topic] + 1], "offsets follow requests");
            next[topic] += 2;
        }
        answered += 1;
    }
    assert_eq!(answered, REQUESTS);
    for (topic, end) in next.iter().enumerate() {
        assert_eq!(server.end_offset(&format!("p{topic}")).await, *end);
        let events = read_events(server.channel.clone(), &format!("p{topic}"), 0, 0).await;
        let ids: Vec<String> = events.into_iter().map(|e| e.id).collect();
        let sent: Vec<String> = (0..REQUESTS)
            .filter(|id| id % 3 == topic as u64 && id % 97 != 50)
            .flat_map(|id| [format!("{id}-a"), format!("{id}-b")])
            .collect();
        assert_eq!(ids, sent, "p{topic} holds its requests' events in order");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_stream_whose_answers_are_not_read_does_not_hold_up_its_topic() {
    let server = TestServer::start().await;
    // A flow control window smaller than one answer: once the server has
    // answered a request, it may send (and polls) the call no more.
    let mut conn = raw::connect_with_window(server.addr(), 64).await;
    let (mut requests, _unread) = conn.start(PUBLISH_STREAM).await;
    let mut publisher = server.publisher();
    for round in 0..40u64 {
        for id in 0..4u64 {
            let request = proto::PublishStreamRequest {
                topic: "shared".into(),
                events: (0..1000).map(|n| event(&format!("{round}-{id}-{n}"))).collect(),
                request_id: round * 4 + id,
            };
            requests.send_data(raw::encode(&request), false).unwrap();
        }
        let publish = publisher.publish(proto::PublishRequest {
            topic: "shared".into(),
            events: vec![event(&format!("unary-{round}"))],
        });
        tokio::time::timeout(Duration::from_secs(5), publish)
            .await
            .unwrap_or_else(|_| panic!("round {round}: a publish to the topic was held up"))
            .expect("publish");
    }
    // The stream was held up by its unread answers, its topic was not.
    assert!(server.end_offset("shared").await < 40 * 4 * 1000);
    drop((requests, conn));
    server.stop().await;
}
