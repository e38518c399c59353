//! Consumers receive large events (issue 8, finding 4): every streamed
//! message stays within a byte budget that default gRPC clients accept
//! (4 MiB), whatever `max_in_flight` or `page_size` asks for; a single event
//! larger than the budget travels alone.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use herald::proto;

/// Publishes `n` events of `size` bytes.
async fn publish_large(server: &TestServer, topic: &str, n: usize, size: usize) {
    let mut client = server.publisher();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        client
            .publish(proto::PublishRequest {
                topic: topic.into(),
                events: chunk
                    .iter()
                    .map(|i| proto::Event {
                        id: format!("big-{i}"),
                        r#type: "Big".into(),
                        data: Bytes::from(vec![b'x'; size]),
                        ..Default::default()
                    })
                    .collect(),
            })
            .await
            .expect("publish");
    }
}

/// Regression: with 17 KiB events and the default `max_in_flight` (1000),
/// a Subscribe batch of 256 events was 4.4 MB and every default client
/// failed with RESOURCE_EXHAUSTED on connect, each drop counting as an
/// attempt until everything was dead-lettered unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_client_receives_17_kib_events_at_the_default_window() {
    let server = TestServer::start().await;
    server
        .create_group("big", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    publish_large(&server, "big", 600, 17 << 10).await;
    // A client with tonic's default 4 MiB receive limit.
    let mut sub = server.subscriber();
    let mut stream = sub
        .subscribe(proto::SubscribeRequest {
            topic: "big".into(),
            group: "g".into(),
            consumer: "default-client".into(),
            max_in_flight: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = 0;
    while got < 600 {
        let batch = next_batch(&mut stream, Duration::from_secs(10)).await;
        assert!(batch.iter().all(|d| d.delivery_attempt == 1));
        got += batch.len();
    }
    assert_eq!(got, 600);

    // Read streams the same history within the same limit.
    let mut read = sub
        .read(proto::ReadRequest {
            topic: "big".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut read_count = 0;
    while let Some(batch) = read
        .message()
        .await
        .expect("read within the client's limit")
    {
        read_count += batch.events.len();
    }
    assert_eq!(read_count, 600);
}

/// A dead-letter page of 1000 large entries is cut to the byte budget and
/// continues on the next page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_pages_stay_within_the_budget() {
    let server = TestServer::start().await;
    server
        .create_group("big", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    publish_large(&server, "big", 300, 17 << 10).await;
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "big", "g", 300).await;
    let mut nacked = 0;
    while nacked < 300 {
        let batch = next_batch(&mut stream, Duration::from_secs(10)).await;
        nacked += batch.len();
        sub.nack(proto::NackRequest {
            ack_ids: batch.into_iter().map(|d| d.ack_id).collect(),
            dead_letter: true,
            reason: "too big to handle".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut listed = 0;
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = server
            .dead_letters()
            .list_dead_letters(proto::ListDeadLettersRequest {
                topic: "big".into(),
                group: "g".into(),
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("a page within the client's receive limit")
            .into_inner();
        assert_eq!(page.total_count, 300);
        listed += page.dead_letters.len();
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, 300);
    assert!(pages >= 2, "300 × 17 KiB does not fit one page");
}

/// An event larger than the batch budget travels alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_larger_than_the_budget_travels_alone() {
    let server = TestServer::start_with(|c| {
        c.limits.max_batch_bytes = 64 << 10;
        c.groups.max_buffered_bytes = 1 << 20;
    })
    .await;
    server
        .create_group("big", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    publish_large(&server, "big", 4, 200 << 10).await;
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "big", "g", 100).await;
    for _ in 0..4 {
        let batch = next_batch(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(
            batch.len(),
            1,
            "a 200 KiB event over a 64 KiB budget goes alone"
        );
    }
}
