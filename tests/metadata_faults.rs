//! A failed metadata write is never answered as success (issue 8, finding
//! 3): after a commit of `meta.redb` fails, acks, dead-lettering nacks and
//! admin writes answer UNAVAILABLE, streams end with UNAVAILABLE and health
//! says NOT_SERVING; once the disk works again the server recovers by itself
//! and what it acknowledged afterwards survives a restart.
//!
//! The failure is injected into the store's file backend (a test hook); the
//! same path with a real full disk is in `disk_full.rs`.

mod common;

use std::time::Duration;

use common::*;
use herald::proto;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn wait_for_health(server: &TestServer, want: ServingStatus) {
    let mut health = HealthClient::new(server.channel.clone());
    for _ in 0..100 {
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == want as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health never became {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_metadata_commit_fails_callers_and_recovers_without_restart() {
    let mut server = TestServer::start().await;
    server
        .create_group("orders", "billing", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_n("orders", "o", 10).await;
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "orders", "billing", 10).await;
    let mut batch = Vec::new();
    while batch.len() < 10 {
        batch.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    let acked_before: Vec<String> = batch[..2].iter().map(|d| d.ack_id.clone()).collect();
    assert_eq!(ack(&mut sub, acked_before).await.acked_count, 2);
    // Let those two acks be written.
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.broker().inject_metadata_write_failures(true);
    // The next write fails: an ack makes the group flush.
    let _ = sub
        .ack(proto::AckRequest {
            ack_ids: vec![batch[2].ack_id.clone()],
        })
        .await;
    wait_for_health(&server, ServingStatus::NotServing).await;

    let err = sub
        .ack(proto::AckRequest {
            ack_ids: vec![batch[3].ack_id.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let err = sub
        .nack(proto::NackRequest {
            ack_ids: vec![batch[4].ack_id.clone()],
            dead_letter: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let err = server
        .admin()
        .create_topic(proto::CreateTopicRequest {
            topic: Some(proto::Topic {
                name: "later".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(!err.message().contains("/tmp"), "no server paths: {err:?}");
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended with OK"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");

    // The disk works again: no restart needed.
    server.broker().inject_metadata_write_failures(false);
    wait_for_health(&server, ServingStatus::Serving).await;
    let mut stream = subscribe(&mut sub, "orders", "billing", 10).await;
    let mut again = Vec::new();
    while again.len() < 7 {
        again.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    // At least the 7 never acknowledged (the third ack may or may not have
    // been written), each a redelivery.
    assert!(again.len() <= 8, "{}", again.len());
    assert!(again.iter().all(|d| d.delivery_attempt >= 2));
    let ids: Vec<String> = again.iter().map(|d| d.ack_id.clone()).collect();
    assert_eq!(ack(&mut sub, ids).await.acked_count as usize, again.len());
    server
        .admin()
        .create_topic(proto::CreateTopicRequest {
            topic: Some(proto::Topic {
                name: "later".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("admin writes work again");
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    server.restart().await;
    assert_eq!(server.group_stats("orders", "billing").await.backlog, 0);
}
