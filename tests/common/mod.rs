//! Shared test harness: a real Herald server on 127.0.0.1:0 with a temp data
//! directory, generated gRPC clients, and small helpers.
#![allow(dead_code)]

pub mod child;
pub mod clients;
pub mod consume;
pub mod pubsub;
pub mod raw;
pub mod redis;
pub mod secure;
pub mod web;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use herald::cli::serve::{RunningServer, start};
use herald::config::Config;
use herald::proto;
use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use tonic::transport::Channel;

/// A server under test. The data directory outlives restarts.
pub struct TestServer {
    pub config: Config,
    pub dir: tempfile::TempDir,
    server: Option<RunningServer>,
    pub channel: Channel,
    /// The Redis the server runs over, in the Redis suite.
    pub redis: Option<redis::RedisServer>,
}

impl TestServer {
    /// Starts with test-friendly defaults (fast state flushes).
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts after letting `tweak` change the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.groups.state_flush_interval = Duration::from_millis(20);
        // Never the default console port: tests that want the console
        // turn it on at 127.0.0.1:0.
        config.http.enabled = false;
        let redis = redis::redis_suite().then(|| {
            let r = redis::RedisServer::start(&[]);
            config.storage.backend = herald::config::BackendKind::Redis;
            config.redis.url = r.url();
            r
        });
        tweak(&mut config);
        let server = start(config.clone()).await.expect("server starts");
        let channel = connect(server.addr).await;
        TestServer {
            config,
            dir,
            server: Some(server),
            channel,
            redis,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("running").addr
    }

    /// The console's address, when the test turned it on.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().expect("running").http_addr
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Graceful stop, then start again on the same data directory.
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.expect("clean stop");
        }
        let server = start(self.config.clone()).await.expect("server restarts");
        self.channel = connect(server.addr).await;
        self.server = Some(server);
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.expect("clean stop");
        }
    }

    pub fn broker(&self) -> &herald::broker::Broker {
        &self.server.as_ref().expect("running").broker
    }

    pub fn publisher(&self) -> PublisherServiceClient<Channel> {
        PublisherServiceClient::new(self.channel.clone())
    }

    pub fn subscriber(&self) -> SubscriberServiceClient<Channel> {
        SubscriberServiceClient::new(self.channel.clone())
    }

    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn dead_letters(
        &self,
    ) -> herald::proto::dead_letter_service_client::DeadLetterServiceClient<Channel> {
        herald::proto::dead_letter_service_client::DeadLetterServiceClient::new(
            self.channel.clone(),
        )
    }

    /// The topic's end offset (events ever stored).
    pub async fn end_offset(&self, topic: &str) -> u64 {
        self.admin()
            .get_topic(proto::GetTopicRequest { name: topic.into() })
            .await
            .expect("get topic")
            .into_inner()
            .topic
            .expect("topic")
            .stats
            .expect("stats")
            .end_offset
    }

    /// The group's stats.
    pub async fn group_stats(&self, topic: &str, group: &str) -> proto::GroupStats {
        self.admin()
            .get_group(proto::GetGroupRequest {
                topic: topic.into(),
                group: group.into(),
            })
            .await
            .expect("get group")
            .into_inner()
            .group
            .expect("group")
            .stats
            .expect("stats")
    }

    /// Publishes `n` events of type `T` with ids `{prefix}-{i}`, in batches of 100.
    pub async fn publish_n(&self, topic: &str, prefix: &str, n: usize) -> Vec<u64> {
        let mut offsets = Vec::with_capacity(n);
        let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        for chunk in ids.chunks(100) {
            let events = chunk.iter().map(|id| event(id)).collect();
            offsets.extend(self.publish_events(topic, events).await);
        }
        offsets
    }

    /// Publishes `events` in one call; their offsets.
    pub async fn publish_events(&self, topic: &str, events: Vec<proto::Event>) -> Vec<u64> {
        self.publisher()
            .publish(proto::PublishRequest {
                topic: topic.into(),
                events,
            })
            .await
            .expect("publish")
            .into_inner()
            .results
            .iter()
            .map(|r| r.offset)
            .collect()
    }

    /// Creates a group at `earliest` with the given lease and retry delay.
    pub async fn create_group(
        &self,
        topic: &str,
        group: &str,
        ack_deadline: Duration,
        min_backoff: Duration,
    ) {
        self.admin()
            .create_group(proto::CreateGroupRequest {
                group: Some(proto::Group {
                    topic: topic.into(),
                    name: group.into(),
                    start_position: Some(earliest()),
                    ack_deadline: Some(dur(ack_deadline)),
                    retry_policy: Some(proto::RetryPolicy {
                        min_backoff: Some(dur(min_backoff)),
                        max_backoff: Some(dur(min_backoff.max(Duration::from_secs(1)))),
                        multiplier: Some(1.0),
                    }),
                    ..Default::default()
                }),
            })
            .await
            .expect("create group");
    }
}

pub async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub fn event(id: &str) -> proto::Event {
    proto::Event {
        id: id.into(),
        r#type: "T".into(),
        source: "tests".into(),
        data: Bytes::from(format!("payload of {id}")),
        ..Default::default()
    }
}

pub fn earliest() -> proto::Position {
    proto::Position {
        kind: Some(proto::position::Kind::Edge(proto::Edge::Earliest as i32)),
    }
}

pub fn dur(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// Opens a Subscribe stream.
pub async fn subscribe(
    client: &mut SubscriberServiceClient<Channel>,
    topic: &str,
    group: &str,
    max_in_flight: u32,
) -> tonic::Streaming<proto::SubscribeResponse> {
    client
        .subscribe(proto::SubscribeRequest {
            topic: topic.into(),
            group: group.into(),
            consumer: "test".into(),
            max_in_flight: Some(max_in_flight),
        })
        .await
        .expect("subscribe")
        .into_inner()
}

/// Next batch of a stream, failing the test after `within`.
pub async fn next_batch(
    stream: &mut tonic::Streaming<proto::SubscribeResponse>,
    within: Duration,
) -> Vec<proto::Delivery> {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("a delivery in time")
        .expect("stream ok")
        .expect("stream open")
        .deliveries
}

/// Waits up to `within` for a batch; `None` when nothing came.
pub async fn maybe_batch(
    stream: &mut tonic::Streaming<proto::SubscribeResponse>,
    within: Duration,
) -> Option<Vec<proto::Delivery>> {
    match tokio::time::timeout(within, stream.message()).await {
        Ok(Ok(Some(r))) => Some(r.deliveries),
        _ => None,
    }
}

pub async fn ack(
    client: &mut SubscriberServiceClient<Channel>,
    ids: Vec<String>,
) -> proto::AckResponse {
    client
        .ack(proto::AckRequest { ack_ids: ids })
        .await
        .expect("ack")
        .into_inner()
}

/// The events of `topic` from `offset` to its end (at most `max_events`,
/// 0 for no limit), read through `channel`.
pub async fn read_events(
    channel: Channel,
    topic: &str,
    offset: u64,
    max_events: u64,
) -> Vec<proto::Event> {
    let mut read = SubscriberServiceClient::new(channel)
        .read(proto::ReadRequest {
            topic: topic.into(),
            start: Some(proto::read_request::Start::Offset(offset)),
            max_events,
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    let mut events = Vec::new();
    while let Some(r) = read.message().await.expect("read stream") {
        events.extend(r.events);
    }
    events
}

pub fn ids(batch: &[proto::Delivery]) -> Vec<String> {
    batch
        .iter()
        .map(|d| d.event.as_ref().unwrap().id.clone())
        .collect()
}
