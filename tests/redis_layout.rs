//! The Redis layout and its scripts: a Redis written by format 1 (one
//! lease record per delivery) or format 2 (one stream entry per event) is
//! taken over by this release (format 2 adds batch leases, 3 writes stream
//! entries in chunks, 4 batch leases' keys as ranges), and what they stored still acts; a newer format is
//! refused; an ack claims the acking consumer's next batch in the same
//! script.

mod common;

use std::time::Duration;

use common::consume::ack_ids;
use common::*;
use herald::cli::serve::start;
use herald::config::Config;
use herald::proto::{self, SubscribeResponse};
use tonic::Streaming;
use tonic::transport::Channel;

const MARKER: &str = "herald:{herald}:format";

/// The group id and lease number of an ack id (`group-key-lease-tag`, hex).
fn group_and_lease(ack_id: &str) -> (u64, u64) {
    let parts: Vec<u64> = ack_id
        .split('-')
        .map(|p| u64::from_str_radix(p, 16).expect("hex"))
        .collect();
    (parts[0], parts[2])
}

/// The error a node fails to start with on `config`.
async fn refused(config: Config) -> String {
    match start(config).await {
        Ok(_) => panic!("the node started"),
        Err(e) => format!("{e:#}"),
    }
}

type Subscriber = proto::subscriber_service_client::SubscriberServiceClient<Channel>;

/// Group `g` of topic `t` (lease `deadline`) over `n` events, a consumer of
/// it with `max_in_flight`, and its first batch.
async fn consuming(
    server: &TestServer,
    deadline: Duration,
    n: usize,
    max_in_flight: u32,
) -> (
    Subscriber,
    Streaming<SubscribeResponse>,
    Vec<proto::Delivery>,
) {
    server
        .create_group("t", "g", deadline, Duration::ZERO)
        .await;
    server.publish_n("t", "e", n).await;
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", max_in_flight).await;
    let batch = next_batch(&mut stream, Duration::from_secs(5)).await;
    (client, stream, batch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_of_format_1_is_taken_over_and_its_entry_leases_still_ack() {
    let mut server = TestServer::start().await;
    let redis = server.redis.as_ref().expect("a Redis suite binary");
    redis.cli(&["SET", MARKER, "1"]);
    // While a node (of the older release, as far as this one can tell)
    // heartbeats, the takeover is refused.
    let err = refused(server.config.clone()).await;
    assert!(err.contains("stop them all"), "{err}");
    assert_eq!(redis.cli(&["GET", MARKER]).trim(), "1");
    // A stopped node leaves the registry; then this release takes over.
    server.restart().await;
    let redis = server.redis.as_ref().unwrap();
    assert_eq!(redis.cli(&["GET", MARKER]).trim(), "4");

    let (mut client, _stream, batch) = consuming(&server, Duration::from_secs(30), 3, 10).await;
    assert_eq!(batch.len(), 3);
    let (gid, lease) = group_and_lease(&batch[0].ack_id);
    assert_eq!(lease % 2, 1, "first deliveries share an odd batch lease");

    // Rewrite the batch as format 1 stored it: one entry and one lease
    // member per delivery, under the same (odd) lease number.
    let g = format!("herald:{{t}}:g:{gid}");
    let record = redis.cli(&["HGET", &format!("{g}:k"), &lease.to_string()]);
    let mut parts = record.trim().splitn(3, '|');
    let (deadline, keys, consumer) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
    );
    let keys = batch_keys(&keys);
    assert_eq!(keys.len(), 3, "batch record {record:?}");
    for key in &keys {
        let entry = format!("1|{lease}|{deadline}|{consumer}|0|L|");
        redis.cli(&["HSET", &format!("{g}:e"), key.as_str(), &entry]);
        redis.cli(&["ZADD", &format!("{g}:l"), &deadline, key.as_str()]);
    }
    redis.cli(&["HDEL", &format!("{g}:k"), &lease.to_string()]);
    redis.cli(&["ZREM", &format!("{g}:l"), &format!("b{lease}")]);

    let resp = ack(&mut client, ack_ids(&batch)).await;
    assert_eq!(resp.acked_count, 3, "{resp:?}");
    let stats = server.group_stats("t", "g").await;
    assert_eq!(stats.in_flight, 0);
    assert_eq!(redis.cli(&["HLEN", &format!("{g}:e")]).trim(), "0");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_of_format_3_is_taken_over_and_its_listed_batch_keys_ack() {
    let mut server = TestServer::start().await;
    server.redis.as_ref().unwrap().cli(&["SET", MARKER, "3"]);
    server.restart().await;
    let redis = server.redis.as_ref().unwrap();
    assert_eq!(redis.cli(&["GET", MARKER]).trim(), "4");

    let (mut client, _stream, batch) = consuming(&server, Duration::from_secs(30), 6, 10).await;
    assert_eq!(batch.len(), 6);
    let (gid, lease) = group_and_lease(&batch[0].ack_id);
    // Format 4 writes the batch's keys as one range; rewrite it as format 3
    // listed them.
    let g = format!("herald:{{t}}:g:{gid}");
    let field = lease.to_string();
    let record = redis.cli(&["HGET", &format!("{g}:k"), &field]);
    let parts: Vec<&str> = record.trim().splitn(3, '|').collect();
    assert!(parts[1].contains('-'), "batch record {record:?}");
    let listed = batch_keys(parts[1]).join(",");
    let old = format!("{}|{listed}|{}", parts[0], parts[2]);
    redis.cli(&["HSET", &format!("{g}:k"), &field, &old]);

    // Two, then the rest with one of them again: key by key either way.
    let ids = ack_ids(&batch);
    let resp = ack(&mut client, ids[..2].to_vec()).await;
    assert_eq!(resp.acked_count, 2, "{resp:?}");
    assert_eq!(server.group_stats("t", "g").await.in_flight, 4);
    let resp = ack(&mut client, ids[1..].to_vec()).await;
    assert_eq!(resp.acked_count, 4, "{resp:?}");
    assert_eq!(server.group_stats("t", "g").await.in_flight, 0);
    assert_eq!(redis.cli(&["HLEN", &format!("{g}:k")]).trim(), "0");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_publishes_share_batch_leases_of_up_to_128_as_ranges() {
    let server = TestServer::start().await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    // One stream entry per call.
    for i in 0..130 {
        server
            .publish_events("t", vec![event(&format!("e-{i}"))])
            .await;
    }
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 200).await;
    let mut batch = Vec::new();
    while batch.len() < 130 {
        batch.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    let leases: Vec<u64> = batch.iter().map(|d| group_and_lease(&d.ack_id).1).collect();
    assert!(leases[..128].iter().all(|&l| l == leases[0]), "{leases:?}");
    assert!(
        leases[128..]
            .iter()
            .all(|&l| l == leases[128] && l != leases[0])
    );
    let (gid, _) = group_and_lease(&batch[0].ack_id);
    let redis = server.redis.as_ref().unwrap();
    let k = format!("herald:{{t}}:g:{gid}:k");
    for (lease, range) in [(leases[0], "0-127"), (leases[128], "128-129")] {
        let record = redis.cli(&["HGET", &k, &lease.to_string()]);
        assert_eq!(record.trim().split('|').nth(1), Some(range), "{record:?}");
    }

    let resp = ack(&mut client, ack_ids(&batch)).await;
    assert_eq!(resp.acked_count, 130, "{resp:?}");
    assert_eq!(redis.cli(&["HLEN", &k]).trim(), "0");
    assert_eq!(server.group_stats("t", "g").await.in_flight, 0);
    server.stop().await;
}

/// The keys of a batch record's key list: comma-separated keys or ranges
/// `first-last`.
fn batch_keys(list: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for item in list.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                keys.extend((a..=b).map(|k| k.to_string()));
            }
            None => keys.push(item.to_string()),
        }
    }
    keys
}

/// A stream entry: id and fields.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// Rewrites every chunk of stream `t` as formats 1 and 2 stored events: one
/// entry per event with fields t, y, k, e.
fn unchunk(redis: &common::redis::RedisServer) {
    let client = ::redis::Client::open(redis.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    let key = "herald:{t}:s";
    let entries: Vec<StreamEntry> = ::redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE");
    let mut singles = Vec::new();
    for (id, fields) in entries {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("field {name} of {id}"))
        };
        let text = |name: &str| String::from_utf8(field(name)).unwrap();
        let first: u64 = id.trim_end_matches("-1").parse().unwrap();
        let (t, records) = (text("t"), field("c"));
        assert_eq!(text("yz"), "", "one type in the chunk");
        assert_eq!(text("kz"), "", "no keys in the chunk");
        let mut at = 0;
        for (i, size) in text("z").split(',').enumerate() {
            let size: usize = size.parse().unwrap();
            let record = records[at..at + size].to_vec();
            at += size;
            singles.push((first + i as u64, t.clone(), text("y"), record));
        }
    }
    let _: () = ::redis::cmd("DEL").arg(key).query(&mut con).expect("DEL");
    for (offset, t, y, record) in singles {
        let _: String = ::redis::cmd("XADD")
            .arg(key)
            .arg(format!("{offset}-1"))
            .arg("t")
            .arg(t)
            .arg("y")
            .arg(y)
            .arg("k")
            .arg("")
            .arg("e")
            .arg(record)
            .query(&mut con)
            .expect("XADD");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_of_format_2_is_taken_over_and_its_one_event_entries_read() {
    let mut server = TestServer::start().await;
    server.redis.as_ref().unwrap().cli(&["SET", MARKER, "2"]);
    server.restart().await;
    let redis = server.redis.as_ref().unwrap();
    assert_eq!(redis.cli(&["GET", MARKER]).trim(), "4");
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_n("t", "e", 150).await;
    assert_eq!(
        redis.cli(&["XLEN", "herald:{t}:s"]).trim(),
        "2",
        "two chunks"
    );
    unchunk(redis);
    assert_eq!(redis.cli(&["XLEN", "herald:{t}:s"]).trim(), "150");
    // Chunks after the one-event entries.
    server.publish_n("t", "f", 10).await;
    assert_eq!(redis.cli(&["XLEN", "herald:{t}:s"]).trim(), "151");

    // Read from the middle, consume, nack one and get it back (a retry
    // reads its event by offset).
    let events = read_events(server.channel.clone(), "t", 40, 20).await;
    let offsets: Vec<u64> = events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (40..60).collect::<Vec<_>>());
    assert_eq!(events[0].id, "e-40");

    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 1000).await;
    let mut got = Vec::new();
    while got.len() < 160 {
        got.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    let want: Vec<String> = (0..150)
        .map(|i| format!("e-{i}"))
        .chain((0..10).map(|i| format!("f-{i}")))
        .collect();
    assert_eq!(ids(&got), want);
    client
        .nack(proto::NackRequest {
            ack_ids: vec![got[7].ack_id.clone()],
            ..Default::default()
        })
        .await
        .expect("nack");
    let again = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event.as_ref().unwrap().id, "e-7");
    assert_eq!(again[0].delivery_attempt, 2);
    server.stop().await;
}

/// Bytes Redis has sent to its clients.
fn net_output(redis: &common::redis::RedisServer) -> u64 {
    redis
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_net_output_bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_ships_a_large_chunk_only_within_its_byte_budget() {
    // Batches of about 2 KiB from one 100 KiB chunk: each claim carries
    // its two events' records, not the whole chunk (about 5 MB in all).
    let server = TestServer::start_with(|c| c.limits.max_batch_bytes = 2048).await;
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    let events = (0..100)
        .map(|i| proto::Event {
            data: vec![7u8; 1000].into(),
            ..event(&format!("e-{i}"))
        })
        .collect();
    server.publish_events("t", events).await;
    let redis = server.redis.as_ref().unwrap();
    let before = net_output(redis);
    let mut client = server.subscriber();
    let mut stream = subscribe(&mut client, "t", "g", 1000).await;
    let mut got = 0;
    while got < 100 {
        let batch = next_batch(&mut stream, Duration::from_secs(5)).await;
        assert!(batch.len() <= 3, "{} events in a 2 KiB batch", batch.len());
        assert!(
            batch
                .iter()
                .all(|d| d.event.as_ref().unwrap().data.len() == 1000)
        );
        got += batch.len();
        ack(&mut client, ack_ids(&batch)).await;
    }
    let sent = net_output(redis) - before;
    assert!(
        sent < 1_000_000,
        "Redis sent {sent} bytes for 100 KB of events"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_format_is_refused_naming_both() {
    let server = TestServer::start().await;
    server.redis.as_ref().unwrap().cli(&["SET", MARKER, "5"]);
    let err = refused(server.config.clone()).await;
    assert!(
        err.contains("format 5") && err.contains("format 4"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_claims_the_consumers_next_batch_in_the_same_script() {
    const CYCLES: u64 = 20;
    let server = TestServer::start().await;
    let (mut client, mut stream, mut batch) =
        consuming(&server, Duration::from_secs(30), 2200, 100).await;
    // A first cycle outside the count: the script's first call on a
    // connection is answered NOSCRIPT, loaded and sent again (two calls).
    ack(&mut client, ack_ids(&batch)).await;
    batch = next_batch(&mut stream, Duration::from_secs(5)).await;
    let redis = server.redis.as_ref().unwrap();
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let started = std::time::Instant::now();
    for _ in 0..CYCLES {
        assert_eq!(batch.len(), 100);
        let resp = ack(&mut client, ack_ids(&batch)).await;
        assert_eq!(resp.acked_count, 100);
        batch = next_batch(&mut stream, Duration::from_secs(5)).await;
    }
    // One script per cycle (a claim of its own would make it two per
    // cycle), plus the node's background scripts (heartbeat, the
    // consumer's poll, group stats): a few per second while the cycles ran.
    let scripts = redis.calls("evalsha");
    let background = 4 * (started.elapsed().as_secs() + 1);
    assert!(
        CYCLES + background < 2 * CYCLES,
        "the cycles took {:?}: too slow to tell one script per cycle from two",
        started.elapsed()
    );
    assert!(
        scripts <= CYCLES + background,
        "{scripts} scripts for {CYCLES} ack cycles (at most {background} in the background)"
    );
    assert_eq!(batch.len(), 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_lease_that_runs_out_comes_back_whole() {
    let server = TestServer::start().await;
    let (_client, mut stream, mut batch) =
        consuming(&server, Duration::from_secs(1), 600, 600).await;
    let mut first = 0;
    loop {
        assert!(batch.iter().all(|d| d.delivery_attempt == 1));
        first += batch.len();
        if first >= 600 {
            break;
        }
        batch = next_batch(&mut stream, Duration::from_secs(5)).await;
    }
    // Unacked: the lease of the batch runs out (expired 256 at a time)
    // and every event comes back once with attempt 2.
    let mut again = std::collections::HashSet::new();
    while again.len() < 600 {
        for d in next_batch(&mut stream, Duration::from_secs(10)).await {
            assert_eq!(d.delivery_attempt, 2);
            assert!(again.insert(d.event.unwrap().id), "redelivered twice");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_from_before_a_seek_is_unknown_though_its_key_is_pending_again() {
    let server = TestServer::start().await;
    let (mut client, mut stream, before) = consuming(&server, Duration::from_secs(30), 3, 10).await;
    assert_eq!(before.len(), 3);
    server
        .admin()
        .seek(proto::SeekRequest {
            topic: "t".into(),
            group: "g".into(),
            position: Some(earliest()),
        })
        .await
        .expect("seek");
    let after = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(after.len(), 3, "pending again after the seek");
    let resp = ack(&mut client, vec![before[0].ack_id.clone()]).await;
    assert_eq!(
        resp.results[0].outcome,
        proto::LeaseOutcome::Unknown as i32,
        "{resp:?}"
    );
    let resp = ack(&mut client, ack_ids(&after)).await;
    assert_eq!(resp.acked_count, 3);
    server.stop().await;
}
