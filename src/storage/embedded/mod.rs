//! The embedded backend: everything on local disk in one data directory.
//!
//! Storage layer. [`log`] is the segmented event log of each topic, [`meta`]
//! the redb database of records, group progress and dead letters. Each
//! consumer group runs as one owner task (`group/`) around the pure
//! dispatcher (`dispatch/`), which holds its leases in memory; the state
//! writer (`state_writer.rs`) group-commits their progress; the doctor
//! (`doctor.rs`) recovers from a failed metadata store. The trait methods
//! are implemented in `topics.rs`, `groups.rs`, `events.rs`, `consume.rs`
//! and `dead_letters.rs`; start-up is `load.rs`.

mod consume;
mod dead_letters;
pub mod dispatch;
mod doctor;
mod events;
mod group;
mod groups;
mod load;
pub mod log;
mod memory;
pub mod meta;
mod state_writer;
mod topic;
mod topics;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::model::Error;
use crate::model::results::GroupGauges;
use crate::storage::StorageError;
use crate::storage::backend::Totals;
use group::GroupHandle;
use log::LogOptions;
use meta::MetaStore;
use state_writer::StateWriter;
use topic::{Topic, lock};

/// Settings of the embedded backend.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Where topics (`topics/<name>/`) and metadata (`meta.redb`) live.
    pub data_dir: PathBuf,
    /// Options of every topic's log.
    pub log: LogOptions,
    /// Longest time group progress waits to be written.
    pub state_flush_interval: Duration,
    /// What one group may hold and hand out at once.
    pub group_limits: dispatch::Limits,
    /// Bytes of events all groups together may hold.
    pub groups_memory_bytes: usize,
    /// Page cache of the metadata store.
    pub meta_cache_bytes: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            data_dir: PathBuf::from("./data"),
            log: LogOptions::default(),
            state_flush_interval: Duration::from_millis(100),
            group_limits: dispatch::Limits::default(),
            groups_memory_bytes: 1 << 30,
            meta_cache_bytes: meta::DEFAULT_CACHE_BYTES,
        }
    }
}

/// The embedded backend. Clones share everything.
#[derive(Clone)]
pub struct EmbeddedBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: EmbeddedConfig,
    meta: Arc<MetaStore>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Groups by id, for routing acks.
    groups_by_id: RwLock<HashMap<u64, GroupHandle>>,
    /// Serialises creation and deletion of topics and groups.
    admin: tokio::sync::Mutex<()>,
    /// Log writer tasks and the state writer.
    tasks: TaskTracker,
    /// Group tasks and readers, stopped before storage is flushed.
    group_tasks: TaskTracker,
    /// Parent of every group's stop token.
    groups_stop: CancellationToken,
    states: Mutex<Option<StateWriter>>,
    /// Kept with the data; signs ack ids and page tokens.
    secret: [u8; 16],
    next_consumer: AtomicU64,
    /// Open consumer streams, all groups.
    connected: AtomicU64,
    /// Bytes of events held by all groups.
    memory: Arc<memory::MemoryBudget>,
    /// The last run ended with a graceful shutdown.
    clean_start: bool,
    /// False while storage refuses writes.
    health: tokio::sync::watch::Sender<bool>,
}

impl EmbeddedBackend {
    /// Opens the data directory: metadata, every topic's log (recovering
    /// torn tails) and every group with its persisted progress.
    ///
    /// # Errors
    /// The data directory or a log cannot be opened, or metadata is unreadable.
    pub async fn open(config: EmbeddedConfig) -> Result<EmbeddedBackend, Error> {
        let topics_dir = config.data_dir.join("topics");
        std::fs::create_dir_all(&topics_dir)
            .map_err(|e| Error::Internal(format!("creating {}: {e}", topics_dir.display())))?;
        let meta_path = config.data_dir.join("meta.redb");
        let cache = config.meta_cache_bytes;
        let meta = Arc::new(blocking(move || MetaStore::open_with_cache(&meta_path, cache)).await?);
        let fresh = *uuid::Uuid::new_v4().as_bytes();
        let m = meta.clone();
        let secret = blocking(move || m.secret(fresh)).await?;
        let m = meta.clone();
        let clean_start = blocking(move || m.take_clean_mark()).await?;
        if !clean_start {
            tracing::warn!(
                "the last run did not shut down cleanly; attempt counts of events that were in flight may be one higher"
            );
        }
        let tasks = TaskTracker::new();
        let states = StateWriter::start(meta.clone(), &tasks);
        let backend = EmbeddedBackend {
            inner: Arc::new(Inner {
                meta,
                topics: RwLock::new(BTreeMap::new()),
                groups_by_id: RwLock::new(HashMap::new()),
                admin: tokio::sync::Mutex::new(()),
                tasks,
                group_tasks: TaskTracker::new(),
                groups_stop: CancellationToken::new(),
                states: Mutex::new(Some(states)),
                secret,
                next_consumer: AtomicU64::new(1),
                connected: AtomicU64::new(0),
                memory: Arc::new(memory::MemoryBudget::new(config.groups_memory_bytes)),
                clean_start,
                health: tokio::sync::watch::Sender::new(true),
                config,
            }),
        };
        backend.load().await?;
        backend.inner.tasks.spawn(doctor::run(backend.clone()));
        Ok(backend)
    }

    /// Stops every group task (ending consumer streams and saving exact
    /// group progress); publishing still works.
    async fn stop_groups(&self) {
        let inner = &self.inner;
        inner.groups_stop.cancel();
        inner.group_tasks.close();
        inner.group_tasks.wait().await;
    }

    /// Flushes group progress, records a clean shutdown, closes every log.
    async fn shut_down(&self) {
        self.stop_groups().await;
        let inner = &self.inner;
        let states = lock(&inner.states).take();
        if let Some(states) = states {
            states.flush().await;
        }
        if inner.meta.healthy() {
            let meta = inner.meta.clone();
            if let Err(e) = blocking(move || meta.mark_clean()).await {
                tracing::error!(error = %e, "recording the clean shutdown failed");
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

    fn totals(&self) -> Totals {
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
        let groups = self
            .inner
            .groups_by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        Totals {
            topics: topics.len() as u64,
            groups: groups as u64,
            published: topics
                .values()
                .map(|t| t.published.load(Ordering::Relaxed))
                .sum(),
            connected: self.inner.connected.load(Ordering::Relaxed),
        }
    }

    fn group_gauges(&self) -> Vec<(String, String, Arc<GroupGauges>)> {
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

    fn group_by_id(&self, uid: u64) -> Option<GroupHandle> {
        self.inner
            .groups_by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .cloned()
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

    fn states(&self) -> Result<StateWriter, Error> {
        lock(&self.inner.states)
            .clone()
            .ok_or_else(Error::shutting_down)
    }
}

/// Runs blocking storage work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(Error::from)
}

mod backend_impl;
