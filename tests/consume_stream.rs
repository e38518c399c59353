//! SubscriberService.Consume, the bidirectional consume stream: acks, nacks
//! and extensions on the stream, confirmations, and how the stream ends.
//! Runs on both backends (`redis_semantics.rs` includes this file); batch
//! limits are in `consume_batches.rs`, bad requests in `consume_bad_input.rs`.

mod common;

use std::time::{Duration, Instant};

use common::consume::*;
use common::*;
use herald::proto;
use herald::proto::consume_request::Kind;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_on_the_stream_take_effect_and_are_confirmed_when_asked() {
    let server = TestServer::start().await;
    let lease = Duration::from_millis(500);
    server.create_group("t", "g", lease, Duration::ZERO).await;
    server.publish_n("t", "e", 6).await;
    let mut c = consume(&server, open("t", "g")).await;
    let d = c.deliveries(6).await;
    assert!(d.iter().all(|d| d.delivery_attempt == 1));
    let ids = ack_ids(&d);
    // Not confirmed: nothing answers it (the next confirmation is request 2's).
    c.send(ack_of(ids[0..2].to_vec(), 1, false)).await;
    c.send(ack_of(ids[2..4].to_vec(), 2, true)).await;
    let two = c.confirmation().await;
    assert_eq!(two.request_id, 2);
    assert_eq!(
        two.results.iter().map(|r| &r.ack_id).collect::<Vec<_>>(),
        ids[2..4].iter().collect::<Vec<_>>()
    );
    assert_eq!(outcomes(&two), [proto::LeaseOutcome::Ok; 2]);
    // Acks of request 1 took effect before request 2 was confirmed.
    c.send(ack_of(
        vec![ids[0].clone(), ids[1].clone(), ids[4].clone()],
        3,
        true,
    ))
    .await;
    let three = c.confirmation().await;
    assert_eq!(three.request_id, 3);
    use proto::LeaseOutcome::{AlreadyDone, Ok as Done};
    assert_eq!(outcomes(&three), [AlreadyDone, AlreadyDone, Done]);
    c.send(ack_of(vec![ids[5].clone()], 4, false)).await;
    // Well past the lease: nothing comes back.
    assert!(c.maybe(lease * 2).await.is_none(), "redelivered");
    let stats = server.group_stats("t", "g").await;
    assert_eq!((stats.acked, stats.in_flight), (6, 0));
    c.close();
    assert!(c.end().await.is_ok());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_on_the_open_request_confirms_every_settlement() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::from_secs(30))
        .await;
    server.publish_n("t", "e", 3).await;
    let mut c = consume(
        &server,
        proto::ConsumeOpen {
            confirm: true,
            ..open("t", "g")
        },
    )
    .await;
    let d = c.deliveries(3).await;
    c.send(ack_of(vec![d[0].ack_id.clone()], 10, false)).await;
    c.send(Kind::Extend(proto::ConsumeExtend {
        ack_ids: vec![d[1].ack_id.clone()],
        extension: Some(dur(Duration::from_secs(60))),
        request_id: 11,
        confirm: false,
    }))
    .await;
    c.send(Kind::Nack(proto::ConsumeNack {
        ack_ids: vec![d[2].ack_id.clone()],
        delay: Some(dur(Duration::from_secs(60))),
        request_id: 12,
        ..Default::default()
    }))
    .await;
    for want in [10, 11, 12] {
        let confirmation = c.confirmation().await;
        assert_eq!(confirmation.request_id, want);
        assert_eq!(outcomes(&confirmation), [proto::LeaseOutcome::Ok]);
    }
    let stats = server.group_stats("t", "g").await;
    assert_eq!((stats.acked, stats.nacked, stats.in_flight), (1, 1, 1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_on_the_stream_retry_after_their_delay_or_dead_letter() {
    let server = TestServer::start().await;
    // The group's own backoff is long: only the nack's delay brings an event back soon.
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::from_secs(30))
        .await;
    server.publish_n("t", "e", 2).await;
    let mut c = consume(&server, open("t", "g")).await;
    let d = c.deliveries(2).await;
    let (retry, poison) = (&d[0], &d[1]);
    let delay = Duration::from_millis(300);
    let nacked_at = Instant::now();
    c.send(Kind::Nack(proto::ConsumeNack {
        ack_ids: vec![retry.ack_id.clone()],
        delay: Some(dur(delay)),
        reason: "busy".into(),
        request_id: 1,
        confirm: true,
        ..Default::default()
    }))
    .await;
    c.send(Kind::Nack(proto::ConsumeNack {
        ack_ids: vec![poison.ack_id.clone()],
        dead_letter: true,
        reason: "poison".into(),
        request_id: 2,
        confirm: true,
        ..Default::default()
    }))
    .await;
    for want in [1, 2] {
        let confirmation = c.confirmation().await;
        assert_eq!(confirmation.request_id, want);
        assert_eq!(outcomes(&confirmation), [proto::LeaseOutcome::Ok]);
    }
    // The dead letter is durable once its nack is confirmed: listed at once.
    let listed = server
        .dead_letters()
        .list_dead_letters(proto::ListDeadLettersRequest {
            topic: "t".into(),
            group: "g".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.dead_letters.len(), 1);
    let entry = &listed.dead_letters[0];
    assert_eq!(entry.event.as_ref().unwrap().id, event_id(poison));
    assert_eq!((entry.attempts, entry.last_reason.as_str()), (1, "poison"));
    // The other comes back after the nack's delay, attempt 2.
    let again = c.batch().await;
    let waited = nacked_at.elapsed();
    assert_eq!(again.len(), 1);
    assert_eq!(event_id(&again[0]), event_id(retry));
    assert_eq!(again[0].delivery_attempt, 2);
    assert!(
        waited >= delay - Duration::from_millis(20),
        "back after {waited:?}"
    );
    let stats = server.group_stats("t", "g").await;
    assert_eq!(
        (stats.nacked, stats.dead_lettered, stats.dead_letter_count),
        (2, 1, 1)
    );
    c.send(ack_of(ack_ids(&again), 3, true)).await;
    assert_eq!(outcomes(&c.confirmation().await), [proto::LeaseOutcome::Ok]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extends_on_the_stream_keep_the_lease_past_its_deadline() {
    let server = TestServer::start().await;
    let lease = Duration::from_millis(600);
    server.create_group("t", "g", lease, Duration::ZERO).await;
    server.publish_n("t", "e", 2).await;
    let mut c = consume(&server, open("t", "g")).await;
    let d = c.deliveries(2).await;
    let (kept, dropped) = (&d[0], &d[1]);
    let extension = Duration::from_secs(3);
    let before = std::time::SystemTime::now();
    c.send(Kind::Extend(proto::ConsumeExtend {
        ack_ids: vec![kept.ack_id.clone()],
        extension: Some(dur(extension)),
        request_id: 1,
        confirm: true,
    }))
    .await;
    let confirmation = c.confirmation().await;
    assert_eq!(outcomes(&confirmation), [proto::LeaseOutcome::Ok]);
    let deadline = confirmation.results[0].deadline.as_ref().expect("deadline");
    let deadline =
        std::time::UNIX_EPOCH + Duration::new(deadline.seconds as u64, deadline.nanos as u32);
    let ahead = deadline.duration_since(before).unwrap();
    assert!(
        ahead >= extension - Duration::from_millis(50) && ahead <= extension + lease,
        "new deadline {ahead:?} ahead"
    );
    // Past the group's deadline: only the delivery that was not extended
    // comes back.
    let until = Instant::now() + lease * 2;
    let mut back = Vec::new();
    while let Some(r) = c
        .maybe(until.saturating_duration_since(Instant::now()))
        .await
    {
        // Acked at once, so it does not come back a third time.
        c.send(ack_of(ack_ids(&r.deliveries), 2, false)).await;
        back.extend(r.deliveries);
    }
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(event_id(&back[0]), event_id(dropped));
    assert_eq!(back[0].delivery_attempt, 2);
    // The extended lease is still the current one.
    c.send(ack_of(vec![kept.ack_id.clone()], 3, true)).await;
    assert_eq!(outcomes(&c.confirmation().await), [proto::LeaseOutcome::Ok]);
    let stats = server.group_stats("t", "g").await;
    assert_eq!((stats.acked, stats.in_flight), (2, 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_client_side_ends_the_stream_with_ok_after_its_acks() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_n("t", "e", 3).await;
    let mut c = consume(&server, open("t", "g")).await;
    let d = c.deliveries(3).await;
    c.send(ack_of(ack_ids(&d), 1, false)).await;
    c.close();
    assert!(c.end().await.is_ok());
    let stats = server.group_stats("t", "g").await;
    assert_eq!((stats.acked, stats.in_flight), (3, 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_group_ends_the_stream_with_not_found() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    let mut c = consume(&server, open("t", "g")).await;
    server
        .admin()
        .delete_group(proto::DeleteGroupRequest {
            topic: "t".into(),
            group: "g".into(),
        })
        .await
        .unwrap();
    let status = c.end().await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_stream_with_unavailable() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    let mut c = consume(&server, open("t", "g")).await;
    let stopping = tokio::spawn(server.stop());
    let status = c.end().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the server stops with the stream open")
        .unwrap();
}
