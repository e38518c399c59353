//! SubscriberService.Consume: a bad request ends the stream (a bad open
//! request fails the call) with INVALID_ARGUMENT naming the field, and
//! changes nothing. Runs on both backends (`redis_semantics.rs` includes
//! this file).

mod common;

use std::time::Duration;

use common::consume::*;
use common::*;
use herald::proto;
use herald::proto::consume_request::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_open_request_fails_the_call_naming_the_field() {
    let server = TestServer::start().await;
    let opening = |open: proto::ConsumeOpen| vec![request(Kind::Open(open))];
    let cases: Vec<(&str, Vec<proto::ConsumeRequest>)> = vec![
        // Nothing opens the stream.
        ("open", vec![]),
        ("open", vec![request(ack_of(vec!["x".into()], 1, false))]),
        ("open", vec![proto::ConsumeRequest { kind: None }]),
        (
            "open.group",
            opening(proto::ConsumeOpen {
                group: "bad name!".into(),
                ..open("t", "g")
            }),
        ),
        (
            "open.max_in_flight",
            opening(proto::ConsumeOpen {
                max_in_flight: Some(0),
                ..open("t", "g")
            }),
        ),
        (
            "open.max_batch",
            opening(proto::ConsumeOpen {
                max_batch: Some(0),
                ..open("t", "g")
            }),
        ),
        (
            "open.max_batch_bytes",
            opening(proto::ConsumeOpen {
                max_batch_bytes: Some(0),
                ..open("t", "g")
            }),
        ),
    ];
    for (want, first) in cases {
        // The client's side closes after these requests.
        let (tx, rx) = mpsc::channel(4);
        for r in first {
            tx.send(r).await.unwrap();
        }
        drop(tx);
        let status = match server.subscriber().consume(ReceiverStream::new(rx)).await {
            Err(status) => status,
            Ok(response) => {
                let mut rx = response.into_inner();
                rx.message().await.expect_err("the stream fails")
            }
        };
        assert_eq!(field(&status), want, "{status:?}");
    }
    // Nothing was created by the refused opens.
    let groups = server
        .admin()
        .list_groups(proto::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert!(groups.is_empty(), "{groups:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_ends_the_stream_with_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let lease = Duration::from_secs(30);
    // Released leases count as attempts: never dead-letter here.
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "t".into(),
                name: "g".into(),
                start_position: Some(earliest()),
                max_delivery_attempts: Some(0),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    server
        .create_group("t", "other", lease, Duration::ZERO)
        .await;
    server.publish_n("t", "e", 1).await;
    // An ack id of another group of the same topic.
    let mut other = consume(&server, open("t", "other")).await;
    let foreign = other.batch().await[0].ack_id.clone();
    let extend = |ack_ids: Vec<String>, extension| {
        Kind::Extend(proto::ConsumeExtend {
            ack_ids,
            extension,
            ..Default::default()
        })
    };
    let nack = |ack_ids: Vec<String>, delay, reason: &str| {
        Kind::Nack(proto::ConsumeNack {
            ack_ids,
            delay,
            reason: reason.into(),
            ..Default::default()
        })
    };
    type Bad = Box<dyn Fn(&str) -> Option<Kind>>;
    let foreign2 = foreign.clone();
    let cases: Vec<(&str, Bad)> = vec![
        ("open", Box::new(|_| Some(Kind::Open(open("t", "g"))))),
        ("kind", Box::new(|_| None)),
        ("ack.ack_ids", Box::new(|_| Some(ack_of(vec![], 1, true)))),
        (
            "ack.ack_ids[1]",
            Box::new(|id| Some(ack_of(vec![id.into(), "not-an-ack-id".into()], 1, true))),
        ),
        (
            "ack.ack_ids[1]",
            Box::new(move |id| Some(ack_of(vec![id.into(), foreign2.clone()], 1, true))),
        ),
        (
            "nack.ack_ids",
            Box::new(move |_| Some(nack(vec![], None, ""))),
        ),
        (
            "nack.delay",
            Box::new(move |id| {
                let negative = prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                };
                Some(nack(vec![id.into()], Some(negative), ""))
            }),
        ),
        (
            "nack.reason",
            Box::new(move |id| Some(nack(vec![id.into()], None, &"r".repeat(2000)))),
        ),
        (
            "extend.extension",
            Box::new(move |id| Some(extend(vec![id.into()], None))),
        ),
        (
            "extend.extension",
            Box::new(move |id| {
                Some(extend(
                    vec![id.into()],
                    Some(dur(Duration::from_secs(7200))),
                ))
            }),
        ),
        (
            "extend.ack_ids[0]",
            Box::new(move |_| Some(extend(vec!["1-2-3-4".into()], Some(dur(lease))))),
        ),
    ];
    let mut attempt = 0;
    for (want, bad) in cases {
        let mut c = consume(&server, open("t", "g")).await;
        let d = c.batch().await;
        attempt += 1;
        // Each stream's lease was released when the one before ended.
        assert_eq!(d[0].delivery_attempt, attempt, "{want}");
        let kind = bad(&d[0].ack_id);
        c.tx.as_ref()
            .unwrap()
            .send(proto::ConsumeRequest { kind })
            .await
            .unwrap();
        let status = c.end().await.unwrap_err();
        assert_eq!(field(&status), want, "{status:?}");
    }
    // A request refused whole changes nothing: the event was never acked.
    let stats = server.group_stats("t", "g").await;
    assert_eq!((stats.acked, stats.nacked), (0, 0));
    drop(other);
    server.stop().await;
}
