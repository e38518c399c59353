//! Pub/Sub through generated stubs: a topic `jobs` with subscriptions,
//! publishing, and StreamingPull.

use std::time::Duration;

use bytes::Bytes;
use herald::proto::google::pubsub::v1::publisher_client::PublisherClient;
use herald::proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use herald::proto::google::pubsub::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{TestServer, connect};

pub const TOPIC: &str = "projects/herald/topics/jobs";

pub fn sub(id: &str) -> String {
    format!("projects/herald/subscriptions/{id}")
}

pub async fn setup(
    server: &TestServer,
    subs: &[&str],
) -> (PublisherClient<Channel>, SubscriberClient<Channel>) {
    let channel = connect(server.addr()).await;
    let mut publisher = PublisherClient::new(channel.clone());
    let mut subscriber = SubscriberClient::new(channel);
    publisher
        .create_topic(Topic {
            name: TOPIC.into(),
            ..Topic::default()
        })
        .await
        .expect("create topic");
    for id in subs {
        subscriber
            .create_subscription(Subscription {
                name: sub(id),
                topic: TOPIC.into(),
                ..Subscription::default()
            })
            .await
            .expect("create subscription");
    }
    (publisher, subscriber)
}

pub async fn publish(publisher: &mut PublisherClient<Channel>, n: usize) {
    publish_range(publisher, 0..n).await;
}

/// Publishes `job-<i>` for each i of `range` in one request.
pub async fn publish_range(
    publisher: &mut PublisherClient<Channel>,
    range: std::ops::Range<usize>,
) {
    let data = range.map(|i| Bytes::from(format!("job-{i}"))).collect();
    publish_data(publisher, data).await;
}

/// Publishes one message per payload in one request.
pub async fn publish_data(publisher: &mut PublisherClient<Channel>, data: Vec<Bytes>) {
    let messages = data
        .into_iter()
        .map(|data| PubsubMessage {
            data,
            ..PubsubMessage::default()
        })
        .collect();
    publisher
        .publish(PublishRequest {
            topic: TOPIC.into(),
            messages,
        })
        .await
        .expect("publish");
}

/// Opens a StreamingPull on `id`: the sender for later requests and the
/// response stream.
pub async fn pull(
    subscriber: &mut SubscriberClient<Channel>,
    id: &str,
    deadline: i32,
) -> Result<
    (
        mpsc::Sender<StreamingPullRequest>,
        tonic::Streaming<StreamingPullResponse>,
    ),
    tonic::Status,
> {
    let (tx, rx) = mpsc::channel(8);
    tx.send(StreamingPullRequest {
        subscription: sub(id),
        stream_ack_deadline_seconds: deadline,
        ..StreamingPullRequest::default()
    })
    .await
    .unwrap();
    let stream = subscriber
        .streaming_pull(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

pub async fn next(stream: &mut tonic::Streaming<StreamingPullResponse>) -> Vec<ReceivedMessage> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a batch in time")
        .expect("stream ok")
        .expect("stream open")
        .received_messages
}
