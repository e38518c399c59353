//! Group filters, start positions and Seek, and history reads.

mod common;

use std::time::Duration;

use common::*;
use herald::proto;
use tokio_stream::StreamExt;

fn typed(id: &str, t: &str) -> proto::Event {
    proto::Event {
        r#type: t.into(),
        ..event(id)
    }
}

async fn group_with_filter(server: &TestServer, name: &str, types: &[&str], patterns: &[&str]) {
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "events".into(),
                name: name.into(),
                start_position: Some(earliest()),
                filter: Some(proto::Filter {
                    types: types.iter().map(|s| s.to_string()).collect(),
                    patterns: patterns.iter().map(|s| s.to_string()).collect(),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

async fn drain_ids(server: &TestServer, group: &str, expect: usize) -> Vec<String> {
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "events", group, 100).await;
    let mut got = Vec::new();
    while got.len() < expect {
        let batch = next_batch(&mut stream, Duration::from_secs(5)).await;
        got.extend(ids(&batch));
        ack(
            &mut client,
            batch.iter().map(|d| d.ack_id.clone()).collect(),
        )
        .await;
    }
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(300))
            .await
            .is_none(),
        "{group}: nothing else"
    );
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_form_delivers_only_what_matches() {
    let server = TestServer::start().await;
    group_with_filter(&server, "exact", &["OrderPlaced"], &[]).await;
    group_with_filter(&server, "star", &[], &["Order.*"]).await;
    group_with_filter(&server, "hash", &[], &["Order.#"]).await;
    group_with_filter(&server, "rest", &[], &["Order.>"]).await;
    group_with_filter(&server, "mixed", &["UserCreated"], &["*.Failed"]).await;
    group_with_filter(&server, "all", &[], &[]).await;
    let events = vec![
        typed("1", "OrderPlaced"),
        typed("2", "Order.Placed"),
        typed("3", "Order.Placed.V2"),
        typed("4", "Order"),
        typed("5", "UserCreated"),
        typed("6", "Payment.Failed"),
        typed("7", "Nobody.Wants.This"),
    ];
    server.publish_events("events", events).await;
    assert_eq!(drain_ids(&server, "exact", 1).await, vec!["1"]);
    assert_eq!(drain_ids(&server, "star", 1).await, vec!["2"]);
    assert_eq!(drain_ids(&server, "hash", 3).await, vec!["2", "3", "4"]);
    assert_eq!(drain_ids(&server, "rest", 2).await, vec!["2", "3"]);
    assert_eq!(drain_ids(&server, "mixed", 2).await, vec!["5", "6"]);
    assert_eq!(drain_ids(&server, "all", 7).await.len(), 7);
    let stats = server.group_stats("events", "exact").await;
    assert_eq!(
        (stats.filtered, stats.backlog, stats.ack_floor),
        (6, 0, 7),
        "skipped events are counted, not delivered"
    );
    let err = server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "events".into(),
                name: "bad".into(),
                filter: Some(proto::Filter {
                    types: vec![],
                    patterns: vec!["Order.>.X".into()],
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("group.filter.patterns[0]"),
        "{}",
        err.message()
    );
    server.stop().await;
}

async fn seek(server: &TestServer, position: proto::position::Kind) -> u64 {
    server
        .admin()
        .seek(proto::SeekRequest {
            topic: "events".into(),
            group: "g".into(),
            position: Some(proto::Position {
                kind: Some(position),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_to_earliest_time_and_latest() {
    let server = TestServer::start().await;
    server.publish_n("events", "old", 5).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.publish_n("events", "new", 3).await;
    // A group created at "latest" sees nothing of the backlog.
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "events".into(),
                name: "g".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "events", "g", 100).await;
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(300))
            .await
            .is_none(),
        "latest skips the backlog"
    );
    drop(stream);

    use proto::position::Kind;
    assert_eq!(
        seek(&server, Kind::Edge(proto::Edge::Earliest as i32)).await,
        0
    );
    assert_eq!(
        drain_ids(&server, "g", 8).await.len(),
        8,
        "earliest replays everything"
    );
    let ts = prost_types::Timestamp {
        seconds: middle.as_secs() as i64,
        nanos: middle.subsec_nanos() as i32,
    };
    assert_eq!(seek(&server, Kind::Time(ts)).await, 5);
    assert_eq!(
        drain_ids(&server, "g", 3).await,
        vec!["new-0", "new-1", "new-2"],
        "time replays from there"
    );
    assert_eq!(seek(&server, Kind::Offset(6)).await, 6);
    assert_eq!(drain_ids(&server, "g", 2).await, vec!["new-1", "new-2"]);
    assert_eq!(
        seek(&server, Kind::Edge(proto::Edge::Latest as i32)).await,
        8
    );
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "events", "g", 100).await;
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(300))
            .await
            .is_none()
    );
    let err = server
        .admin()
        .seek(proto::SeekRequest {
            topic: "events".into(),
            group: "g".into(),
            position: Some(proto::Position {
                kind: Some(Kind::Offset(99)),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_history_with_filter_and_follow() {
    let server = TestServer::start().await;
    let events = vec![
        typed("a", "Order.Placed"),
        typed("b", "User.Created"),
        typed("c", "Order.Shipped"),
    ];
    server.publish_events("events", events).await;
    let mut client = server.subscriber();
    let read = |start: Option<proto::read_request::Start>, types: Vec<&str>, follow: bool| {
        proto::ReadRequest {
            topic: "events".into(),
            start,
            types: types.into_iter().map(String::from).collect(),
            follow,
            max_events: 0,
        }
    };
    let mut stream = client
        .read(read(None, vec![], false))
        .await
        .unwrap()
        .into_inner();
    let mut all = Vec::new();
    while let Some(batch) = stream.next().await {
        all.extend(batch.unwrap().events.into_iter().map(|e| (e.id, e.offset)));
    }
    assert_eq!(
        all,
        vec![
            ("a".to_string(), 0),
            ("b".to_string(), 1),
            ("c".to_string(), 2)
        ]
    );

    let mut stream = client
        .read(read(
            Some(proto::read_request::Start::Offset(1)),
            vec!["Order.*"],
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(
        first
            .events
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        vec!["c"]
    );
    server
        .publisher()
        .publish(proto::PublishRequest {
            topic: "events".into(),
            events: vec![typed("d", "User.Deleted"), typed("e", "Order.Paid")],
        })
        .await
        .unwrap();
    let live = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        live.events
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        vec!["e"],
        "follows the tail, filtered"
    );

    let err = client
        .read(read(None, vec!["Order..X"], false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .read(proto::ReadRequest {
            topic: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    server.stop().await;
}
