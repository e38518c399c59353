//! Every stream ends with a status that says why (issue 8, finding 7):
//! deleting a group or topic ends its Subscribe streams with NOT_FOUND (so a
//! reconnecting consumer does not silently re-create the group at `latest`),
//! a following Read of a deleted topic ends with NOT_FOUND instead of hanging,
//! and shutdown ends streams with UNAVAILABLE.

mod common;

use std::time::Duration;

use common::*;
use herald::proto;
use tonic::Code;

/// The status a stream ends with, failing after `within`.
async fn end_status<T>(stream: &mut tonic::Streaming<T>, within: Duration) -> tonic::Status {
    loop {
        match tokio::time::timeout(within, stream.message()).await {
            Err(_) => panic!("the stream did not end within {within:?}"),
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended with OK"),
            Ok(Err(status)) => return status,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_group_ends_its_streams_with_not_found() {
    let server = TestServer::start().await;
    server.publish_n("orders", "e", 1).await;
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "orders", "billing", 10).await;
    server
        .admin()
        .delete_group(proto::DeleteGroupRequest {
            topic: "orders".into(),
            group: "billing".into(),
        })
        .await
        .unwrap();
    let status = end_status(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("was deleted"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_ends_subscribe_and_follow_read_with_not_found() {
    let server = TestServer::start().await;
    server.publish_n("orders", "e", 1).await;
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "orders", "billing", 10).await;
    let mut read = sub
        .read(proto::ReadRequest {
            topic: "orders".into(),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = read.message().await.unwrap().unwrap();
    assert_eq!(first.events.len(), 1);
    server
        .admin()
        .delete_topic(proto::DeleteTopicRequest {
            name: "orders".into(),
        })
        .await
        .unwrap();
    let status = end_status(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = end_status(&mut read, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("was deleted"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_with_unavailable() {
    let server = TestServer::start().await;
    server.publish_n("orders", "e", 1).await;
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "orders", "billing", 10).await;
    let stopping = tokio::spawn(server.stop());
    let status = end_status(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    stopping.await.unwrap();
}
