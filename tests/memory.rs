//! Memory is bounded in bytes (issue 8, finding 6): a `herald serve` child
//! process is given 1 MiB events, consumers that never read, dead-letter
//! paging and a seven-day dedup window, and its peak resident memory
//! (`VmHWM` in `/proc`) stays under the documented budget.
//!
//! Budget here: tail caches 64 MiB, groups 128 MiB, plus the dedup index
//! and the process's own baseline, all under 448 MiB.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::child::ChildServer;
use herald::proto;
use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::dead_letter_service_client::DeadLetterServiceClient;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use tonic::transport::Channel;

const MIB: usize = 1 << 20;
const BUDGET_MIB: u64 = 448;

async fn create_group(channel: &Channel, topic: &str, name: &str, max_attempts: u32) {
    AdminServiceClient::new(channel.clone())
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: topic.into(),
                name: name.into(),
                start_position: Some(proto::Position {
                    kind: Some(proto::position::Kind::Edge(proto::Edge::Earliest as i32)),
                }),
                max_delivery_attempts: Some(max_attempts),
                ..Default::default()
            }),
        })
        .await
        .expect("create group");
}

async fn subscribe(
    channel: &Channel,
    topic: &str,
    group: &str,
) -> tonic::Streaming<proto::SubscribeResponse> {
    SubscriberServiceClient::new(channel.clone())
        .subscribe(proto::SubscribeRequest {
            topic: topic.into(),
            group: group.into(),
            consumer: "never-reads".into(),
            max_in_flight: Some(1000),
        })
        .await
        .expect("subscribe")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(
        dir.path(),
        &[
            ("HERALD_STORAGE__FSYNC", "never"),
            ("HERALD_STORAGE__TAIL_CACHE_TOTAL_BYTES", "67108864"),
            ("HERALD_LIMITS__GROUPS_MEMORY_BYTES", "134217728"),
            ("HERALD_GROUPS__MAX_BUFFERED_BYTES", "67108864"),
            ("HERALD_TOPICS__DEDUP_WINDOW", "7days"),
        ],
        &[],
    );
    let channel = server.channel().await;
    for g in ["a", "b", "c"] {
        create_group(&channel, "big", g, 5).await;
    }
    create_group(&channel, "big", "dlq", 1).await;

    // 400 events of 1 MiB.
    let mut publisher = PublisherServiceClient::new(channel.clone())
        .max_decoding_message_size(64 * MIB)
        .max_encoding_message_size(64 * MIB);
    for batch in 0..80 {
        publisher
            .publish(proto::PublishRequest {
                topic: "big".into(),
                events: (0..5)
                    .map(|i| proto::Event {
                        id: format!("big-{batch}-{i}"),
                        r#type: "Big".into(),
                        data: Bytes::from(vec![b'x'; MIB - 1024]),
                        ..Default::default()
                    })
                    .collect(),
            })
            .await
            .expect("publish 1 MiB events");
    }

    eprintln!("published; rss {} MiB", server.status_kib("VmRSS") / 1024);
    // Three groups whose consumers never read, each on its own connection
    // (a stream that is not read stops its whole HTTP/2 connection once the
    // connection's flow-control window is full).
    let mut idle_streams = Vec::new();
    for g in ["a", "b", "c"] {
        let own = server.channel().await;
        idle_streams.push(subscribe(&own, "big", g).await);
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "idle consumers; rss {} MiB",
        server.status_kib("VmRSS") / 1024
    );
    // 100 dead letters of 1 MiB, then paging through them.
    let mut dlq = subscribe(&channel, "big", "dlq").await;
    let mut sub = SubscriberServiceClient::new(channel.clone());
    let mut dead = 0;
    while dead < 100 {
        let batch = tokio::time::timeout(Duration::from_secs(30), dlq.message())
            .await
            .expect("deliveries")
            .expect("stream")
            .expect("open")
            .deliveries;
        let ids: Vec<String> = batch
            .into_iter()
            .take(100 - dead)
            .map(|d| d.ack_id)
            .collect();
        dead += ids.len();
        sub.nack(proto::NackRequest {
            ack_ids: ids,
            dead_letter: true,
            reason: "memory test".into(),
            ..Default::default()
        })
        .await
        .expect("nack");
    }
    drop(dlq);
    let mut dl = DeadLetterServiceClient::new(channel.clone());
    for _ in 0..5 {
        let page = dl
            .list_dead_letters(proto::ListDeadLettersRequest {
                topic: "big".into(),
                group: "dlq".into(),
                page_size: 1,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert_eq!(page.dead_letters.len(), 1);
    }
    let mut token = String::new();
    let mut listed = 0;
    loop {
        let page = dl
            .list_dead_letters(proto::ListDeadLettersRequest {
                topic: "big".into(),
                group: "dlq".into(),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        listed += page.dead_letters.len();
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(listed >= 100, "{listed}");

    // 300,000 client ids inside a seven-day dedup window.
    for batch in 0..300 {
        publisher
            .publish(proto::PublishRequest {
                topic: "ids".into(),
                events: (0..1000)
                    .map(|i| proto::Event {
                        id: format!("0192e0a4-7c1b-7d3e-9f00-{batch:06}{i:06}"),
                        r#type: "Small".into(),
                        ..Default::default()
                    })
                    .collect(),
            })
            .await
            .expect("publish small events");
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let peak = server.status_kib("VmHWM") / 1024;
    let now = server.status_kib("VmRSS") / 1024;
    eprintln!("peak RSS {peak} MiB, now {now} MiB (budget {BUDGET_MIB} MiB)");
    assert!(
        peak < BUDGET_MIB,
        "peak RSS {peak} MiB is over the {BUDGET_MIB} MiB budget"
    );
    drop(idle_streams);
}
