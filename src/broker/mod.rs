//! The transport-free core of Herald: topics, consumer groups, leases,
//! retries and stats. No tonic or prost types here.
//!
//! [`Broker`] is a cheap `Clone` handle; each consumer group runs as its own
//! owner task (`group.rs`) around a pure state machine (`dispatch.rs`).

pub mod dead_letter;
pub mod dispatch;
pub mod error;
pub mod group;
pub mod lease;
pub mod names;
pub mod settings;
pub mod topic;

mod admin;
mod doctor;
mod memory;
mod publish;
mod read;
mod state_writer;
mod subscribe;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::model::results::{
    BlockedKey, DeadLetter, DeadLetterCounts, DeadLetterFilter, DeadLetterPage, Delivery,
    GroupInfo, GroupStats, LeaseOutcome, LeaseResult, Selection, TopicInfo, TopicStats,
};
pub use crate::model::{backoff, filter};
pub use admin::ServerInfo;
pub use error::BrokerError;
pub use group::GroupGauges;
pub use names::EventLimits;
pub use publish::{PublishTicket, Published, PublishedEvent};
pub use read::{ReadRequest, ReadStream};
pub use settings::{
    Filter, GroupPatch, GroupRecord, GroupSettings, Position, TopicPatch, TopicRecord,
    TopicSettings,
};
pub use subscribe::Subscription;

use crate::storage::embedded::log::LogOptions;
use crate::storage::embedded::meta::MetaStore;
use group::GroupHandle;
use state_writer::StateWriter;
use topic::{Topic, lock};

/// Settings of the core, taken from the server configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where topics and metadata live.
    pub data_dir: PathBuf,
    /// Create topics and groups on first publish/subscribe.
    pub auto_create: bool,
    /// Options of every topic's log.
    pub log: LogOptions,
    /// Event and request size limits.
    pub limits: EventLimits,
    /// Settings of new topics where the request leaves them unset.
    pub topic_defaults: TopicSettings,
    /// Settings of new groups where the request leaves them unset.
    pub group_defaults: GroupSettings,
    /// Consumer in-flight limit when Subscribe leaves it unset.
    pub default_max_in_flight: u32,
    /// Highest in-flight limit a consumer may ask for.
    pub max_in_flight_limit: u32,
    /// How often group progress is persisted.
    pub state_flush_interval: Duration,
    /// What one group may hold and hand out at once.
    pub group_limits: dispatch::Limits,
    /// Bytes of events all groups together may hold.
    pub groups_memory_bytes: usize,
    /// Page cache of the metadata store.
    pub meta_cache_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./data"),
            auto_create: true,
            log: LogOptions::default(),
            limits: EventLimits {
                max_event_bytes: 1 << 20,
                max_request_bytes: 10 << 20,
            },
            topic_defaults: TopicSettings {
                retention_max_age: None,
                retention_max_bytes: None,
                dedup_window: Duration::from_secs(120),
            },
            group_defaults: GroupSettings {
                filter: Filter::default(),
                ack_deadline: Duration::from_secs(30),
                retry: backoff::RetryPolicy::default(),
                max_delivery_attempts: 5,
                ordered: false,
            },
            default_max_in_flight: 1000,
            max_in_flight_limit: 100_000,
            state_flush_interval: Duration::from_millis(100),
            group_limits: dispatch::Limits::default(),
            groups_memory_bytes: 1 << 30,
            meta_cache_bytes: crate::storage::embedded::meta::DEFAULT_CACHE_BYTES,
        }
    }
}

/// Handle to the core. Clones share everything.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    meta: Arc<MetaStore>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Groups by runtime id, for routing acks.
    groups_by_id: RwLock<HashMap<u32, GroupHandle>>,
    /// Serialises creation and deletion of topics and groups.
    admin: tokio::sync::Mutex<()>,
    /// Log writer tasks and the state writer.
    tasks: TaskTracker,
    /// Group tasks, stopped before storage is flushed.
    group_tasks: TaskTracker,
    /// Parent of every group's stop token.
    groups_stop: CancellationToken,
    states: Mutex<Option<StateWriter>>,
    /// Random per run; part of every ack id.
    run: u32,
    /// Kept with the data; signs page tokens.
    token_secret: u64,
    next_group_id: AtomicU32,
    next_consumer: AtomicU64,
    /// Open Subscribe streams, all groups.
    connected: AtomicU64,
    started: SystemTime,
    /// Bytes of events held by all groups.
    memory: Arc<memory::MemoryBudget>,
    /// The last run ended with a graceful shutdown.
    clean_start: bool,
    /// False while storage refuses writes.
    health: tokio::sync::watch::Sender<bool>,
}

impl Broker {
    /// Opens the data directory: metadata, every topic's log (recovering
    /// torn tails) and every group with its persisted progress.
    ///
    /// # Errors
    /// The data directory or a log cannot be opened, or metadata is unreadable.
    pub async fn open(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let topics_dir = config.data_dir.join("topics");
        std::fs::create_dir_all(&topics_dir).map_err(|e| {
            BrokerError::Internal(format!("creating {}: {e}", topics_dir.display()))
        })?;
        let meta_path = config.data_dir.join("meta.redb");
        let cache = config.meta_cache_bytes;
        let meta = Arc::new(
            tokio::task::spawn_blocking(move || MetaStore::open_with_cache(&meta_path, cache))
                .await
                .map_err(|e| BrokerError::Internal(e.to_string()))??,
        );
        let fresh = u64::from(rand_u32()) << 32 | u64::from(rand_u32());
        let secret_meta = meta.clone();
        let token_secret = tokio::task::spawn_blocking(move || secret_meta.secret(fresh))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))??;
        let clean_meta = meta.clone();
        let clean_start = tokio::task::spawn_blocking(move || clean_meta.take_clean_mark())
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))??;
        if !clean_start {
            tracing::warn!(
                "the last run did not shut down cleanly; attempt counts of events that were in flight may be one higher"
            );
        }
        let tasks = TaskTracker::new();
        let states = StateWriter::start(meta.clone(), &tasks);
        let broker = Broker {
            inner: Arc::new(Inner {
                meta,
                topics: RwLock::new(BTreeMap::new()),
                groups_by_id: RwLock::new(HashMap::new()),
                admin: tokio::sync::Mutex::new(()),
                tasks,
                group_tasks: TaskTracker::new(),
                groups_stop: CancellationToken::new(),
                states: Mutex::new(Some(states)),
                run: rand_u32(),
                token_secret,
                next_group_id: AtomicU32::new(1),
                next_consumer: AtomicU64::new(1),
                connected: AtomicU64::new(0),
                started: SystemTime::now(),
                memory: Arc::new(memory::MemoryBudget::new(config.groups_memory_bytes)),
                clean_start,
                health: tokio::sync::watch::Sender::new(true),
                config,
            }),
        };
        broker.load().await?;
        broker.inner.tasks.spawn(doctor::run(broker.clone()));
        Ok(broker)
    }

    /// Whether storage accepts writes; changes when it fails or recovers.
    pub fn health(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.health.subscribe()
    }

    /// The configuration in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// Stops every group (persisting its progress), then flushes and syncs
    /// every log. Streams end; later calls fail with UNAVAILABLE.
    pub async fn shutdown(&self) {
        self.stop_groups().await;
        let inner = &self.inner;
        let states = lock(&inner.states).take();
        if let Some(states) = states {
            states.flush().await;
        }
        if inner.meta.healthy() {
            let meta = inner.meta.clone();
            match tokio::task::spawn_blocking(move || meta.mark_clean()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "recording the clean shutdown failed"),
                Err(e) => tracing::error!(error = %e, "recording the clean shutdown failed"),
            }
        }
        for topic in self.all_topics() {
            if let Err(e) = topic.log.close().await {
                tracing::error!(dir = %topic.log.dir().display(), error = %e, "closing log failed");
            }
        }
        inner.tasks.close();
        inner.tasks.wait().await;
    }

    /// Stops every group task (ending consumer streams and persisting group
    /// progress); publishing still works. First half of [`Broker::shutdown`].
    pub async fn stop_groups(&self) {
        let inner = &self.inner;
        inner.groups_stop.cancel();
        inner.group_tasks.close();
        inner.group_tasks.wait().await;
    }

    /// Test hook: holds the lock that serialises topic and group creation
    /// and deletion, so a test can line admin calls up behind it in a
    /// chosen order. Not for production use.
    #[doc(hidden)]
    pub async fn hold_admin_lock_for_test(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.admin.lock().await
    }

    /// Test hook: while on, writes to the metadata store fail as on a full
    /// disk. Not for production use.
    #[doc(hidden)]
    pub fn inject_metadata_write_failures(&self, on: bool) {
        self.inner.meta.inject_write_failures(on);
    }

    /// Gauges of every running group as (topic, group, gauges), for metrics.
    pub fn group_gauges(&self) -> Vec<(String, String, Arc<GroupGauges>)> {
        self.inner
            .groups_by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|g| {
                let (topic, group) = g.key();
                (topic, group, g.gauges.clone())
            })
            .collect()
    }

    /// Every topic, in name order.
    fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn states(&self) -> Result<StateWriter, BrokerError> {
        lock(&self.inner.states)
            .clone()
            .ok_or_else(BrokerError::shutting_down)
    }
}

/// A random number for the run id, from the OS-seeded hasher (no extra crate).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() >> 32) as u32
}

pub(crate) fn next_id(counter: &AtomicU32) -> u32 {
    counter.fetch_add(1, Ordering::Relaxed)
}
