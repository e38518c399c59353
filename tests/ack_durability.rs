//! `ack_durability` (issue 11, item 2): an ack answered for a `sync` group
//! (by unary Ack or by a Consume confirmation) is never redelivered, even when the process holding the progress dies
//! by `kill -9` right after the answer. On the embedded backend a
//! `batched` group beside it, killed at the same moment, redelivers its
//! acked events (the flush interval is 30 s): the control that shows the
//! kill landed before a batch flush. On Redis every ack is written by its
//! script before it is answered, so both modes survive Redis's own
//! `kill -9` with `appendfsync always`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::child::ChildServer;
use common::consume::{ack_ids, ack_of, open, request};
use common::redis::RedisServer;
use common::*;
use herald::proto;
use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::consume_request::Kind;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use tonic::transport::Channel;

const EVENTS: usize = 200;

async fn create_group(channel: Channel, group: &str, mode: proto::AckDurability) {
    let created = AdminServiceClient::new(channel)
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "orders".into(),
                name: group.into(),
                start_position: Some(earliest()),
                ack_durability: mode.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create group")
        .into_inner()
        .group
        .unwrap();
    assert_eq!(created.ack_durability(), mode, "stored as asked");
}

/// Consumes all `EVENTS` events of `group` and acks each batch (unary
/// Ack, every answer checked), then returns.
async fn consume_and_ack(channel: Channel, group: &str) {
    let mut sub = SubscriberServiceClient::new(channel);
    let mut stream = subscribe(&mut sub, "orders", group, 64).await;
    let mut seen = 0;
    while seen < EVENTS {
        let batch = next_batch(&mut stream, Duration::from_secs(10)).await;
        seen += batch.len();
        let answer = ack(&mut sub, batch.iter().map(|d| d.ack_id.clone()).collect()).await;
        assert!(
            answer
                .results
                .iter()
                .all(|r| r.outcome() == proto::LeaseOutcome::Ok),
            "{group}: every ack answered OK"
        );
    }
}

/// Consumes all `EVENTS` events of `group` over a Consume stream, acking
/// each batch on the stream with a confirmation asked for, and returns
/// once every ack is confirmed OK.
async fn consume_and_confirm(channel: Channel, group: &str) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(request(Kind::Open(open("orders", group))))
        .await
        .unwrap();
    let mut responses = SubscriberServiceClient::new(channel)
        .consume(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("consume")
        .into_inner();
    let (mut delivered, mut confirmed, mut request_id) = (0, 0, 0);
    while confirmed < EVENTS {
        let r = tokio::time::timeout(Duration::from_secs(10), responses.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open");
        if let Some(c) = r.confirmation {
            assert!(
                c.results
                    .iter()
                    .all(|r| r.outcome() == proto::LeaseOutcome::Ok),
                "{group}: every ack confirmed OK"
            );
            confirmed += c.results.len();
        }
        if !r.deliveries.is_empty() {
            delivered += r.deliveries.len();
            request_id += 1;
            let ids = ack_ids(&r.deliveries);
            tx.send(request(ack_of(ids, request_id, true)))
                .await
                .unwrap();
        }
    }
    assert_eq!(delivered, EVENTS);
}

/// Events of `group` delivered within `quiet` of subscribing.
async fn redelivered(channel: Channel, group: &str, quiet: Duration) -> usize {
    let mut sub = SubscriberServiceClient::new(channel);
    let mut stream = subscribe(&mut sub, "orders", group, 1000).await;
    let mut n = 0;
    while let Some(batch) = maybe_batch(&mut stream, quiet).await {
        n += batch.len();
    }
    n
}

async fn publish(channel: Channel) {
    let events = (0..EVENTS).map(|i| event(&format!("e{i}"))).collect();
    PublisherServiceClient::new(channel)
        .publish(proto::PublishRequest {
            topic: "orders".into(),
            events,
        })
        .await
        .expect("publish");
}

fn embedded(dir: &Path) -> ChildServer {
    ChildServer::start(dir, &[("HERALD_GROUPS__STATE_FLUSH_INTERVAL", "30s")], &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sync_acks_survive_kill_9_and_batched_ones_are_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = embedded(dir.path());
    let channel = server.channel().await;
    create_group(channel.clone(), "sync", proto::AckDurability::Sync).await;
    create_group(channel.clone(), "sync-stream", proto::AckDurability::Sync).await;
    create_group(channel.clone(), "batched", proto::AckDurability::Batched).await;
    publish(channel.clone()).await;
    consume_and_ack(channel.clone(), "batched").await;
    consume_and_confirm(channel.clone(), "sync-stream").await;
    consume_and_ack(channel.clone(), "sync").await;
    server.kill();

    let server = embedded(dir.path());
    let channel = server.channel().await;
    let quiet = Duration::from_millis(1500);
    for group in ["sync", "sync-stream"] {
        assert_eq!(
            redelivered(channel.clone(), group, quiet).await,
            0,
            "{group}: a sync group redelivers nothing it answered acks for"
        );
    }
    assert_eq!(
        redelivered(channel, "batched", quiet).await,
        EVENTS,
        "control: the batched group's acks were inside its flush interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acks_survive_kill_9_of_the_node_and_of_redis() {
    let mut redis = RedisServer::start(&["--appendfsync", "always"]);
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let env = [
        ("HERALD_STORAGE__BACKEND", "redis"),
        ("HERALD_REDIS__URL", url.as_str()),
        ("HERALD_GROUPS__STATE_FLUSH_INTERVAL", "30s"),
    ];
    let mut node = ChildServer::start(dir.path(), &env, &[]);
    let channel = node.channel().await;
    create_group(channel.clone(), "sync", proto::AckDurability::Sync).await;
    create_group(channel.clone(), "batched", proto::AckDurability::Batched).await;
    publish(channel.clone()).await;
    consume_and_ack(channel.clone(), "batched").await;
    consume_and_ack(channel.clone(), "sync").await;
    node.kill();
    redis.kill();
    redis.restart();

    let node = ChildServer::start(dir.path(), &env, &[]);
    let channel = node.channel().await;
    let quiet = Duration::from_millis(1500);
    for group in ["sync", "batched"] {
        assert_eq!(
            redelivered(channel.clone(), group, quiet).await,
            0,
            "{group}: nothing acked is redelivered"
        );
    }
}
