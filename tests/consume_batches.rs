//! SubscriberService.Consume: the window (max_in_flight) holds several
//! batches, and batches honour max_batch and max_batch_bytes. Runs on both
//! backends (`redis_semantics.rs` includes this file).

mod common;

use std::time::Duration;

use common::consume::*;
use common::*;
use herald::proto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_holds_several_batches_of_max_batch() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_n("t", "e", 30).await;
    let mut c = consume(
        &server,
        proto::ConsumeOpen {
            max_in_flight: Some(20),
            max_batch: Some(5),
            ..open("t", "g")
        },
    )
    .await;
    // 20 deliveries (the window), in batches of at most 5, none acked.
    let mut held = Vec::new();
    let mut batches = 0;
    while held.len() < 20 {
        let batch = c.batch().await;
        assert!(batch.len() <= 5, "a batch of {}", batch.len());
        held.extend(batch);
        batches += 1;
    }
    assert_eq!(held.len(), 20);
    assert!(batches >= 4, "{batches} batches");
    // The window is full: nothing more until acks free it.
    assert!(c.maybe(Duration::from_millis(500)).await.is_none());
    assert_eq!(server.group_stats("t", "g").await.in_flight, 20);
    c.send(ack_of(ack_ids(&held[..7]), 1, false)).await;
    let more = c.deliveries(7).await;
    let mut offsets: Vec<u64> = held
        .iter()
        .chain(&more)
        .map(|d| d.event.as_ref().unwrap().offset)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), 27, "each event once");
    assert!(c.maybe(Duration::from_millis(300)).await.is_none());
    server.stop().await;
}

/// Bytes of an event as batch limits count them: strings, payload and
/// attributes.
fn size(d: &proto::Delivery) -> usize {
    let e = d.event.as_ref().unwrap();
    e.id.len()
        + e.r#type.len()
        + e.source.len()
        + e.key.len()
        + e.content_type.len()
        + e.schema_version.len()
        + e.data.len()
        + e.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_honour_max_batch_bytes_and_a_larger_event_travels_alone() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    let sized = |id: String, bytes: usize| proto::Event {
        data: vec![b'x'; bytes].into(),
        ..event(&id)
    };
    let mut events: Vec<proto::Event> = (0..12).map(|i| sized(format!("s{i:02}"), 1000)).collect();
    events.insert(5, sized("big".into(), 5000));
    server.publish_events("t", events).await;
    let limit = 3100;
    let mut c = consume(
        &server,
        proto::ConsumeOpen {
            max_batch_bytes: Some(limit),
            ..open("t", "g")
        },
    )
    .await;
    let mut seen = 0;
    let mut largest = 0;
    while seen < 13 {
        let batch = c.batch().await;
        let bytes: usize = batch.iter().map(size).sum();
        if batch.iter().any(|d| event_id(d) == "big") {
            assert_eq!(batch.len(), 1, "the large event travels alone");
        } else {
            assert!(
                bytes <= limit as usize,
                "{} events, {bytes} bytes",
                batch.len()
            );
        }
        largest = largest.max(batch.len());
        seen += batch.len();
    }
    assert_eq!(largest, 3, "three events of ~1 KB fit in {limit} bytes");
    c.close();
    assert!(c.end().await.is_ok());
    // A limit above the server's ceiling is lowered to it, not refused.
    let mut c = consume(
        &server,
        proto::ConsumeOpen {
            max_batch_bytes: Some(u32::MAX),
            max_batch: Some(u32::MAX),
            ..open("t", "g2")
        },
    )
    .await;
    c.close();
    assert!(c.end().await.is_ok());
    server.stop().await;
}
