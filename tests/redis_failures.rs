//! Deaths over the Redis backend (issue 9): a Herald node killed with
//! `kill -9` under load, Redis killed with `kill -9` (`appendfsync always`)
//! and restarted, a Redis Cluster master killed and its replica promoted
//! (the old master rejoins as its replica).
//! In each, every acknowledged publish is stored exactly once and the
//! survivors deliver everything.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::child::ChildServer;
use common::redis::{RedisCluster, RedisServer, node_config};
use common::*;
use herald::cli::serve::{RunningServer, start};
use herald::config::Config;
use herald::proto;
use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use tonic::Code;
use tonic::transport::Channel;

async fn node(url: &str, dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let mut c = node_config(url, dir);
    c.redis.timeout = Duration::from_secs(1);
    tweak(&mut c);
    start(c).await.expect("node starts")
}

async fn create_group(channel: Channel, topic: &str, group: &str) {
    AdminServiceClient::new(channel)
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: topic.into(),
                name: group.into(),
                start_position: Some(earliest()),
                ack_deadline: Some(dur(Duration::from_secs(30))),
                ..Default::default()
            }),
        })
        .await
        .expect("create group");
}

/// Every event of `topic` read from the start: id → times stored.
async fn stored_ids(channel: Channel, topic: &str) -> HashMap<String, usize> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    for e in read_events(channel, topic, 0, 0).await {
        *ids.entry(e.id).or_default() += 1;
    }
    ids
}

/// Publishes batches of 10 with fresh ids until `stop`, over the channels
/// in turn; a failed batch is retried with the same ids (on the next
/// channel) until it is acknowledged. Returns the acknowledged ids.
async fn publish_until(
    channels: Vec<Channel>,
    topic: &'static str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut n = 0usize;
    let mut turn = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let ids: Vec<String> = (n..n + 10).map(|i| format!("{topic}-{i}")).collect();
        n += 10;
        let since = Instant::now();
        loop {
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "a batch could not be published for 30 s"
            );
            let mut p = PublisherServiceClient::new(channels[turn % channels.len()].clone());
            turn += 1;
            let r = tokio::time::timeout(
                Duration::from_secs(3),
                p.publish(proto::PublishRequest {
                    topic: topic.into(),
                    events: ids.iter().map(|id| event(id)).collect(),
                }),
            )
            .await;
            match r {
                Ok(Ok(_)) => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        acked.extend(ids);
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_under_load_loses_nothing_and_its_leases_come_back() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let b = node(&redis.url(), dir.path(), |_| {}).await;
    let b_channel = connect(b.addr).await;
    let mut a = ChildServer::start(
        dir.path(),
        &[
            ("HERALD_STORAGE__BACKEND", "redis"),
            ("HERALD_REDIS__URL", &redis.url()),
            ("HERALD_REDIS__NODE_HEARTBEAT", "200ms"),
            ("HERALD_REDIS__NODE_TIMEOUT", "1s"),
        ],
        &[],
    );
    let a_channel = a.channel().await;
    create_group(b_channel.clone(), "orders", "billing").await;

    // A consumer on node A takes deliveries and never acks them.
    let mut a_sub = SubscriberServiceClient::new(a_channel.clone());
    let mut a_stream = subscribe(&mut a_sub, "orders", "billing", 50).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn(publish_until(
        vec![a_channel.clone(), b_channel.clone()],
        "orders",
        stop.clone(),
    ));
    let mut held = HashSet::new();
    while held.len() < 50 {
        for d in next_batch(&mut a_stream, Duration::from_secs(5)).await {
            held.insert(d.event.unwrap().id);
        }
    }
    // A consumer on node B acks everything it gets.
    let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let consumer = {
        let attempts = attempts.clone();
        let mut sub = SubscriberServiceClient::new(b_channel.clone());
        tokio::spawn(async move {
            let mut stream = subscribe(&mut sub, "orders", "billing", 200).await;
            while let Some(batch) = maybe_batch(&mut stream, Duration::from_secs(8)).await {
                for d in &batch {
                    let id = d.event.as_ref().unwrap().id.clone();
                    attempts.lock().unwrap().insert(id, d.delivery_attempt);
                }
                ack(&mut sub, batch.iter().map(|d| d.ack_id.clone()).collect()).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = publisher.await.unwrap();
    consumer.await.unwrap();

    let stored = stored_ids(b_channel.clone(), "orders").await;
    for id in &acked {
        assert_eq!(stored.get(id), Some(&1), "{id} stored exactly once");
    }
    let attempts = attempts.lock().unwrap().clone();
    for id in &acked {
        assert!(attempts.contains_key(id), "{id} acked by the survivor");
    }
    for id in &held {
        assert_eq!(attempts[id], 2, "{id}: redelivered with attempt + 1");
    }
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "well within the ack deadline"
    );
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_and_restarted_loses_nothing_acknowledged() {
    let mut redis = RedisServer::start(&["--appendfsync", "always"]);
    let dir = tempfile::tempdir().unwrap();
    let n = node(&redis.url(), dir.path(), |_| {}).await;
    let channel = connect(n.addr).await;
    let mut health = n.broker.health();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn(publish_until(vec![channel.clone()], "pay", stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.kill();

    // Calls fail fast with UNAVAILABLE naming Redis; health goes down.
    let t0 = Instant::now();
    let err = AdminServiceClient::new(channel.clone())
        .get_topic(proto::GetTopicRequest { name: "pay".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("Redis"), "{err:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "fails fast: {:?}",
        t0.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(5), health.wait_for(|h| !*h))
        .await
        .expect("health goes down")
        .unwrap();

    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    tokio::time::timeout(Duration::from_secs(10), health.wait_for(|h| *h))
        .await
        .expect("the node reconnects by itself")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = publisher.await.unwrap();
    assert!(acked.len() > 50, "published under load: {}", acked.len());
    let stored = stored_ids(channel, "pay").await;
    for id in &acked {
        assert_eq!(stored.get(id), Some(&1), "{id} stored exactly once");
    }
    n.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_master_killed_is_replaced_by_its_replica_and_nodes_carry_on() {
    let mut cluster = RedisCluster::start(3, 1);
    let dir = tempfile::tempdir().unwrap();
    let nodes = [
        node(&cluster.url(), dir.path(), |c| c.redis.wait_replicas = 1).await,
        node(&cluster.url(), dir.path(), |c| c.redis.wait_replicas = 1).await,
    ];
    let channels = vec![connect(nodes[0].addr).await, connect(nodes[1].addr).await];
    create_group(channels[0].clone(), "orders", "billing").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn(publish_until(channels.clone(), "orders", stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let master = cluster.master_of("herald:{orders}:m");
    cluster.servers[master].kill();
    let t0 = Instant::now();
    while cluster
        .serving("herald:{orders}:m")
        .is_none_or(|m| m == master)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "a replica takes over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // With redis.wait_replicas = 1 the shard takes writes again once it
    // has a replica: the old master comes back as one.
    cluster.servers[master].restart();
    cluster.wait_ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = publisher.await.unwrap();

    // Every publish acknowledged (with WAIT 1) survived the failover, and
    // a consumer on the other node gets all of it.
    let mut sub = SubscriberServiceClient::new(channels[1].clone());
    let mut stream = subscribe(&mut sub, "orders", "billing", 500).await;
    let mut got = HashSet::new();
    let want: HashSet<&String> = acked.iter().collect();
    let t0 = Instant::now();
    while !want.iter().all(|id| got.contains(*id)) {
        assert!(t0.elapsed() < Duration::from_secs(20), "drained in time");
        let batch = next_batch(&mut stream, Duration::from_secs(10)).await;
        for d in &batch {
            got.insert(d.event.as_ref().unwrap().id.clone());
        }
        ack(&mut sub, batch.iter().map(|d| d.ack_id.clone()).collect()).await;
    }
    let stored = stored_ids(channels[0].clone(), "orders").await;
    for id in &acked {
        assert_eq!(stored.get(id), Some(&1), "{id} stored exactly once");
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}

/// A `redis-server --sentinel` child watching master `m` at `master_port`
/// (quorum 1, down after 1 s); killed when dropped.
struct Sentinel {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let port = common::redis::free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor m 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds m 1000\n\
                 sentinel failover-timeout m 5000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        common::redis::wait_port(port, true);
        Sentinel {
            child,
            port,
            _dir: dir,
        }
    }

    /// The port of the master the sentinel names now.
    fn master_port(&self) -> Option<u16> {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(["SENTINEL", "get-master-addr-by-name", "m"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_is_followed_without_a_restart() {
    let mut master = RedisServer::start(&["--appendfsync", "always"]);
    let port = master.port.to_string();
    // Two replicas: after one is promoted, the other replicates from it,
    // so `wait_replicas = 1` can be met again.
    let replicas: Vec<RedisServer> = (0..2)
        .map(|_| {
            RedisServer::start(&["--appendfsync", "always", "--replicaof", "127.0.0.1", &port])
        })
        .collect();
    let t0 = Instant::now();
    while !replicas.iter().all(|r| {
        r.cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    }) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "replicas never synced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sentinel = Sentinel::start(master.port);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{}", sentinel.port);
    let n = node(&url, dir.path(), |c| {
        c.redis.sentinel_master = "m".into();
        // An acknowledged publish is on the replica too.
        c.redis.wait_replicas = 1;
    })
    .await;
    let channel = connect(n.addr).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn(publish_until(vec![channel.clone()], "pay", stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    master.kill();

    // Sentinel promotes the replica; the node follows and publishing goes on.
    let t0 = Instant::now();
    while !sentinel
        .master_port()
        .is_some_and(|p| replicas.iter().any(|r| r.port == p))
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "no failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end_before = AdminServiceClient::new(channel.clone())
        .get_topic(proto::GetTopicRequest { name: "pay".into() })
        .await;
    let t1 = Instant::now();
    loop {
        let now = AdminServiceClient::new(channel.clone())
            .get_topic(proto::GetTopicRequest { name: "pay".into() })
            .await;
        let grew = match (&end_before, &now) {
            (Ok(a), Ok(b)) => {
                let end = |r: &tonic::Response<proto::GetTopicResponse>| {
                    r.get_ref()
                        .topic
                        .as_ref()
                        .and_then(|t| t.stats)
                        .map_or(0, |s| s.end_offset)
                };
                end(b) > end(a)
            }
            (Err(_), Ok(_)) => true,
            _ => false,
        };
        if grew {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(15),
            "publishing did not resume on the new master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = publisher.await.unwrap();
    let stored = stored_ids(channel, "pay").await;
    for id in &acked {
        assert_eq!(stored.get(id), Some(&1), "{id} stored exactly once");
    }
    assert!(acked.len() > 20, "published: {}", acked.len());
    n.stop().await.unwrap();
}
