//! Ack ids are unforgeable and bound to their group (issue 10, item 4;
//! issue 9: valid on every node and across restarts): a forged, a guessed or
//! an altered ack id changes nothing, and a genuine one stays valid after a
//! restart (a late ack of an event still pending is honoured).

mod common;

use std::time::Duration;

use common::*;
use herald::proto;
use tonic::Code;

/// Replaces one dash-separated field of an ack id.
fn alter(ack_id: &str, field: usize, value: &str) -> String {
    let mut parts: Vec<&str> = ack_id.split('-').collect();
    parts[field] = value;
    parts.join("-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_guessed_and_other_groups_ack_ids_change_nothing() {
    let server = TestServer::start().await;
    server
        .create_group("orders", "a", Duration::from_secs(30), Duration::ZERO)
        .await;
    server
        .create_group("orders", "b", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_n("orders", "o", 2).await;
    let mut sub = server.subscriber();
    let mut a = subscribe(&mut sub, "orders", "a", 10).await;
    let mut b = subscribe(&mut sub, "orders", "b", 10).await;
    let mut got_a = Vec::new();
    while got_a.len() < 2 {
        got_a.extend(next_batch(&mut a, Duration::from_secs(5)).await);
    }
    let mut got_b = Vec::new();
    while got_b.len() < 2 {
        got_b.extend(next_batch(&mut b, Duration::from_secs(5)).await);
    }
    let a0 = got_a[0].ack_id.clone();
    let b0 = &got_b[0].ack_id;
    // Group a's id pointed at group b (its group field swapped in), a
    // guessed lease number, another key, and a made-up tag.
    let b_group = b0.split('-').next().unwrap();
    let forgeries = [
        alter(&a0, 0, b_group),
        alter(&a0, 2, "1"),
        alter(&a0, 1, "1"),
        alter(&a0, 3, "0123456789abcdef"),
    ];
    for forged in &forgeries {
        let err = sub
            .ack(proto::AckRequest {
                ack_ids: vec![forged.clone()],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{forged}");
        let err = sub
            .nack(proto::NackRequest {
                ack_ids: vec![forged.clone()],
                dead_letter: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{forged}");
    }
    for group in ["a", "b"] {
        let stats = server.group_stats("orders", group).await;
        assert_eq!(
            (stats.acked, stats.in_flight, stats.dead_letter_count),
            (0, 2, 0),
            "{group}"
        );
    }
    // The genuine ids do their work, each in its own group only.
    assert_eq!(ack(&mut sub, vec![a0]).await.acked_count, 1);
    assert_eq!(server.group_stats("orders", "a").await.acked, 1);
    assert_eq!(server.group_stats("orders", "b").await.acked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_id_stays_valid_across_a_restart() {
    let mut server = TestServer::start().await;
    server
        .create_group("orders", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_n("orders", "o", 1).await;
    let mut sub = server.subscriber();
    let ack_id = {
        let mut stream = subscribe(&mut sub, "orders", "g", 1).await;
        next_batch(&mut stream, Duration::from_secs(5)).await[0]
            .ack_id
            .clone()
    };
    server.restart().await;
    // The event is pending again (its lease was released); the consumer did
    // the work, so its ack from before the restart completes it.
    let mut sub = server.subscriber();
    let resp = ack(&mut sub, vec![ack_id]).await;
    assert_eq!(resp.acked_count, 1, "{resp:?}");
    let mut stream = subscribe(&mut sub, "orders", "g", 1).await;
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(500))
            .await
            .is_none(),
        "an acknowledged event came back"
    );
}
