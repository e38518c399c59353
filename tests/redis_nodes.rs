//! Many Herald nodes over one Redis (issue 9): three nodes over a single
//! `redis-server` and over a 3-master Redis Cluster share topics, groups,
//! leases and dead letters; consumers on different nodes compete without
//! double deliveries; per-key order holds across nodes; an ack id or a
//! dead letter handed out by one node is good on every node.
//!
//! Node and Redis deaths are in `redis_failures.rs`.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::redis::{RedisCluster, RedisServer, node_config};
use common::*;
use herald::cli::serve::{RunningServer, start};
use herald::proto;
use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::dead_letter_service_client::DeadLetterServiceClient;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use tonic::transport::Channel;

/// Three in-process Herald nodes over the Redis at `url`.
struct Nodes {
    nodes: Vec<RunningServer>,
    channels: Vec<Channel>,
    _dir: tempfile::TempDir,
}

impl Nodes {
    async fn start(url: &str, n: usize) -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        let mut channels = Vec::new();
        for _ in 0..n {
            let node = start(node_config(url, dir.path()))
                .await
                .expect("node starts");
            channels.push(connect(node.addr).await);
            nodes.push(node);
        }
        Nodes {
            nodes,
            channels,
            _dir: dir,
        }
    }

    fn publisher(&self, i: usize) -> PublisherServiceClient<Channel> {
        PublisherServiceClient::new(self.channels[i % self.channels.len()].clone())
    }

    fn subscriber(&self, i: usize) -> SubscriberServiceClient<Channel> {
        SubscriberServiceClient::new(self.channels[i % self.channels.len()].clone())
    }

    fn admin(&self, i: usize) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channels[i % self.channels.len()].clone())
    }

    fn dead_letters(&self, i: usize) -> DeadLetterServiceClient<Channel> {
        DeadLetterServiceClient::new(self.channels[i % self.channels.len()].clone())
    }

    async fn stop(self) {
        for n in self.nodes {
            n.stop().await.expect("clean stop");
        }
    }
}

async fn create_group(nodes: &Nodes, topic: &str, group: &str, ordered: bool) {
    nodes
        .admin(0)
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: topic.into(),
                name: group.into(),
                start_position: Some(earliest()),
                ack_deadline: Some(dur(Duration::from_secs(30))),
                ordered: Some(ordered),
                retry_policy: Some(proto::RetryPolicy {
                    min_backoff: Some(dur(Duration::from_millis(10))),
                    max_backoff: Some(dur(Duration::from_millis(50))),
                    multiplier: Some(1.0),
                }),
                max_delivery_attempts: Some(0),
                ..Default::default()
            }),
        })
        .await
        .expect("create group");
}

/// Consumers of one group on every node drain `n` events: each event is
/// delivered once and acked through another node than the one that
/// delivered it.
async fn drain_over_nodes(url: &str) {
    const N: usize = 20_000;
    let nodes = Nodes::start(url, 3).await;
    create_group(&nodes, "orders", "billing", false).await;
    let ids: Vec<String> = (0..N).map(|i| format!("o-{i}")).collect();
    for (i, chunk) in ids.chunks(500).enumerate() {
        nodes
            .publisher(i)
            .publish(proto::PublishRequest {
                topic: "orders".into(),
                events: chunk.iter().map(|id| event(id)).collect(),
            })
            .await
            .expect("publish");
    }
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..3 {
        let mut sub = nodes.subscriber(c);
        let mut acker = nodes.subscriber(c + 1);
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = subscribe(&mut sub, "orders", "billing", 300).await;
            loop {
                let Some(batch) = maybe_batch(&mut stream, Duration::from_secs(3)).await else {
                    return;
                };
                {
                    let mut seen = seen.lock().unwrap();
                    for d in &batch {
                        *seen
                            .entry(d.event.as_ref().unwrap().id.clone())
                            .or_default() += 1;
                        assert_eq!(d.delivery_attempt, 1, "nothing is redelivered");
                    }
                }
                let resp = ack(&mut acker, batch.iter().map(|d| d.ack_id.clone()).collect()).await;
                assert_eq!(
                    resp.acked_count as usize,
                    batch.len(),
                    "acked on another node"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), N, "every event delivered");
    assert!(seen.values().all(|n| *n == 1), "none delivered twice");
    let stats = nodes
        .admin(2)
        .get_group(proto::GetGroupRequest {
            topic: "orders".into(),
            group: "billing".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap()
        .stats
        .unwrap();
    assert_eq!(
        (stats.acked, stats.backlog, stats.in_flight),
        (N as u64, 0, 0)
    );
    nodes.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_over_one_redis_drain_20000_events_once() {
    let redis = RedisServer::start(&[]);
    drain_over_nodes(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_over_a_redis_cluster_drain_20000_events_once() {
    let cluster = RedisCluster::start(3, 0);
    drain_over_nodes(&cluster.url()).await;
}

/// Per-key order with 4 consumers on 3 nodes, 50 keys and random nacks:
/// an event is delivered only once every earlier event of its key is
/// acked.
async fn ordering_over_nodes(url: &str) {
    const N: usize = 2_000;
    let nodes = Nodes::start(url, 3).await;
    create_group(&nodes, "accounts", "ledger", true).await;
    let events: Vec<proto::Event> = (0..N)
        .map(|i| proto::Event {
            key: format!("k{}", i % 50),
            data: Bytes::from((i / 50).to_string()),
            ..event(&format!("a-{i}"))
        })
        .collect();
    for (i, chunk) in events.chunks(200).enumerate() {
        nodes
            .publisher(i)
            .publish(proto::PublishRequest {
                topic: "accounts".into(),
                events: chunk.to_vec(),
            })
            .await
            .expect("publish");
    }
    // Per key: the sequence numbers acked so far (always a prefix).
    let acked: Arc<Mutex<HashMap<String, HashSet<u64>>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..4 {
        let mut sub = nodes.subscriber(c);
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = subscribe(&mut sub, "accounts", "ledger", 20).await;
            let mut rng = c as u64 * 7919 + 1;
            loop {
                let Some(batch) = maybe_batch(&mut stream, Duration::from_secs(3)).await else {
                    return;
                };
                let (mut acks, mut nacks) = (Vec::new(), Vec::new());
                for d in &batch {
                    let e = d.event.as_ref().unwrap();
                    let seq: u64 = std::str::from_utf8(&e.data).unwrap().parse().unwrap();
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let mut acked = acked.lock().unwrap();
                    let done = acked.entry(e.key.clone()).or_default();
                    assert!(
                        (0..seq).all(|s| done.contains(&s)),
                        "{} seq {seq} delivered before its predecessors were acked",
                        e.key
                    );
                    if (rng >> 33).is_multiple_of(10) {
                        nacks.push(d.ack_id.clone());
                    } else {
                        done.insert(seq);
                        acks.push(d.ack_id.clone());
                    }
                }
                if !acks.is_empty() {
                    ack(&mut sub, acks).await;
                }
                if !nacks.is_empty() {
                    sub.nack(proto::NackRequest {
                        ack_ids: nacks,
                        reason: "random".into(),
                        ..Default::default()
                    })
                    .await
                    .expect("nack");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.values().map(HashSet::len).sum();
    assert_eq!(total, N, "every event acked in the end");
    nodes.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_key_order_holds_across_nodes_over_one_redis() {
    let redis = RedisServer::start(&[]);
    ordering_over_nodes(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_key_order_holds_across_nodes_over_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 0);
    ordering_over_nodes(&cluster.url()).await;
}

/// A dead letter listed through node A is replayed through node B and
/// delivered once, to a consumer on node C.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_listed_on_one_node_is_replayed_on_another() {
    let redis = RedisServer::start(&[]);
    let nodes = Nodes::start(&redis.url(), 3).await;
    create_group(&nodes, "payments", "settle", false).await;
    nodes
        .publisher(0)
        .publish(proto::PublishRequest {
            topic: "payments".into(),
            events: vec![event("p-1")],
        })
        .await
        .unwrap();
    let mut sub_c = nodes.subscriber(2);
    let mut stream = subscribe(&mut sub_c, "payments", "settle", 10).await;
    let d = next_batch(&mut stream, Duration::from_secs(5)).await;
    sub_c
        .nack(proto::NackRequest {
            ack_ids: vec![d[0].ack_id.clone()],
            dead_letter: true,
            reason: "bad card".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let page = nodes
        .dead_letters(0)
        .list_dead_letters(proto::ListDeadLettersRequest {
            topic: "payments".into(),
            group: "settle".into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.dead_letters.len(), 1);
    let dl = &page.dead_letters[0];
    assert_eq!(dl.last_reason, "bad card");
    assert_eq!(dl.event.as_ref().unwrap().id, "p-1");
    let replayed = nodes
        .dead_letters(1)
        .replay_dead_letters(proto::ReplayDeadLettersRequest {
            topic: "payments".into(),
            group: "settle".into(),
            ids: vec![dl.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((replayed.replayed_count, replayed.remaining_count), (1, 0));
    let again = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(ids(&again), ["p-1"]);
    assert_eq!(again[0].delivery_attempt, 1, "attempts reset by the replay");
    ack(&mut sub_c, vec![again[0].ack_id.clone()]).await;
    assert!(
        maybe_batch(&mut stream, Duration::from_millis(500))
            .await
            .is_none(),
        "delivered once"
    );
    nodes.stop().await;
}

/// A Consume stream settles deliveries of its own group only, also when an
/// ack id names a group its node has never touched (a node over Redis knows
/// the groups it has used, not every group).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consume_stream_refuses_another_groups_ack_id_on_any_node() {
    use common::consume::{ack_of, open, request};
    use herald::proto::consume_request::Kind;
    use tokio_stream::wrappers::ReceiverStream;

    let redis = RedisServer::start(&[]);
    let nodes = Nodes::start(&redis.url(), 2).await;
    create_group(&nodes, "a", "ga", false).await;
    create_group(&nodes, "b", "gb", false).await;
    for (topic, id) in [("a", "a-1"), ("b", "b-1")] {
        nodes
            .publisher(0)
            .publish(proto::PublishRequest {
                topic: topic.into(),
                events: vec![event(id)],
            })
            .await
            .unwrap();
    }
    // Node 0 hands out a delivery of `ga`.
    let mut sub0 = nodes.subscriber(0);
    let mut on_a = subscribe(&mut sub0, "a", "ga", 10).await;
    let da = next_batch(&mut on_a, Duration::from_secs(5)).await;
    // A Consume stream of `gb` on node 1 gets its own delivery first.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(request(Kind::Open(open("b", "gb")))).await.unwrap();
    let mut on_b = nodes
        .subscriber(1)
        .consume(ReceiverStream::new(rx))
        .await
        .expect("consume opens")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), on_b.message())
        .await
        .expect("in time")
        .expect("stream ok")
        .expect("stream open");
    assert_eq!(first.deliveries.len(), 1);
    // Then it sends `ga`'s ack id: refused, and `ga`'s delivery stays out.
    tx.send(request(ack_of(vec![da[0].ack_id.clone()], 1, true)))
        .await
        .unwrap();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), on_b.message())
            .await
            .expect("an answer in time")
        {
            Ok(Some(r)) => assert!(r.confirmation.is_none(), "confirmed: {r:?}"),
            Ok(None) => panic!("the stream ended OK"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), tonic::Code::InvalidArgument, "{end:?}");
    let stats = nodes
        .admin(0)
        .get_group(proto::GetGroupRequest {
            topic: "a".into(),
            group: "ga".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .and_then(|g| g.stats)
        .expect("stats");
    assert_eq!(stats.acked, 0, "{stats:?}");
    assert_eq!(stats.in_flight, 1, "{stats:?}");
    nodes.stop().await;
}

/// Ack, Nack and ExtendDeadline are authorized on the topic of each ack
/// id's group, also on a node that has never touched that group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ack_id_is_authorized_on_its_topic_on_a_node_that_never_saw_its_group() {
    use common::secure::{PrincipalSpec, Protection, SecureServer, write_auth_file};

    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let tokens = write_auth_file(
        &file,
        &[
            PrincipalSpec {
                name: "root",
                admin: true,
                rules: &[],
            },
            PrincipalSpec {
                name: "alice",
                admin: false,
                rules: &[(&["consume"], &["a"])],
            },
            PrincipalSpec {
                name: "bob",
                admin: false,
                rules: &[(&["consume"], &["b"])],
            },
        ],
    );
    let url = redis.url();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let protection = Protection {
            auth_file: Some(file.clone()),
            ..Protection::default()
        };
        let url = url.clone();
        nodes.push(
            SecureServer::start(protection, move |c| {
                c.storage.backend = herald::config::BackendKind::Redis;
                c.redis.url = url;
            })
            .await,
        );
    }
    let root = nodes[0].channel(None, Some(&tokens["root"])).await.unwrap();
    AdminServiceClient::new(root.clone())
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "a".into(),
                name: "ga".into(),
                start_position: Some(earliest()),
                ..Default::default()
            }),
        })
        .await
        .expect("create group");
    PublisherServiceClient::new(root)
        .publish(proto::PublishRequest {
            topic: "a".into(),
            events: vec![event("a-1")],
        })
        .await
        .expect("publish");
    let alice = nodes[0]
        .channel(None, Some(&tokens["alice"]))
        .await
        .unwrap();
    let mut on_a = SubscriberServiceClient::new(alice)
        .subscribe(proto::SubscribeRequest {
            topic: "a".into(),
            group: "ga".into(),
            consumer: "alice".into(),
            max_in_flight: Some(10),
        })
        .await
        .expect("subscribe")
        .into_inner();
    let d = tokio::time::timeout(Duration::from_secs(5), on_a.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open")
        .deliveries;
    // Bob may not consume `a`: his ack of `ga`'s delivery through node 1,
    // which has never touched `ga`, is refused.
    let bob = nodes[1].channel(None, Some(&tokens["bob"])).await.unwrap();
    let refused = SubscriberServiceClient::new(bob)
        .ack(proto::AckRequest {
            ack_ids: vec![d[0].ack_id.clone()],
        })
        .await
        .expect_err("bob may not consume a");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    for n in nodes {
        n.stop().await;
    }
}

/// Publishes one event through node `i` and returns its offset.
async fn publish_one(nodes: &Nodes, i: usize, topic: &str, id: &str) -> u64 {
    nodes
        .publisher(i)
        .publish(proto::PublishRequest {
            topic: topic.into(),
            events: vec![event(id)],
        })
        .await
        .expect("publish")
        .into_inner()
        .results[0]
        .offset
}

/// A Read that follows `topic` from `offset` through node `i`.
async fn follow(
    nodes: &Nodes,
    i: usize,
    topic: &str,
    offset: u64,
) -> tonic::Streaming<proto::ReadResponse> {
    nodes
        .subscriber(i)
        .read(proto::ReadRequest {
            topic: topic.into(),
            start: Some(proto::read_request::Start::Offset(offset)),
            follow: true,
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner()
}

/// The id of the next event a follower gets (a reader has no poll to fall
/// back on: it sees an event only when its node is told of it).
async fn followed(read: &mut tonic::Streaming<proto::ReadResponse>) -> String {
    let r = tokio::time::timeout(Duration::from_secs(5), read.message())
        .await
        .expect("the follower sees the event in time")
        .expect("read ok")
        .expect("read open");
    assert_eq!(r.events.len(), 1);
    r.events[0].id.clone()
}

/// An append wakes the other nodes that wait for its topic and nobody
/// else: no wake-up goes out while no node has consumers or followers of
/// the topic (a read that does not follow waits for nothing), none when
/// only the appending node has (it wakes its own), one per append when
/// another node has a follower (who sees every event); a follower whose
/// node's registration was lost still sees the next event (followers read
/// again every second), and a registration past its time is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_wakes_only_the_other_nodes_that_watch_its_topic() {
    let redis = RedisServer::start(&[]);
    let nodes = Nodes::start(&redis.url(), 2).await;
    publish_one(&nodes, 0, "watched", "first").await;
    redis.cli(&["CONFIG", "RESETSTAT"]);
    for i in 0..10 {
        publish_one(&nodes, 0, "watched", &format!("alone-{i}")).await;
    }
    assert_eq!(
        read_events(nodes.channels[1].clone(), "watched", 0, 0)
            .await
            .len(),
        11
    );
    let mut next = publish_one(&nodes, 0, "watched", "read").await + 1;
    assert_eq!(redis.calls("publish"), 0, "nobody waits: no wake-up");

    let mut here = follow(&nodes, 0, "watched", next).await;
    for i in 0..5 {
        let id = format!("here-{i}");
        next = publish_one(&nodes, 0, "watched", &id).await + 1;
        assert_eq!(followed(&mut here).await, id);
    }
    assert_eq!(
        redis.calls("publish"),
        0,
        "the appending node wakes its own reader"
    );

    let mut there = follow(&nodes, 1, "watched", next).await;
    for i in 0..5 {
        let id = format!("there-{i}");
        publish_one(&nodes, 0, "watched", &id).await;
        assert_eq!(followed(&mut there).await, id);
        assert_eq!(followed(&mut here).await, id);
    }
    assert_eq!(redis.calls("publish"), 5, "one wake-up per append");

    redis.cli(&["DEL", "herald:{watched}:w"]);
    publish_one(&nodes, 0, "watched", "unannounced").await;
    assert_eq!(followed(&mut there).await, "unannounced");
    assert_eq!(followed(&mut here).await, "unannounced");
    assert_eq!(redis.calls("publish"), 5, "no node was listed");

    redis.cli(&["HSET", "herald:{watched}:w", "gone-node", "1"]);
    publish_one(&nodes, 0, "watched", "last").await;
    assert_eq!(followed(&mut there).await, "last");
    assert_eq!(
        redis
            .cli(&["HEXISTS", "herald:{watched}:w", "gone-node"])
            .trim(),
        "0",
        "a registration past its time is dropped"
    );
    drop((here, there));

    // A live node of an older release (its id lacks the mark) does not list
    // itself: while one heartbeats, every append is announced.
    publish_one(&nodes, 0, "unwatched", "0").await;
    redis.cli(&["CONFIG", "RESETSTAT"]);
    publish_one(&nodes, 0, "unwatched", "1").await;
    assert_eq!(redis.calls("publish"), 0);
    let secs: u64 = redis
        .cli(&["TIME"])
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let live = ((secs + 600) * 1000).to_string();
    redis.cli(&["ZADD", "herald:{herald}:nodes", &live, "older-node"]);
    assert!(
        announces(&redis, &nodes, true).await,
        "an older node is live: appends are announced"
    );
    redis.cli(&["ZREM", "herald:{herald}:nodes", "older-node"]);
    assert!(
        announces(&redis, &nodes, false).await,
        "it left: appends are not announced"
    );
    nodes.stop().await;
}

/// Whether appends to an unwatched topic through node 0 come to be
/// announced (`want`) or not within 5 s (the nodes learn it from their
/// heartbeats, every second).
async fn announces(redis: &RedisServer, nodes: &Nodes, want: bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut probe = 0;
    while std::time::Instant::now() < deadline {
        let before = redis.calls("publish");
        probe += 1;
        publish_one(nodes, 0, "unwatched", &format!("probe-{want}-{probe}")).await;
        if (redis.calls("publish") > before) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
