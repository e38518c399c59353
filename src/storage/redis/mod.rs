//! The Redis backend: stateless Herald nodes over one Redis deployment (a
//! single server, a master with replicas, or a Redis Cluster).
//!
//! Storage layer. A node keeps no durable state: every change is one Lua
//! script (`lua/`) on the keys of one topic, which share a hash slot
//! (layout and contracts: [`keys`] and each script's header). What a node
//! keeps in memory is only for speed or for this node's clients: a cache of
//! group ids, the end offsets that readers follow, wake-ups of its
//! consumers, and one append queue per topic (`append.rs`) that
//! group-commits concurrent publishes into one script call.
//!
//! Nodes find out about each other's changes on a Pub/Sub channel
//! (`node.rs`; an append wakes only the nodes that watch its topic,
//! `watchers.rs`), and every consumer also polls once a second, so a lost
//! message only delays a delivery. A node that stops heartbeating is dead
//! after `redis.node_timeout`: another node releases its consumers' leases.
//!
//! The trait methods are implemented in `topics.rs`, `events.rs`,
//! `groups.rs`, `consume.rs`, `leases.rs` and `dead_letters.rs`.

mod append;
mod chunk_cache;
mod claim_answer;
pub mod config;
mod conn;
mod consume;
mod dead_letters;
mod events;
mod groups;
pub mod keys;
mod leases;
mod node;
mod sentinel;
mod topics;
mod watchers;

mod backend_impl;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::RedisConfig;
use conn::{Link, Scripts};
use keys::Keys;

use crate::model::Error;
use crate::model::results::GroupGauges;

/// The Redis backend. Clones share everything.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

/// (topic, group, gauges) of a group with consumers here.
type Gauged = (String, String, Arc<GroupGauges>);

/// A group as scripts address it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupRef {
    topic: String,
    name: String,
    gid: u64,
    /// Generation of the topic the group was created in.
    generation: String,
}

/// What this node keeps about a topic it serves.
struct TopicLocal {
    /// End offset, for readers that follow the topic.
    end: watch::Sender<u64>,
    /// Cancelled when the topic is deleted.
    deleted: CancellationToken,
}

struct Inner {
    config: RedisConfig,
    keys: Keys,
    link: Link,
    scripts: Scripts,
    /// This node's id (random per start).
    node: String,
    secret: [u8; 16],
    healthy: watch::Sender<bool>,
    /// Topics this node saw existing (cleared by deletions).
    known: Mutex<std::collections::HashSet<String>>,
    /// Topics this node follows.
    topics: Mutex<HashMap<String, TopicLocal>>,
    /// Group ids seen, for routing acks.
    groups: Mutex<HashMap<u64, GroupRef>>,
    /// Wake-ups of local consumers: per topic (new events) and per group.
    topic_wakes: Mutex<HashMap<String, Arc<Notify>>>,
    group_wakes: Mutex<HashMap<u64, Arc<Notify>>>,
    /// Stream consumers here, per group: an ack may claim their next batch.
    locals: Mutex<HashMap<u64, Vec<Arc<consume::Local>>>>,
    /// Topics with consumers or followers here (`watchers.rs`).
    watched: Mutex<watchers::Watched>,
    /// Asks the watch task to send every registration again.
    rewatch: Notify,
    /// A live node runs a release from before watchers: every append
    /// announces its events to every node (as that release expects).
    older_nodes: AtomicBool,
    /// Per-topic append queues.
    appenders: Mutex<HashMap<String, append::Appender>>,
    /// Groups with consumers here whose gauges changed.
    dirty: Mutex<std::collections::HashSet<u64>>,
    /// Gauges of groups with consumers here.
    gauges: Mutex<HashMap<u64, Gauged>>,
    /// Bytes of events in one delivery batch (a larger event goes alone).
    batch_bytes: usize,
    /// Bytes of events waiting in append queues.
    queued_bytes: AtomicUsize,
    /// Chunks this node appended (claims of them need not read them).
    chunks: chunk_cache::ChunkCache,
    published: AtomicU64,
    connected: AtomicU64,
    topic_count: AtomicU64,
    group_count: AtomicU64,
    /// Cancelled to end every consumer stream.
    consumers_stop: CancellationToken,
    /// Cancelled at close: background tasks end.
    stop: CancellationToken,
    closed: AtomicBool,
    tasks: TaskTracker,
    consumers: TaskTracker,
}

impl RedisBackend {
    /// Connects, checks the storage format, loads (or makes) the
    /// deployment's secret and starts this node's background tasks.
    ///
    /// # Errors
    /// UNAVAILABLE when Redis cannot be reached; FAILED_PRECONDITION when it
    /// holds another storage format.
    pub async fn open(config: RedisConfig, batch_bytes: usize) -> Result<RedisBackend, Error> {
        config.check().map_err(|m| Error::invalid("redis", m))?;
        let link = conn::connect(&config).await?;
        let keys = Keys::new(&config.key_prefix);
        check_format(&link, &config, &keys).await?;
        let secret = load_secret(&link, &config, &keys).await?;
        // The marker tells nodes of this release from older ones, which do
        // not list themselves as watchers (`watchers.rs`).
        let node = format!("{}{}", watchers::NODE_MARK, uuid::Uuid::new_v4().simple());
        let backend = RedisBackend {
            inner: Arc::new(Inner {
                keys,
                link,
                scripts: Scripts::new(),
                node,
                secret,
                healthy: watch::channel(true).0,
                known: Mutex::default(),
                topics: Mutex::default(),
                groups: Mutex::default(),
                topic_wakes: Mutex::default(),
                group_wakes: Mutex::default(),
                locals: Mutex::default(),
                watched: Mutex::default(),
                rewatch: Notify::new(),
                older_nodes: AtomicBool::new(false),
                appenders: Mutex::default(),
                gauges: Mutex::default(),
                dirty: Mutex::default(),
                queued_bytes: AtomicUsize::new(0),
                chunks: chunk_cache::ChunkCache::new(config.chunk_cache_bytes),
                published: AtomicU64::new(0),
                connected: AtomicU64::new(0),
                topic_count: AtomicU64::new(0),
                group_count: AtomicU64::new(0),
                consumers_stop: CancellationToken::new(),
                stop: CancellationToken::new(),
                closed: AtomicBool::new(false),
                tasks: TaskTracker::new(),
                consumers: TaskTracker::new(),
                batch_bytes,
                config,
            }),
        };
        backend.heartbeat().await?;
        backend.start_tasks().await?;
        tracing::info!(
            node = %backend.inner.node,
            cluster = backend.inner.link.clustered(),
            "Redis backend connected"
        );
        Ok(backend)
    }

    fn cfg(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Runs a topic script: `KEYS[1]` the topic's meta hash, `ARGV[1]` the
    /// wake-up channel, `ARGV[2]` the topic, then `args`.
    async fn run(
        &self,
        script: impl Fn(&Scripts) -> &redis::Script,
        topic: &str,
        args: &[&[u8]],
    ) -> Result<conn::Reply, Error> {
        self.run_after(redis::pipe(), script, topic, args).await
    }

    /// [`RedisBackend::run`] after the commands of `before` (each
    /// `ignore`d), in one transaction with them when there are any (see
    /// [`conn::Link::eval_after`]).
    async fn run_after(
        &self,
        before: redis::Pipeline,
        script: impl Fn(&Scripts) -> &redis::Script,
        topic: &str,
        args: &[&[u8]],
    ) -> Result<conn::Reply, Error> {
        self.check_open()?;
        let channel = self.inner.keys.channel();
        let mut all: Vec<&[u8]> = Vec::with_capacity(args.len() + 2);
        all.push(channel.as_bytes());
        all.push(topic.as_bytes());
        all.extend_from_slice(args);
        let key = self.inner.keys.meta(topic);
        let script = script(&self.inner.scripts);
        let link = &self.inner.link;
        let r = if before.cmd_iter().next().is_none() {
            link.eval(self.cfg(), script, &key, &all).await
        } else {
            link.eval_after(self.cfg(), before, script, &key, &all)
                .await
        };
        self.note_health(&r);
        r.map(conn::Reply::new)
    }

    /// Waits until `redis.wait_replicas` replicas of the topic's master
    /// have every write made so far (nothing when it is 0).
    async fn wait_replicas(&self, topic: &str) -> Result<(), Error> {
        if self.cfg().wait_replicas == 0 {
            return Ok(());
        }
        self.inner
            .link
            .wait_replicas(
                self.cfg(),
                &self.inner.keys.meta(topic),
                self.cfg().wait_replicas,
            )
            .await
    }

    /// Counts topics and groups again (after a create or delete).
    async fn recount(&self) {
        if let Err(e) = self.refresh_totals().await {
            tracing::debug!(error = %e, "could not count topics and groups");
        }
    }

    /// Runs a plain command.
    async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        self.check_open()?;
        let r = self.inner.link.cmd(self.cfg(), cmd).await;
        self.note_health(&r);
        r
    }

    fn note_health<T>(&self, r: &Result<T, Error>) {
        if let Err(Error::Unavailable(m)) = r {
            if *self.inner.healthy.borrow() {
                tracing::warn!(error = %m, "Redis unavailable");
            }
            self.inner
                .healthy
                .send_if_modified(|h| std::mem::replace(h, false));
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::shutting_down());
        }
        Ok(())
    }

    /// A group's gauges need refreshing (done in the background, at most
    /// every 100 ms).
    fn touch(&self, gid: u64) {
        if lock(&self.inner.gauges).contains_key(&gid) {
            lock(&self.inner.dirty).insert(gid);
        }
    }

    /// The wake-up of local consumers of a topic.
    fn topic_wake(&self, topic: &str) -> Arc<Notify> {
        lock(&self.inner.topic_wakes)
            .entry(topic.to_string())
            .or_default()
            .clone()
    }

    /// The wake-up of local consumers of a group.
    fn group_wake(&self, gid: u64) -> Arc<Notify> {
        lock(&self.inner.group_wakes)
            .entry(gid)
            .or_default()
            .clone()
    }
}

/// Locks a mutex, ignoring poisoning (the data is plain maps).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Refuses a Redis holding another layout; marks an empty one and takes
/// over one of the older format this release reads.
async fn check_format(link: &Link, config: &RedisConfig, keys: &Keys) -> Result<(), Error> {
    let key = keys.registry("format");
    let _: Option<String> = link
        .cmd(
            config,
            redis::cmd("SET").arg(&key).arg(keys::FORMAT).arg("NX"),
        )
        .await?;
    let mut found: String = link.cmd(config, redis::cmd("GET").arg(&key)).await?;
    if keys::FORMATS_TAKEN_OVER
        .iter()
        .any(|f| found == f.to_string())
    {
        // The newer formats only add to the older ones, but a running node
        // of an older release would take batch leases for acknowledged or
        // misread chunks: none may be up.
        let (secs, micros): (u64, u64) = link.cmd(config, &redis::cmd("TIME")).await?;
        let now_ms = secs * 1000 + micros / 1000;
        let timeout = u64::try_from(config.node_timeout.as_millis()).unwrap_or(u64::MAX);
        let live: u64 = link
            .cmd(
                config,
                redis::cmd("ZCOUNT")
                    .arg(keys.registry("nodes"))
                    .arg(now_ms.saturating_sub(timeout))
                    .arg("+inf"),
            )
            .await?;
        if live > 0 {
            return Err(Error::FailedPrecondition(format!(
                "Redis holds Herald storage format {found} under prefix {:?} and {live} node(s) \
                 of that release still heartbeat in it: stop them all, then start this release \
                 (it takes the data over as format {})",
                config.key_prefix,
                keys::FORMAT
            )));
        }
        let _: Option<String> = link
            .cmd(
                config,
                redis::cmd("SET").arg(&key).arg(keys::FORMAT).arg("XX"),
            )
            .await?;
        tracing::info!(from = %found, to = keys::FORMAT, "Redis storage format taken over");
        found = keys::FORMAT.to_string();
    }
    if found != keys::FORMAT.to_string() {
        return Err(Error::FailedPrecondition(format!(
            "Redis holds Herald storage format {found} under prefix {:?}; this Herald \
             reads format {}: use the matching release or another redis.key_prefix",
            config.key_prefix,
            keys::FORMAT
        )));
    }
    Ok(())
}

/// The deployment's secret: the first node to start makes it.
async fn load_secret(link: &Link, config: &RedisConfig, keys: &Keys) -> Result<[u8; 16], Error> {
    let key = keys.registry("secret");
    let mut fresh = [0u8; 16];
    getrandom::fill(&mut fresh)
        .map_err(|e| Error::Internal(format!("no randomness for the secret: {e}")))?;
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    let _: Option<String> = link
        .cmd(config, redis::cmd("SET").arg(&key).arg(&hex).arg("NX"))
        .await?;
    let stored: String = link.cmd(config, redis::cmd("GET").arg(&key)).await?;
    let mut secret = [0u8; 16];
    if stored.len() != 32 {
        return Err(Error::FailedPrecondition(
            "the deployment secret in Redis is malformed".into(),
        ));
    }
    for (i, b) in secret.iter_mut().enumerate() {
        *b = u8::from_str_radix(&stored[2 * i..2 * i + 2], 16).map_err(|_| {
            Error::FailedPrecondition("the deployment secret in Redis is malformed".into())
        })?;
    }
    Ok(secret)
}
