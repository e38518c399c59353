//! Every group receives every event.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_each_receive_every_event() {
    let server = TestServer::start().await;
    let lease = Duration::from_secs(30);
    server
        .create_group("orders", "billing", lease, Duration::ZERO)
        .await;
    server
        .create_group("orders", "shipping", lease, Duration::ZERO)
        .await;
    server.publish_n("orders", "o", 250).await;

    for group in ["billing", "shipping"] {
        let mut client = server.subscriber();
        let mut stream = subscribe(&mut client, "orders", group, 100).await;
        let mut seen = BTreeSet::new();
        while seen.len() < 250 {
            let batch = next_batch(&mut stream, Duration::from_secs(5)).await;
            let acks: Vec<String> = batch.iter().map(|d| d.ack_id.clone()).collect();
            for id in ids(&batch) {
                assert!(seen.insert(id), "{group} got a duplicate");
            }
            ack(&mut client, acks).await;
        }
        let expected: BTreeSet<String> = (0..250).map(|i| format!("o-{i}")).collect();
        assert_eq!(seen, expected, "{group} got every event");
    }
    server.stop().await;
}
