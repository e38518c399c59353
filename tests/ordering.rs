//! Per-key ordering: 4 consumers, 50 keys, 20,000 events, one consumer that
//! randomly nacks. Per key, the acked events come in publish order.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use herald::proto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_group_acks_each_key_in_publish_order() {
    const N: usize = 20_000;
    const KEYS: usize = 50;
    let server = TestServer::start().await;
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "orders".into(),
                name: "projection".into(),
                start_position: Some(earliest()),
                ordered: Some(true),
                max_delivery_attempts: Some(0),
                retry_policy: Some(proto::RetryPolicy {
                    min_backoff: Some(dur(Duration::ZERO)),
                    max_backoff: Some(dur(Duration::ZERO)),
                    multiplier: Some(1.0),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut publisher = server.publisher();
    let mut expected: HashMap<String, Vec<u64>> = HashMap::new();
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let events: Vec<proto::Event> = chunk
            .iter()
            .map(|i| proto::Event {
                id: format!("e{i}"),
                r#type: "OrderUpdated".into(),
                key: format!("order-{}", (i * 7919) % KEYS),
                data: Bytes::from(vec![0u8; 16]),
                ..Default::default()
            })
            .collect();
        let resp = publisher
            .publish(proto::PublishRequest {
                topic: "orders".into(),
                events: events.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        for (e, r) in events.iter().zip(resp.results) {
            expected.entry(e.key.clone()).or_default().push(r.offset);
        }
    }

    let acked: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for consumer in 0..4u64 {
        let mut client = server.subscriber();
        let acked = acked.clone();
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = subscribe(&mut client, "orders", "projection", 200).await;
            let mut rng = consumer * 0x9E37_79B9 + 1;
            while total.load(std::sync::atomic::Ordering::SeqCst) < N {
                let Some(batch) = maybe_batch(&mut stream, Duration::from_millis(300)).await else {
                    continue;
                };
                let mut ack_ids = Vec::new();
                let mut nack_ids = Vec::new();
                for d in batch {
                    // Consumer 0 rejects about one delivery in five.
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if consumer == 0 && rng % 5 == 0 {
                        nack_ids.push(d.ack_id);
                    } else {
                        let e = d.event.unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .entry(e.key)
                            .or_default()
                            .push(e.offset);
                        ack_ids.push(d.ack_id);
                    }
                }
                if !nack_ids.is_empty() {
                    client
                        .nack(proto::NackRequest {
                            ack_ids: nack_ids,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
                if !ack_ids.is_empty() {
                    let n = ack_ids.len();
                    let resp = ack(&mut client, ack_ids).await;
                    assert_eq!(resp.acked_count as usize, n);
                    total.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("drained in time")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.values().map(Vec::len).sum::<usize>(), N);
    for (key, offsets) in &expected {
        assert_eq!(
            acked.get(key),
            Some(offsets),
            "acks of {key} follow publish order"
        );
    }
    let stats = server.group_stats("orders", "projection").await;
    assert!(stats.nacked > 0, "the nacking consumer did nack");
    assert_eq!(stats.backlog, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_key_is_findable_and_other_keys_flow() {
    let server = TestServer::start().await;
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "t".into(),
                name: "g".into(),
                start_position: Some(earliest()),
                ordered: Some(true),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let events: Vec<proto::Event> = [("a", 0), ("b", 1), ("a", 2), ("a", 3), ("b", 4)]
        .iter()
        .map(|(k, i)| proto::Event {
            key: k.to_string(),
            ..event(&format!("e{i}"))
        })
        .collect();
    server.publish_events("t", events).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 10).await;
    let first = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(ids(&first), vec!["e0", "e1"], "one event per key");
    // e0 fails (retry in 1 s by default); b keeps flowing.
    client
        .nack(proto::NackRequest {
            ack_ids: vec![first[0].ack_id.clone()],
            reason: "db down".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    ack(&mut client, vec![first[1].ack_id.clone()]).await;
    let next = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(ids(&next), vec!["e4"]);
    let group = server
        .admin()
        .get_group(proto::GetGroupRequest {
            topic: "t".into(),
            group: "g".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(group.stats.unwrap().blocked_keys, 1);
    assert_eq!(group.blocked_keys.len(), 1);
    let b = &group.blocked_keys[0];
    assert_eq!(
        (b.key.as_str(), b.offset, b.attempts, b.waiting),
        ("a", 0, 1, 2)
    );
    // The ordering mode is fixed.
    let err = server
        .admin()
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                topic: "t".into(),
                name: "g".into(),
                ordered: Some(false),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    server.stop().await;
}
