//! The Redis backend's chunk cache: a node keeps the stream chunks it
//! appended, and a claim that takes one whole does not read it back from
//! Redis; a chunk Redis no longer holds as this node wrote it (lost in a
//! failover and stored anew at the same offsets) is read, not served from
//! the cache.

mod common;

use std::time::Duration;

use common::consume::ack_ids;
use common::redis::node_config;
use common::*;
use herald::cli::serve::start;
use herald::proto;
use herald::proto::publisher_service_client::PublisherServiceClient;

/// Stream reads (`XRANGE`, `XREVRANGE`) Redis served since its stats were reset.
fn stream_reads(redis: &common::redis::RedisServer) -> u64 {
    redis.calls("xrange") + redis.calls("xrevrange")
}

/// Ack cycles of 100 over 1,000 events published through this node, with
/// the cache of `cache_bytes`; the stream reads of the cycles after the
/// first.
async fn reads_while_consuming(cache_bytes: usize) -> u64 {
    let server = TestServer::start_with(|c| c.redis.chunk_cache_bytes = cache_bytes).await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_n("t", "e", 1000).await;
    let redis = server.redis.as_ref().unwrap();
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 100).await;
    // The first claim knows nothing of the group's cursor: it reads.
    let mut batch = next_batch(&mut stream, Duration::from_secs(5)).await;
    let mut seen = ids(&batch);
    redis.cli(&["CONFIG", "RESETSTAT"]);
    while seen.len() < 1000 {
        assert_eq!(ack(&mut client, ack_ids(&batch)).await.acked_count, 100);
        batch = next_batch(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(batch.len(), 100);
        for d in &batch {
            let e = d.event.as_ref().unwrap();
            assert_eq!(e.id, format!("e-{}", e.offset), "the event at its offset");
            assert_eq!(e.r#type, "T");
            assert!(e.publish_time.is_some());
            assert_eq!(d.delivery_attempt, 1);
        }
        seen.extend(ids(&batch));
    }
    let reads = stream_reads(redis);
    assert_eq!(ack(&mut client, ack_ids(&batch)).await.acked_count, 100);
    server.stop().await;
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_chunks_this_node_appended_does_not_read_them_back() {
    // Without the cache every cycle reads its chunk; with it, only the
    // group's gauges do (once a second, for the oldest unacked event).
    let cached = reads_while_consuming(64 << 20).await;
    let uncached = reads_while_consuming(0).await;
    assert!(
        uncached >= 9,
        "{uncached} reads in 9 cycles without the cache"
    );
    assert!(
        cached * 3 <= uncached,
        "{cached} reads with the cache, {uncached} without"
    );
}

/// The keys of topic `t` and their `DUMP`s.
fn dump_topic(con: &mut ::redis::Connection) -> Vec<(String, Vec<u8>)> {
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("herald:{t}:*").query(con).unwrap();
    keys.into_iter()
        .map(|k| {
            let v: Vec<u8> = ::redis::cmd("DUMP").arg(&k).query(con).unwrap();
            (k, v)
        })
        .collect()
}

/// Puts topic `t` back as `dump` holds it (what a failover to a replica
/// that missed the last writes, or a restart that lost them, leaves).
fn restore_topic(con: &mut ::redis::Connection, dump: &[(String, Vec<u8>)]) {
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("herald:{t}:*").query(con).unwrap();
    for k in keys {
        let _: () = ::redis::cmd("DEL").arg(k).query(con).unwrap();
    }
    for (k, v) in dump {
        let _: () = ::redis::cmd("RESTORE")
            .arg(k)
            .arg(0)
            .arg(v)
            .query(con)
            .unwrap();
    }
}

fn events(prefix: &str, n: usize) -> Vec<proto::Event> {
    (0..n)
        .map(|i| proto::Event {
            data: vec![b'x'; 50].into(),
            ..event(&format!("{prefix}-{i}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_chunk_that_redis_lost_and_stored_anew_is_read_not_served() {
    let server = TestServer::start().await;
    let redis = server.redis.as_ref().unwrap();
    let mut con = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_events("t", events("one", 10)).await;
    let mut client = server.subscriber();
    {
        // Teaches the node where the group's next claim starts (10).
        let mut stream = subscribe(&mut client, "t", "g", 10).await;
        let batch = next_batch(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(ack(&mut client, ack_ids(&batch)).await.acked_count, 10);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A topic's last publish time ahead of the Redis clock (a promoted
    // replica whose clock is behind): every append gets that same time.
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        + 3_600_000_000;
    redis.cli(&["HSET", "herald:{t}:m", "last", &ahead.to_string()]);
    let before = dump_topic(&mut con);
    // Cached by the node, then lost by Redis.
    assert_eq!(server.publish_events("t", events("was", 10)).await[0], 10);
    restore_topic(&mut con, &before);
    // Another node stores other events, of the same sizes, at those offsets.
    let dir = tempfile::tempdir().unwrap();
    let other = start(node_config(&redis.url(), dir.path())).await.unwrap();
    let mut publisher = PublisherServiceClient::new(connect(other.addr).await);
    let offsets: Vec<u64> = publisher
        .publish(proto::PublishRequest {
            topic: "t".into(),
            events: events("new", 10),
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, (10..20).collect::<Vec<_>>());
    let mut stream = subscribe(&mut client, "t", "g", 10).await;
    let batch = next_batch(&mut stream, Duration::from_secs(5)).await;
    let want: Vec<String> = (0..10).map(|i| format!("new-{i}")).collect();
    assert_eq!(ids(&batch), want);
    let times: Vec<_> = batch
        .iter()
        .map(|d| d.event.as_ref().unwrap().publish_time.unwrap().seconds)
        .collect();
    assert!(
        times
            .iter()
            .all(|&t| t == i64::try_from(ahead / 1_000_000).unwrap()),
        "published at the topic's last time, as the lost events were: {times:?}"
    );
    other.stop().await.unwrap();
    server.stop().await;
}
