//! The Redis layout and its scripts: a Redis written by format 1 (one
//! lease record per delivery), format 2 (one stream entry per event) or
//! format 4 (records inside the stream entries) is taken over by this
//! release (format 2 adds batch leases, 3 writes stream entries in chunks,
//! 4 batch leases' keys as ranges, 5 keeps records in the payload hash),
//! and what they stored still acts; a newer format is refused; the payload
//! hash holds exactly the records of the stored chunks, also when an append
//! call runs twice or Redis refuses it (out of memory); an ack claims the
//! acking consumer's next batch in the same script.

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
    assert_eq!(redis.cli(&["GET", MARKER]).trim(), "5");

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
    assert_eq!(redis.cli(&["GET", MARKER]).trim(), "5");

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

/// The entries of stream `t`.
fn entries(con: &mut ::redis::Connection) -> Vec<StreamEntry> {
    ::redis::cmd("XRANGE")
        .arg("herald:{t}:s")
        .arg("-")
        .arg("+")
        .query(con)
        .expect("XRANGE")
}

/// A field of a stream entry.
fn field_of(id: &str, fields: &[(String, Vec<u8>)], name: &str) -> Vec<u8> {
    fields
        .iter()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("field {name} of {id}"))
}

/// The payload hash field a format 5 entry names (`p`: `<length>|<field>`).
fn payload_field(id: &str, fields: &[(String, Vec<u8>)]) -> String {
    let p = String::from_utf8(field_of(id, fields, "p")).unwrap();
    let (len, field) = p.split_once('|').expect("length|field");
    assert!(len.parse::<usize>().is_ok(), "{p}");
    field.to_string()
}

/// The records of a format 5 chunk entry, read from the payload hash.
fn records_of(con: &mut ::redis::Connection, id: &str, fields: &[(String, Vec<u8>)]) -> Vec<u8> {
    ::redis::cmd("HGET")
        .arg("herald:{t}:x")
        .arg(payload_field(id, fields))
        .query(con)
        .expect("HGET")
}

/// Rewrites every chunk of stream `t` as formats 1 and 2 stored events: one
/// entry per event with fields t, y, k, e.
fn unchunk(redis: &common::redis::RedisServer) {
    let client = ::redis::Client::open(redis.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    let key = "herald:{t}:s";
    let mut singles = Vec::new();
    for (id, fields) in entries(&mut con) {
        let text = |name: &str| String::from_utf8(field_of(&id, &fields, name)).unwrap();
        let first: u64 = id.trim_end_matches("-1").parse().unwrap();
        let (t, records) = (text("t"), records_of(&mut con, &id, &fields));
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
    let _: () = ::redis::cmd("DEL")
        .arg(key)
        .arg("herald:{t}:x")
        .query(&mut con)
        .expect("DEL");
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

/// A node that took over a Redis marked with `format`, with group `g` of
/// topic `t` over 150 events `e-*` (stored as this release does).
async fn taken_over(format: &str) -> TestServer {
    let mut server = TestServer::start().await;
    server.redis.as_ref().unwrap().cli(&["SET", MARKER, format]);
    server.restart().await;
    let redis = server.redis.as_ref().unwrap();
    assert_eq!(redis.cli(&["GET", MARKER]).trim(), "5");
    server
        .create_group("t", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_n("t", "e", 150).await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_of_format_2_is_taken_over_and_its_one_event_entries_read() {
    let server = taken_over("2").await;
    let redis = server.redis.as_ref().unwrap();
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

    reads_consumes_and_retries(server).await;
}

/// Over 150 events `e-*` and 10 `f-*` in topic `t` with group `g`: reads
/// from the middle (across the two kinds), consumes all, nacks one and
/// gets it back (a retry reads its event by offset).
async fn reads_consumes_and_retries(server: TestServer) {
    let events = read_events(server.channel.clone(), "t", 140, 20).await;
    let offsets: Vec<u64> = events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (140..160).collect::<Vec<_>>());
    assert_eq!(events[0].id, "e-140");
    assert_eq!(events[15].id, "f-5");

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

/// Rewrites every chunk of stream `t` as formats 3 and 4 stored it: the
/// records inside the entry (field `c`), none in the payload hash.
fn inline(redis: &common::redis::RedisServer) {
    let client = ::redis::Client::open(redis.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    let mut rewrite = ::redis::pipe();
    rewrite.atomic().cmd("DEL").arg("herald:{t}:s").ignore();
    for (id, fields) in entries(&mut con) {
        let records = records_of(&mut con, &id, &fields);
        let xadd = rewrite.cmd("XADD").arg("herald:{t}:s").arg(&id);
        for (name, value) in &fields {
            if name == "p" {
                xadd.arg("c").arg(&records);
            } else {
                xadd.arg(name).arg(value);
            }
        }
        rewrite.ignore();
        rewrite
            .cmd("HDEL")
            .arg("herald:{t}:x")
            .arg(payload_field(&id, &fields))
            .ignore();
    }
    let _: () = rewrite.query(&mut con).expect("rewrite");
    assert_eq!(redis.cli(&["EXISTS", "herald:{t}:x"]).trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_of_format_4_is_taken_over_and_its_inline_records_read() {
    let server = taken_over("4").await;
    let redis = server.redis.as_ref().unwrap();
    assert_eq!(redis.cli(&["HLEN", "herald:{t}:x"]).trim(), "2");
    inline(redis);
    assert_eq!(redis.cli(&["XLEN", "herald:{t}:s"]).trim(), "2");
    // A format 5 chunk after them.
    server.publish_n("t", "f", 10).await;
    assert_eq!(redis.cli(&["HLEN", "herald:{t}:x"]).trim(), "1");

    reads_consumes_and_retries(server).await;
}

/// The payload hash fields the stream entries of `t` name, sorted, and the
/// fields the hash holds, sorted.
fn payload_fields(redis: &common::redis::RedisServer) -> (Vec<String>, Vec<String>) {
    let client = ::redis::Client::open(redis.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    let mut named: Vec<String> = entries(&mut con)
        .iter()
        .map(|(id, fields)| payload_field(id, fields))
        .collect();
    let mut held: Vec<String> = ::redis::cmd("HKEYS")
        .arg("herald:{t}:x")
        .query(&mut con)
        .expect("HKEYS");
    named.sort();
    held.sort();
    (named, held)
}

/// Creates topic `t` with a dedup window of 10 minutes and `max_bytes`.
async fn create_deduplicating(server: &TestServer, max_bytes: Option<u64>) {
    server
        .admin()
        .create_topic(proto::CreateTopicRequest {
            topic: Some(proto::Topic {
                name: "t".into(),
                dedup_window: Some(dur(Duration::from_secs(600))),
                retention_max_bytes: max_bytes,
                ..Default::default()
            }),
        })
        .await
        .expect("create topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_hash_holds_the_records_of_the_stored_chunks_only() {
    let server = TestServer::start().await;
    let redis = server.redis.as_ref().unwrap();
    create_deduplicating(&server, Some(20_000)).await;
    let big = |id: String| proto::Event {
        data: vec![1u8; 1000].into(),
        ..event(&id)
    };
    // Batches of five 1 KB events: retention by bytes keeps the last few.
    for b in 0..20 {
        server
            .publish_events("t", (0..5).map(|i| big(format!("e-{b}-{i}"))).collect())
            .await;
    }
    // Duplicates: a chunk that loses some events, and one that loses all.
    server
        .publish_events(
            "t",
            vec![
                big("e-19-0".into()),
                big("n-1".into()),
                big("e-19-1".into()),
            ],
        )
        .await;
    server
        .publish_events("t", vec![big("e-19-2".into()), big("e-19-3".into())])
        .await;
    let (named, held) = payload_fields(redis);
    assert!(
        (3..20).contains(&named.len()),
        "retention kept some batches: {named:?}"
    );
    assert_eq!(named, held, "every stored chunk has its records, no more");
    let start: u64 = redis
        .cli(&["HGET", "herald:{t}:m", "start"])
        .trim()
        .parse()
        .unwrap();
    let events = read_events(server.channel.clone(), "t", start, 1000).await;
    assert_eq!(events.last().unwrap().id, "n-1");
    assert!(events.iter().all(|e| e.data.len() == 1000));

    server
        .admin()
        .delete_topic(proto::DeleteTopicRequest { name: "t".into() })
        .await
        .expect("delete topic");
    assert_eq!(redis.cli(&["EXISTS", "herald:{t}:x"]).trim(), "0");
    server.stop().await;
}

/// The append script as the node runs it (see `conn.rs`).
const APPEND: &str = concat!(
    include_str!("../src/storage/redis/lua/prelude.lua"),
    "\n",
    include_str!("../src/storage/redis/lua/chunks.lua"),
    "\n",
    include_str!("../src/storage/redis/lua/common.lua"),
    "\n",
    include_str!("../src/storage/redis/lua/claiming.lua"),
    "\n",
    include_str!("../src/storage/redis/lua/append.lua"),
);

/// One append call as a node sends it (HSET of the records, then the
/// script, in one transaction) of one chunk of three events, `records`, `z`
/// and `rest` (y, yz, k, kz) as stored for `e-0`..`e-2`, with the client
/// ids `ids`; the script's first reply item.
fn append_call(
    con: &mut ::redis::Connection,
    nonce: &str,
    records: &[u8],
    z: &str,
    rest: &[Vec<u8>],
    ids: [&str; 3],
) -> String {
    let replies: Vec<::redis::Value> = ::redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg("herald:{t}:x")
        .arg(format!("{nonce}:1"))
        .arg(records)
        .ignore()
        .cmd("EVAL")
        .arg(APPEND)
        .arg(1)
        .arg("herald:{t}:m")
        .arg(&["herald:wake", "t", "3", "3"])
        .arg(&["1", ids[0], "2", ids[1], "3", ids[2]])
        .arg(&["1", "3", z, &records.len().to_string()])
        .arg(rest)
        .arg(&["w-test", "0", nonce])
        .query(con)
        .expect("append call");
    match &replies[..] {
        [::redis::Value::Array(items)] => match &items[0] {
            ::redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
            ::redis::Value::SimpleString(s) => s.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_call_run_twice_keeps_what_its_first_run_stored() {
    // A cluster client resends a transaction whose answer it lost: the
    // second run rewrites the call's payload fields before the script.
    let server = TestServer::start().await;
    let redis = server.redis.as_ref().unwrap();
    create_deduplicating(&server, None).await;
    server.publish_n("t", "e", 3).await;
    let client = ::redis::Client::open(redis.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    let stored = entries(&mut con);
    let (id, fields) = &stored[0];
    let records = records_of(&mut con, id, fields);
    let z = String::from_utf8(field_of(id, fields, "z")).unwrap();
    let rest: Vec<Vec<u8>> = ["y", "yz", "k", "kz"]
        .iter()
        .map(|f| field_of(id, fields, f))
        .collect();

    // One chunk stored as sent (offsets 3-5), one that loses a duplicate
    // (e-0 is in the dedup window; offsets 6-7), each run twice.
    for (nonce, ids) in [("n1", ["a-0", "a-1", "a-2"]), ("n2", ["e-0", "b-1", "b-2"])] {
        assert_eq!(append_call(&mut con, nonce, &records, &z, &rest, ids), "OK");
        assert_eq!(
            append_call(&mut con, nonce, &records, &z, &rest, ids),
            "AGAIN"
        );
    }
    let events = read_events(server.channel.clone(), "t", 0, 100).await;
    let got: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        got,
        ["e-0", "e-1", "e-2", "e-0", "e-1", "e-2", "e-1", "e-2"]
    );
    let (named, held) = payload_fields(redis);
    assert_eq!(named, held, "every stored chunk has its records, no more");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_into_a_redis_out_of_memory_is_refused_as_resource_exhausted() {
    let server = TestServer::start().await;
    let redis = server.redis.as_ref().unwrap();
    server.publish_n("t", "e", 3).await;
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let err = server
        .publisher()
        .publish(proto::PublishRequest {
            topic: "t".into(),
            events: vec![event("f-0")],
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("out of memory"), "{err:?}");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    server.publish_n("t", "g", 3).await;
    let events = read_events(server.channel.clone(), "t", 0, 100).await;
    assert_eq!(events.len(), 6);
    let (named, held) = payload_fields(redis);
    assert_eq!(named, held, "the refused call left no records");
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
    server.redis.as_ref().unwrap().cli(&["SET", MARKER, "6"]);
    let err = refused(server.config.clone()).await;
    assert!(
        err.contains("format 6") && err.contains("format 5"),
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
