//! Acks stop redelivery; expired and released leases come back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald::proto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_events_are_not_redelivered() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_millis(300), Duration::ZERO)
        .await;
    server.publish_n("t", "e", 5).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 10).await;
    let batch = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(batch.len(), 5);
    assert!(batch.iter().all(|d| d.delivery_attempt == 1));
    let resp = ack(
        &mut client,
        batch.iter().map(|d| d.ack_id.clone()).collect(),
    )
    .await;
    assert_eq!(resp.acked_count, 5);
    // Well past the lease: nothing comes back.
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(1000))
            .await
            .is_none()
    );
    // Acking again reports already done.
    let again = ack(&mut client, vec![batch[0].ack_id.clone()]).await;
    assert_eq!(
        again.results[0].outcome,
        proto::LeaseOutcome::AlreadyDone as i32
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_delivery_returns_after_its_deadline_with_attempt_two() {
    let server = TestServer::start().await;
    let lease = Duration::from_millis(400);
    server.create_group("t", "g", lease, Duration::ZERO).await;
    server.publish_n("t", "e", 1).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 10).await;
    let first = next_batch(&mut stream, Duration::from_secs(5)).await;
    let got_first = Instant::now();
    assert_eq!(first[0].delivery_attempt, 1);
    let deadline = first[0].deadline.as_ref().unwrap();
    let publish_time = first[0]
        .event
        .as_ref()
        .unwrap()
        .publish_time
        .as_ref()
        .unwrap();
    assert!(
        deadline.seconds >= publish_time.seconds,
        "deadline is in the future"
    );

    let second = next_batch(&mut stream, Duration::from_secs(5)).await;
    let waited = got_first.elapsed();
    assert_eq!(ids(&second), ids(&first));
    assert_eq!(second[0].delivery_attempt, 2);
    assert!(
        waited >= Duration::from_millis(350),
        "not before the deadline: {waited:?}"
    );
    assert_ne!(second[0].ack_id, first[0].ack_id);

    // The old lease can no longer be nacked or extended; acking the new one works.
    let nack = client
        .nack(proto::NackRequest {
            ack_ids: vec![first[0].ack_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nack.results[0].outcome, proto::LeaseOutcome::Stale as i32);
    let resp = ack(&mut client, vec![second[0].ack_id.clone()]).await;
    assert_eq!(resp.acked_count, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_deadline_holds_the_lease() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_millis(300), Duration::ZERO)
        .await;
    server.publish_n("t", "e", 1).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 10).await;
    let first = next_batch(&mut stream, Duration::from_secs(5)).await;
    let resp = client
        .extend_deadline(proto::ExtendDeadlineRequest {
            ack_ids: vec![first[0].ack_id.clone()],
            extension: Some(dur(Duration::from_secs(5))),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results[0].outcome, proto::LeaseOutcome::Ok as i32);
    assert!(resp.results[0].deadline.is_some());
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(900))
            .await
            .is_none(),
        "extended lease must not expire at the original deadline"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stream_releases_leases_quickly() {
    let server = TestServer::start().await;
    // A long lease: only the release on disconnect can bring events back in time.
    server
        .create_group("t", "g", Duration::from_secs(60), Duration::ZERO)
        .await;
    server.publish_n("t", "e", 20).await;
    let mut a = server.subscriber();
    let mut stream_a = subscribe(&mut a, "t", "g", 20).await;
    let first = next_batch(&mut stream_a, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 20);
    let mut b = server.subscriber();
    let mut stream_b = subscribe(&mut b, "t", "g", 20).await;
    assert!(
        maybe_batch(&mut stream_b, Duration::from_millis(300))
            .await
            .is_none(),
        "all leased to a"
    );

    drop(stream_a);
    let dropped = Instant::now();
    let mut got = Vec::new();
    while got.len() < 20 {
        let batch = next_batch(&mut stream_b, Duration::from_secs(3)).await;
        assert!(batch.iter().all(|d| d.delivery_attempt == 2));
        got.extend(ids(&batch));
    }
    assert!(
        dropped.elapsed() < Duration::from_secs(3),
        "released promptly: {:?}",
        dropped.elapsed()
    );
    got.sort();
    let mut want = ids(&first);
    want.sort();
    assert_eq!(got, want);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_with_delay_redelivers_after_the_delay() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::from_secs(10))
        .await;
    server.publish_n("t", "e", 1).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 10).await;
    let first = next_batch(&mut stream, Duration::from_secs(5)).await;
    let nacked = Instant::now();
    let resp = client
        .nack(proto::NackRequest {
            ack_ids: vec![first[0].ack_id.clone()],
            delay: Some(dur(Duration::from_millis(300))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results[0].outcome, proto::LeaseOutcome::Ok as i32);
    let second = next_batch(&mut stream, Duration::from_secs(5)).await;
    let waited = nacked.elapsed();
    assert_eq!(second[0].delivery_attempt, 2);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    server.stop().await;
}
