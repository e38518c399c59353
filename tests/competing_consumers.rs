//! Consumers of one group share the work: no event is in flight at two of
//! them at once, and none is missing.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_drain_ten_thousand_without_overlap() {
    const N: usize = 10_000;
    let server = TestServer::start().await;
    server
        .create_group("work", "workers", Duration::from_secs(60), Duration::ZERO)
        .await;
    server.publish_n("work", "w", N).await;

    // Every id currently held by some consumer, and who acked what.
    let held: Arc<Mutex<HashSet<String>>> = Arc::default();
    let acked: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut client = server.subscriber();
        let held = held.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = subscribe(&mut client, "work", "workers", 50).await;
            let mut mine = 0usize;
            loop {
                if acked.lock().unwrap().len() >= N {
                    return mine;
                }
                let Some(batch) = maybe_batch(&mut stream, Duration::from_millis(500)).await else {
                    continue;
                };
                assert!(batch.len() <= 50, "max_in_flight honoured");
                for d in &batch {
                    let id = d.event.as_ref().unwrap().id.clone();
                    assert!(
                        held.lock().unwrap().insert(id.clone()),
                        "{id} in flight at two consumers"
                    );
                }
                // Simulate a little work so the consumers interleave.
                tokio::time::sleep(Duration::from_millis(1)).await;
                for d in &batch {
                    let id = d.event.as_ref().unwrap().id.clone();
                    held.lock().unwrap().remove(&id);
                    *acked.lock().unwrap().entry(id).or_default() += 1;
                }
                let resp = ack(
                    &mut client,
                    batch.iter().map(|d| d.ack_id.clone()).collect(),
                )
                .await;
                assert_eq!(resp.acked_count as usize, batch.len());
                mine += batch.len();
            }
        }));
    }
    let mut per_consumer = Vec::new();
    for t in tasks {
        per_consumer.push(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("drained in time")
                .unwrap(),
        );
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), N, "none missing");
    assert!(acked.values().all(|&n| n == 1), "each acked exactly once");
    assert!(
        per_consumer.iter().all(|&n| n > 0),
        "all three shared the work: {per_consumer:?}"
    );

    let info = server
        .admin()
        .get_group(herald::proto::GetGroupRequest {
            topic: "work".into(),
            group: "workers".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    let stats = info.stats.unwrap();
    assert_eq!(stats.ack_floor, N as u64);
    assert_eq!(stats.backlog, 0);
    assert_eq!(stats.in_flight, 0);
    server.stop().await;
}
