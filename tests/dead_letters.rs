//! Retries with backoff, dead-lettering, replay and purge, end to end.

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald::proto;
use tonic::Code;

async fn create_group(
    server: &TestServer,
    topic: &str,
    group: &str,
    min_backoff: Duration,
    multiplier: f64,
    max_attempts: u32,
) {
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: topic.into(),
                name: group.into(),
                start_position: Some(earliest()),
                ack_deadline: Some(dur(Duration::from_secs(30))),
                retry_policy: Some(proto::RetryPolicy {
                    min_backoff: Some(dur(min_backoff)),
                    max_backoff: Some(dur(Duration::from_secs(10))),
                    multiplier: Some(multiplier),
                }),
                max_delivery_attempts: Some(max_attempts),
                ..Default::default()
            }),
        })
        .await
        .expect("create group");
}

async fn nack(
    client: &mut herald::proto::subscriber_service_client::SubscriberServiceClient<
        tonic::transport::Channel,
    >,
    id: &str,
    reason: &str,
) -> proto::NackResponse {
    client
        .nack(proto::NackRequest {
            ack_ids: vec![id.into()],
            reason: reason.into(),
            ..Default::default()
        })
        .await
        .expect("nack")
        .into_inner()
}

async fn list(server: &TestServer, topic: &str, group: &str) -> proto::ListDeadLettersResponse {
    server
        .dead_letters()
        .list_dead_letters(proto::ListDeadLettersRequest {
            topic: topic.into(),
            group: group.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_twice_then_acking_follows_the_backoff() {
    let server = TestServer::start().await;
    create_group(&server, "t", "g", Duration::from_millis(200), 2.0, 5).await;
    server.publish_n("t", "e", 1).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 10).await;
    let mut seen = Vec::new();
    loop {
        let d = next_batch(&mut stream, Duration::from_secs(5))
            .await
            .remove(0);
        seen.push((d.delivery_attempt, Instant::now()));
        if d.delivery_attempt < 3 {
            let resp = nack(&mut client, &d.ack_id, "flaky").await;
            assert_eq!(resp.results[0].outcome, proto::LeaseOutcome::Ok as i32);
        } else {
            assert_eq!(ack(&mut client, vec![d.ack_id]).await.acked_count, 1);
            break;
        }
    }
    let attempts: Vec<u32> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    let gap1 = seen[1].1 - seen[0].1;
    let gap2 = seen[2].1 - seen[1].1;
    assert!(
        gap1 >= Duration::from_millis(190) && gap1 < Duration::from_millis(390),
        "first retry after ~200ms: {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(390) && gap2 < Duration::from_millis(790),
        "second after ~400ms: {gap2:?}"
    );
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(600))
            .await
            .is_none(),
        "acked: no more"
    );
    let stats = server.group_stats("t", "g").await;
    assert_eq!(
        (
            stats.nacked,
            stats.redelivered,
            stats.acked,
            stats.dead_lettered
        ),
        (2, 2, 1, 0)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_event_is_dead_lettered_replayed_to_its_group_only_and_purged() {
    let server = TestServer::start().await;
    create_group(&server, "orders", "billing", Duration::ZERO, 1.0, 3).await;
    create_group(&server, "orders", "audit", Duration::ZERO, 1.0, 3).await;
    server.publish_n("orders", "o", 1).await;

    // The second group acks on the first try.
    let mut audit = server.subscriber();
    let mut audit_stream = subscribe(&mut audit, "orders", "audit", 10).await;
    let d = next_batch(&mut audit_stream, Duration::from_secs(5))
        .await
        .remove(0);
    assert_eq!(ack(&mut audit, vec![d.ack_id]).await.acked_count, 1);

    // The first group nacks until Herald gives up: exactly 3 attempts.
    let mut billing = server.subscriber();
    let mut stream = subscribe(&mut billing, "orders", "billing", 10).await;
    for attempt in 1..=3 {
        let d = next_batch(&mut stream, Duration::from_secs(5))
            .await
            .remove(0);
        assert_eq!(d.delivery_attempt, attempt);
        nack(&mut billing, &d.ack_id, "cannot parse total").await;
    }
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(500))
            .await
            .is_none(),
        "dead-lettered: not delivered again"
    );

    let listed = list(&server, "orders", "billing").await;
    assert_eq!(listed.total_count, 1);
    let dl = &listed.dead_letters[0];
    assert_eq!(dl.attempts, 3);
    assert_eq!(dl.last_reason, "cannot parse total");
    assert_eq!(dl.event.as_ref().unwrap().id, "o-0");
    assert_eq!(dl.group, "billing");
    assert!(dl.first_failure_time.is_some() && dl.dead_letter_time.is_some());
    assert_eq!(list(&server, "orders", "audit").await.total_count, 0);
    let stats = server.group_stats("orders", "billing").await;
    assert_eq!(
        (stats.dead_lettered, stats.dead_letter_count, stats.backlog),
        (1, 1, 0)
    );
    assert!(stats.oldest_dead_letter_age.is_some());

    // Replay: billing gets it once more with attempt 1; audit sees nothing.
    let replayed = server
        .dead_letters()
        .replay_dead_letters(proto::ReplayDeadLettersRequest {
            topic: "orders".into(),
            group: "billing".into(),
            ids: vec![dl.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((replayed.replayed_count, replayed.remaining_count), (1, 0));
    // Replaying the same id while its replay is pending does not duplicate it.
    let again = server
        .dead_letters()
        .replay_dead_letters(proto::ReplayDeadLettersRequest {
            topic: "orders".into(),
            group: "billing".into(),
            ids: vec![dl.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.replayed_count, 0);
    let d = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].delivery_attempt, ids(&d)[0].as_str()), (1, "o-0"));
    assert!(
        maybe_batch(&mut audit_stream, Duration::from_millis(300))
            .await
            .is_none(),
        "other groups are not touched"
    );
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(300))
            .await
            .is_none(),
        "delivered once"
    );
    // Poison again, at once this time.
    let resp = billing
        .nack(proto::NackRequest {
            ack_ids: vec![d[0].ack_id.clone()],
            dead_letter: true,
            reason: "still bad".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results[0].outcome, proto::LeaseOutcome::Ok as i32);
    let listed = list(&server, "orders", "billing").await;
    assert_eq!(
        listed.total_count, 1,
        "the nack answered after the dead letter was stored"
    );
    assert_eq!(
        (
            listed.dead_letters[0].attempts,
            listed.dead_letters[0].last_reason.as_str()
        ),
        (1, "still bad")
    );

    let purged = server
        .dead_letters()
        .purge_dead_letters(proto::PurgeDeadLettersRequest {
            topic: "orders".into(),
            group: "billing".into(),
            all: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((purged.purged_count, purged.remaining_count), (1, 0));
    assert_eq!(list(&server, "orders", "billing").await.total_count, 0);
    server.stop().await;
}

/// A dead letter that GetGroup counts is already listed by ListDeadLetters
/// (issue 11). Here no call waits for the dead letters: each event's lease
/// expires on its only attempt, so the group counts it at once and stores it
/// with its next write; a listing in between used to miss it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_get_group_counts_is_already_listed() {
    let server = TestServer::start().await;
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "t".into(),
                name: "g".into(),
                start_position: Some(earliest()),
                ack_deadline: Some(dur(Duration::from_millis(150))),
                max_delivery_attempts: Some(1),
                ..Default::default()
            }),
        })
        .await
        .expect("create group");
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 1).await;
    for round in 1..=8u64 {
        server.publish_n("t", &format!("e{round}"), 1).await;
        // Leased and never acked.
        next_batch(&mut stream, Duration::from_secs(5)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = server.group_stats("t", "g").await;
            let counted = stats.dead_lettered.max(stats.dead_letter_count);
            if counted >= round {
                let listed = list(&server, "t", "g").await;
                assert!(
                    listed.total_count >= counted && listed.dead_letters.len() as u64 >= counted,
                    "round {round}: GetGroup counts {counted} dead letters \
                     (dead_lettered {}, dead_letter_count {}), ListDeadLetters lists {} \
                     (total_count {})",
                    stats.dead_lettered,
                    stats.dead_letter_count,
                    listed.dead_letters.len(),
                    listed.total_count
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: not dead-lettered: {stats:?}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_retry_schedule_attempts_and_dead_letters() {
    let mut server = TestServer::start().await;
    create_group(&server, "t", "g", Duration::from_secs(2), 1.0, 3).await;
    server.publish_n("t", "e", 3).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 10).await;
    let batch = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(batch.len(), 3);
    // e-0: poison; e-1: retry in 2 s; e-2: acked.
    client
        .nack(proto::NackRequest {
            ack_ids: vec![batch[0].ack_id.clone()],
            dead_letter: true,
            reason: "poison".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    nack(&mut client, &batch[1].ack_id, "later").await;
    let nacked_at = Instant::now();
    ack(&mut client, vec![batch[2].ack_id.clone()]).await;
    drop(stream);

    server.restart().await;

    let listed = list(&server, "t", "g").await;
    assert_eq!(listed.total_count, 1, "dead letters survive");
    assert_eq!(listed.dead_letters[0].event.as_ref().unwrap().id, "e-0");
    let stats = server.group_stats("t", "g").await;
    assert_eq!(stats.dead_letter_count, 1);
    assert_eq!(stats.backlog, 1, "only e-1 is pending");

    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 10).await;
    let d = next_batch(&mut stream, Duration::from_secs(5)).await;
    let waited = nacked_at.elapsed();
    assert_eq!(ids(&d), vec!["e-1".to_string()]);
    assert_eq!(d[0].delivery_attempt, 2, "attempts survive the restart");
    assert!(
        waited >= Duration::from_millis(1900),
        "not retried early: {waited:?}"
    );
    ack(&mut client, vec![d[0].ack_id.clone()]).await;
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing duplicated"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_bad_input_gets_precise_codes_and_changes_nothing() {
    let server = TestServer::start().await;
    create_group(&server, "t", "g", Duration::ZERO, 1.0, 1).await;
    server.publish_n("t", "e", 12).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 100).await;
    let mut got = Vec::new();
    while got.len() < 12 {
        got.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    for d in &got {
        nack(&mut client, &d.ack_id, "no").await;
    }
    assert_eq!(list(&server, "t", "g").await.total_count, 12);
    let mut dlq = server.dead_letters();

    // Paging: newest first, 5 per page, tokens chain; a forged token is refused.
    let p1 = dlq
        .list_dead_letters(proto::ListDeadLettersRequest {
            topic: "t".into(),
            group: "g".into(),
            page_size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p1.dead_letters.len(), 5);
    assert_eq!(p1.dead_letters[0].event.as_ref().unwrap().id, "e-11");
    let p2 = dlq
        .list_dead_letters(proto::ListDeadLettersRequest {
            topic: "t".into(),
            group: "g".into(),
            page_size: 5,
            page_token: p1.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p2.dead_letters[0].event.as_ref().unwrap().id, "e-6");
    let oldest = dlq
        .list_dead_letters(proto::ListDeadLettersRequest {
            topic: "t".into(),
            group: "g".into(),
            page_size: 1,
            oldest_first: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(oldest.dead_letters[0].event.as_ref().unwrap().id, "e-0");
    for token in ["garbage", "5.1234", "", "zz.zz"] {
        if token.is_empty() {
            continue;
        }
        let err = dlq
            .list_dead_letters(proto::ListDeadLettersRequest {
                topic: "t".into(),
                group: "g".into(),
                page_token: token.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{token}");
        assert!(
            err.message().starts_with("page_token:"),
            "{}",
            err.message()
        );
    }
    // A token of another query (oldest_first differs) is refused too.
    let err = dlq
        .list_dead_letters(proto::ListDeadLettersRequest {
            topic: "t".into(),
            group: "g".into(),
            page_size: 5,
            page_token: p1.next_page_token.clone(),
            oldest_first: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let id0 = p1.dead_letters[0].id.clone();
    let cases: Vec<(proto::ReplayDeadLettersRequest, Code, &str)> = vec![
        (
            proto::ReplayDeadLettersRequest {
                topic: "t".into(),
                group: "g".into(),
                ids: vec![id0.clone()],
                all: true,
                ..Default::default()
            },
            Code::InvalidArgument,
            "all:",
        ),
        (
            proto::ReplayDeadLettersRequest {
                topic: "t".into(),
                group: "g".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "ids:",
        ),
        (
            proto::ReplayDeadLettersRequest {
                topic: "t".into(),
                group: "g".into(),
                ids: vec![id0.clone(), "not-a-number".into()],
                ..Default::default()
            },
            Code::InvalidArgument,
            "ids[1]:",
        ),
        (
            proto::ReplayDeadLettersRequest {
                topic: "t".into(),
                group: "g".into(),
                ids: vec![id0.clone(), "999999".into()],
                ..Default::default()
            },
            Code::NotFound,
            "dead letter 999999",
        ),
        (
            proto::ReplayDeadLettersRequest {
                topic: "t".into(),
                group: "nope".into(),
                all: true,
                ..Default::default()
            },
            Code::NotFound,
            "group",
        ),
    ];
    for (req, code, prefix) in cases {
        let err = dlq.replay_dead_letters(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
        assert!(err.message().starts_with(prefix), "{}", err.message());
    }
    let err = dlq
        .purge_dead_letters(proto::PurgeDeadLettersRequest {
            topic: "t".into(),
            group: "g".into(),
            ids: vec!["999999".into(), id0.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = dlq
        .purge_dead_letters(proto::PurgeDeadLettersRequest {
            topic: "t".into(),
            group: "g".into(),
            ids: vec![id0.clone()],
            all: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .nack(proto::NackRequest {
            ack_ids: vec![got[0].ack_id.clone()],
            delay: Some(prost_types::Duration {
                seconds: 0,
                nanos: -5,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Nothing changed.
    assert_eq!(list(&server, "t", "g").await.total_count, 12);
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(300))
            .await
            .is_none(),
        "nothing was replayed"
    );

    // Replay all matching a filter (type), then purge by id.
    let resp = dlq
        .replay_dead_letters(proto::ReplayDeadLettersRequest {
            topic: "t".into(),
            group: "g".into(),
            all: true,
            filter: Some(proto::DeadLetterFilter {
                types: vec!["Other".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((resp.replayed_count, resp.remaining_count), (0, 12));
    let resp = dlq
        .purge_dead_letters(proto::PurgeDeadLettersRequest {
            topic: "t".into(),
            group: "g".into(),
            ids: vec![id0],
            all: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((resp.purged_count, resp.remaining_count), (1, 11));
    server.stop().await;
}
