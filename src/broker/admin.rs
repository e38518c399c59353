//! Topic and group administration: create, get, list, update, delete, and
//! loading everything back at start-up.
//!
//! Broker layer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::error::{BrokerError, echo};
use super::filter::Matcher;
use super::group::{self, Gone, GroupCmd, GroupHandle, GroupStart, GroupStats};
use super::names::check_name;
use super::settings::{GroupPatch, GroupRecord, Position, TopicPatch, TopicRecord};
use super::topic::{Topic, TopicInfo, lock};
use super::{Broker, next_id};
use crate::event::now_us;
use crate::storage::StorageError;
use crate::storage::log::TopicLog;
use crate::storage::meta::{GroupState, StateHeader, fresh_generation};

/// Version, uptime and totals of the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Crate version.
    pub version: String,
    /// Storage backend name.
    pub storage_backend: String,
    /// Start time.
    pub started: SystemTime,
    /// Time since start.
    pub uptime: Duration,
    /// Topics.
    pub topics: u64,
    /// Groups.
    pub groups: u64,
    /// Events published since start.
    pub published: u64,
    /// Open Subscribe streams.
    pub connected_consumers: u64,
    /// The fsync policy.
    pub fsync: String,
}

/// A group with its settings and stats.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    /// Stored record.
    pub record: GroupRecord,
    /// Current counters.
    pub stats: GroupStats,
}

/// Logs opened at once at start-up.
const LOAD_PARALLELISM: usize = 32;

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, BrokerError> {
    serde_json::from_slice(bytes)
        .map_err(|e| BrokerError::Internal(format!("stored {what} is unreadable: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, BrokerError> {
    serde_json::to_vec(value).map_err(|e| BrokerError::Internal(e.to_string()))
}

/// Runs a blocking metadata call off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::storage::StorageError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Internal(e.to_string()))?
        .map_err(BrokerError::from)
}

impl Broker {
    /// Loads topics and groups from metadata at start-up. Logs are opened
    /// (and their tails recovered) several at a time.
    pub(super) async fn load(&self) -> Result<(), BrokerError> {
        let started = std::time::Instant::now();
        let meta = self.inner.meta.clone();
        let topics = blocking(move || meta.topics()).await?;
        let count = topics.len();
        let mut opening = tokio::task::JoinSet::new();
        let mut pending = topics.into_iter();
        loop {
            while opening.len() < LOAD_PARALLELISM {
                let Some((name, bytes)) = pending.next() else {
                    break;
                };
                let broker = self.clone();
                opening.spawn(async move {
                    let record: TopicRecord = decode("topic", &bytes)?;
                    let log = broker.open_log(&name).await?;
                    apply_settings(&log, &record.settings);
                    let stats = log.stats();
                    tracing::debug!(topic = %name, end_offset = stats.end_offset, segments = stats.segments, "topic loaded");
                    Ok::<_, BrokerError>((name, Topic::new(record, log)))
                });
            }
            let Some(opened) = opening.join_next().await else {
                break;
            };
            let (name, topic) = opened.map_err(|e| BrokerError::Internal(e.to_string()))??;
            self.inner
                .topics
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, Arc::new(topic));
        }
        self.remove_orphan_dirs().await?;
        self.load_groups(self.inner.clean_start).await?;
        tracing::info!(
            topics = count,
            groups = self
                .inner
                .groups_by_id
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "topics and groups loaded"
        );
        Ok(())
    }

    /// Starts every stored group (at start-up, and again after the
    /// metadata store was reopened following a failure). `clean` says
    /// whether the stored state was written by a graceful shutdown.
    pub(super) async fn load_groups(&self, clean: bool) -> Result<(), BrokerError> {
        let meta = self.inner.meta.clone();
        let groups = blocking(move || meta.groups()).await?;
        for stored in groups {
            let record: GroupRecord = decode("group", &stored.record)?;
            let Some(topic) = self.topic(&stored.topic) else {
                tracing::warn!(topic = %stored.topic, group = %stored.group, "group of a missing topic ignored");
                continue;
            };
            self.spawn_group(&topic, record, stored.state, stored.dead_letters, clean)
                .await?;
        }
        Ok(())
    }

    /// Removes topic directories that have no metadata record: left by a
    /// crash between creating a topic's files and its record, or between
    /// deleting its record and its files.
    async fn remove_orphan_dirs(&self) -> Result<(), BrokerError> {
        let dir = self.inner.config.data_dir.join("topics");
        let known: std::collections::HashSet<String> = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let removed = blocking(move || {
            let mut removed = Vec::new();
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if known.contains(&name) {
                    continue;
                }
                let path = entry.path();
                let gone = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                gone.map_err(|e| StorageError::io(format!("removing {}", path.display()), e))?;
                removed.push(name);
            }
            Ok(removed)
        })
        .await?;
        for name in removed {
            tracing::warn!(topic = %name, "removed the files of a topic without a metadata record (left by a crash during create or delete)");
        }
        Ok(())
    }

    async fn open_log(&self, name: &str) -> Result<TopicLog, BrokerError> {
        let dir = self.inner.config.data_dir.join("topics").join(name);
        Ok(TopicLog::open(dir, self.inner.config.log.clone(), &self.inner.tasks).await?)
    }

    async fn spawn_group(
        &self,
        topic: &Topic,
        record: GroupRecord,
        state: GroupState,
        dead_letters: Vec<crate::storage::meta::DeadLetterSummary>,
        clean: bool,
    ) -> Result<GroupHandle, BrokerError> {
        let name = record.name.clone();
        let (handle, task) = group::start(GroupStart {
            id: next_id(&self.inner.next_group_id),
            run: self.inner.run,
            record,
            state,
            dead_letters,
            clean,
            log: topic.log.clone(),
            meta: self.inner.meta.clone(),
            states: self.states()?,
            flush_interval: self.inner.config.state_flush_interval,
            limits: self.inner.config.group_limits,
            memory: self.inner.memory.clone(),
            stop: self.inner.groups_stop.child_token(),
        })
        .await?;
        self.inner.group_tasks.spawn(task);
        lock(&topic.groups).insert(name, handle.clone());
        self.inner
            .groups_by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(handle.id, handle.clone());
        Ok(handle)
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name or setting, `AlreadyExists`.
    pub async fn create_topic(
        &self,
        name: &str,
        patch: &TopicPatch,
    ) -> Result<TopicInfo, BrokerError> {
        check_name("topic.name", name)?;
        let _admin = self.inner.admin.lock().await;
        if self.topic(name).is_some() {
            return Err(BrokerError::AlreadyExists(format!(
                "topic {} already exists",
                echo(name)
            )));
        }
        Ok(self.create_topic_locked(name, patch).await?.info())
    }

    async fn create_topic_locked(
        &self,
        name: &str,
        patch: &TopicPatch,
    ) -> Result<Arc<Topic>, BrokerError> {
        let mut settings = self.inner.config.topic_defaults.clone();
        patch.apply(&mut settings)?;
        let record = TopicRecord {
            name: name.to_string(),
            created_us: now_us(),
            settings,
        };
        // A directory without a metadata record is left over from a crash
        // during an earlier delete: it must not leak old events into the new topic.
        let dir = self.inner.config.data_dir.join("topics").join(name);
        if dir.exists() {
            let d = dir.clone();
            blocking(move || {
                std::fs::remove_dir_all(&d)
                    .map_err(|e| StorageError::io(format!("removing {}", d.display()), e))
            })
            .await?;
        }
        let log = self.open_log(name).await?;
        apply_settings(&log, &record.settings);
        let bytes = encode(&record)?;
        let meta = self.inner.meta.clone();
        let key = name.to_string();
        blocking(move || meta.put_topic(&key, &bytes)).await?;
        let topic = Arc::new(Topic::new(record, log));
        self.inner
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), topic.clone());
        tracing::info!(topic = %name, "topic created");
        Ok(topic)
    }

    /// The topic, created with defaults when missing and auto-create is on.
    ///
    /// # Errors
    /// `NotFound` when missing and auto-create is off; `InvalidArgument` for a bad name.
    pub(super) async fn ensure_topic(
        &self,
        field: &str,
        name: &str,
    ) -> Result<Arc<Topic>, BrokerError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        check_name(field, name)?;
        if !self.inner.config.auto_create {
            return Err(not_found_topic(name));
        }
        let _admin = self.inner.admin.lock().await;
        self.ensure_topic_locked(name, None).await
    }

    /// [`Broker::ensure_topic`] for a caller that holds the admin lock, so
    /// that what it finds cannot be deleted before it acts on it. When the
    /// topic has to be created, `start` (a group's start position) is
    /// checked against the empty topic first, so a bad one creates nothing.
    async fn ensure_topic_locked(
        &self,
        name: &str,
        start: Option<(Position, &str)>,
    ) -> Result<Arc<Topic>, BrokerError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        if !self.inner.config.auto_create {
            return Err(not_found_topic(name));
        }
        if let Some((Position::Offset(o), field)) = start
            && o > 0
        {
            return Err(BrokerError::OutOfRange(format!(
                "{field}: offset {o} is past the end of the topic (0)"
            )));
        }
        self.create_topic_locked(name, &TopicPatch::default()).await
    }

    /// A topic with stats.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn get_topic(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        check_name("name", name)?;
        self.topic(name)
            .map(|t| t.info())
            .ok_or_else(|| not_found_topic(name))
    }

    /// Whether `name` is a topic (for the edge's auto-create check).
    pub fn has_topic(&self, name: &str) -> bool {
        self.topic(name).is_some()
    }

    /// Whether `name` is a group of `topic`.
    pub fn has_group(&self, topic: &str, name: &str) -> bool {
        self.topic(topic).is_some_and(|t| t.group(name).is_some())
    }

    /// A page of topics in name order, after `after` (exclusive).
    ///
    /// # Errors
    /// `InvalidArgument` for a bad page token.
    pub fn list_topics(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<TopicInfo>, Option<String>), BrokerError> {
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
        let iter: Box<dyn Iterator<Item = (&String, &Arc<Topic>)>> = match after {
            Some(a) => Box::new(
                topics.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            ),
            None => Box::new(topics.iter()),
        };
        let page: Vec<TopicInfo> = iter.take(limit + 1).map(|(_, t)| t.info()).collect();
        Ok(paginate(page, limit, |t| t.record.name.clone()))
    }

    /// Changes a topic's settings.
    ///
    /// # Errors
    /// `NotFound`, `InvalidArgument`.
    pub async fn update_topic(
        &self,
        name: &str,
        patch: &TopicPatch,
    ) -> Result<TopicInfo, BrokerError> {
        check_name("topic.name", name)?;
        let _admin = self.inner.admin.lock().await;
        let topic = self.topic(name).ok_or_else(|| not_found_topic(name))?;
        let mut record = lock(&topic.record).clone();
        patch.apply(&mut record.settings)?;
        let bytes = encode(&record)?;
        let meta = self.inner.meta.clone();
        let key = name.to_string();
        blocking(move || meta.put_topic(&key, &bytes)).await?;
        apply_settings(&topic.log, &record.settings);
        *lock(&topic.record) = record;
        Ok(topic.info())
    }

    /// Deletes a topic with its events and groups.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        check_name("name", name)?;
        let _admin = self.inner.admin.lock().await;
        self.topic(name).ok_or_else(|| not_found_topic(name))?;
        // The record goes first: if that fails, nothing has changed.
        let meta = self.inner.meta.clone();
        let key = name.to_string();
        blocking(move || meta.delete_topic(&key)).await?;
        let Some(topic) = self
            .inner
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
        else {
            return Ok(());
        };
        topic.deleted.cancel();
        let groups: Vec<GroupHandle> = std::mem::take(&mut *lock(&topic.groups))
            .into_values()
            .collect();
        for g in &groups {
            self.forget_group(g, Gone::TopicDeleted);
        }
        if let Err(e) = topic.log.close().await {
            tracing::warn!(topic = %name, error = %e, "closing the log of a deleted topic failed");
        }
        let dir = topic.log.dir().to_path_buf();
        // The topic is gone either way; a directory left behind is removed
        // at the next start (or when a topic of that name is created).
        if let Err(e) = blocking(move || {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| StorageError::io(format!("removing {}", dir.display()), e))
        })
        .await
        {
            tracing::warn!(topic = %name, error = %e, "removing the files of a deleted topic failed");
        }
        tracing::info!(topic = %name, groups = groups.len(), "topic deleted");
        Ok(())
    }

    fn forget_group(&self, g: &GroupHandle, why: Gone) {
        let _ = g.gone.set(why);
        g.stop.cancel();
        self.inner
            .groups_by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&g.id);
    }

    /// Creates a consumer group at `start` (default: latest).
    ///
    /// # Errors
    /// `InvalidArgument`, `NotFound` (topic, when auto-create is off),
    /// `AlreadyExists`, `OutOfRange` (start offset outside the topic; then
    /// nothing is created, not even the topic).
    pub async fn create_group(
        &self,
        topic: &str,
        name: &str,
        patch: &GroupPatch,
        start: Option<Position>,
    ) -> Result<GroupInfo, BrokerError> {
        check_name("group.topic", topic)?;
        check_name("group.name", name)?;
        let mut settings = self.inner.config.group_defaults.clone();
        patch.apply(&mut settings)?;
        Matcher::compile(&settings.filter)?;
        let start = start.unwrap_or(Position::Latest);
        let handle = {
            // Existence is checked under the same lock as every creation and
            // deletion, so a concurrent DeleteTopic cannot slip in between.
            let _admin = self.inner.admin.lock().await;
            let t = self
                .ensure_topic_locked(topic, Some((start, "group.start_position")))
                .await?;
            if t.group(name).is_some() {
                return Err(BrokerError::AlreadyExists(format!(
                    "group {} of topic {} already exists",
                    echo(name),
                    echo(topic)
                )));
            }
            let record = GroupRecord {
                topic: topic.to_string(),
                name: name.to_string(),
                created_us: now_us(),
                start,
                settings,
            };
            self.create_group_locked(&t, record).await?
        };
        self.group_info(&handle).await
    }

    async fn create_group_locked(
        &self,
        topic: &Topic,
        record: GroupRecord,
    ) -> Result<GroupHandle, BrokerError> {
        let cursor = self.resolve_position(topic, record.start, "group.start_position")?;
        let header = StateHeader {
            generation: fresh_generation(),
            floor: cursor,
            cursor,
            reserved: cursor,
        };
        let bytes = encode(&record)?;
        let meta = self.inner.meta.clone();
        let (t, g) = (record.topic.clone(), record.name.clone());
        blocking(move || meta.create_group(&t, &g, &bytes, &header)).await?;
        tracing::info!(topic = %record.topic, group = %record.name, cursor, "group created");
        let state = GroupState {
            header,
            entries: Vec::new(),
        };
        self.spawn_group(topic, record, state, Vec::new(), true)
            .await
    }

    /// The offset a position names in `topic`.
    pub(super) fn resolve_position(
        &self,
        topic: &Topic,
        position: Position,
        field: &str,
    ) -> Result<u64, BrokerError> {
        let (start, end) = (topic.log.start_offset(), topic.log.end_offset());
        Ok(match position {
            Position::Earliest => start,
            Position::Latest => end,
            Position::Offset(o) if o < start => {
                return Err(BrokerError::OutOfRange(format!(
                    "{field}: offset {o} is before the first available offset {start}"
                )));
            }
            Position::Offset(o) if o > end => {
                return Err(BrokerError::OutOfRange(format!(
                    "{field}: offset {o} is past the end of the topic ({end})"
                )));
            }
            Position::Offset(o) => o,
            Position::Time(t) => topic.log.offset_for_time(t)?,
        })
    }

    /// The group, created with defaults when missing and auto-create is on.
    pub(super) async fn ensure_group(
        &self,
        topic: &str,
        name: &str,
    ) -> Result<GroupHandle, BrokerError> {
        if let Some(g) = self.topic(topic).and_then(|t| t.group(name)) {
            return Ok(g);
        }
        check_name("topic", topic)?;
        check_name("group", name)?;
        if !self.inner.config.auto_create {
            return Err(match self.topic(topic) {
                None => not_found_topic(topic),
                Some(_) => not_found_group(topic, name),
            });
        }
        let _admin = self.inner.admin.lock().await;
        let t = self.ensure_topic_locked(topic, None).await?;
        if let Some(g) = t.group(name) {
            return Ok(g);
        }
        let record = GroupRecord {
            topic: topic.to_string(),
            name: name.to_string(),
            created_us: now_us(),
            start: Position::Latest,
            settings: self.inner.config.group_defaults.clone(),
        };
        self.create_group_locked(&t, record).await
    }

    pub(super) fn find_group(&self, topic: &str, name: &str) -> Result<GroupHandle, BrokerError> {
        check_name("topic", topic)?;
        check_name("group", name)?;
        let t = self.topic(topic).ok_or_else(|| not_found_topic(topic))?;
        t.group(name).ok_or_else(|| not_found_group(topic, name))
    }

    async fn group_info(&self, g: &GroupHandle) -> Result<GroupInfo, BrokerError> {
        let stats = g.ask(|reply| GroupCmd::Stats { reply }).await?;
        let record = lock(&g.record).clone();
        Ok(GroupInfo { record, stats })
    }

    /// A group with stats.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_group(&self, topic: &str, name: &str) -> Result<GroupInfo, BrokerError> {
        let g = self.find_group(topic, name)?;
        self.group_info(&g).await
    }

    /// A page of groups in (topic, name) order after `after` (exclusive), of
    /// one topic or all.
    ///
    /// # Errors
    /// `NotFound` for a missing topic.
    pub async fn list_groups(
        &self,
        topic: Option<&str>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<(Vec<GroupInfo>, Option<(String, String)>), BrokerError> {
        let topics: Vec<Arc<Topic>> = match topic {
            Some(name) => {
                check_name("topic", name)?;
                vec![self.topic(name).ok_or_else(|| not_found_topic(name))?]
            }
            None => self.all_topics(),
        };
        let mut handles = Vec::new();
        for t in topics {
            let tname = lock(&t.record).name.clone();
            for (gname, g) in lock(&t.groups).iter() {
                let key = (tname.clone(), gname.clone());
                if after.as_ref().is_none_or(|a| &key > a) {
                    handles.push((key, g.clone()));
                }
            }
        }
        handles.sort_by(|a, b| a.0.cmp(&b.0));
        handles.truncate(limit + 1);
        let mut infos = Vec::with_capacity(handles.len());
        for (_, g) in &handles {
            infos.push(self.group_info(g).await?);
        }
        Ok(paginate(infos, limit, |g| {
            (g.record.topic.clone(), g.record.name.clone())
        }))
    }

    /// Changes a group's settings (the start position cannot change; use Seek).
    ///
    /// # Errors
    /// `NotFound`, `InvalidArgument`.
    pub async fn update_group(
        &self,
        topic: &str,
        name: &str,
        patch: &GroupPatch,
    ) -> Result<GroupInfo, BrokerError> {
        self.find_group(topic, name)?;
        let _admin = self.inner.admin.lock().await;
        // Found again under the lock: a DeleteGroup that ran meanwhile wins.
        let g = self.find_group(topic, name)?;
        let mut record = lock(&g.record).clone();
        if patch.ordered.is_some_and(|o| o != record.settings.ordered) {
            return Err(BrokerError::FailedPrecondition(format!(
                "group.ordered: the ordering mode of group {} is fixed at creation; create a new group to change it",
                echo(name)
            )));
        }
        patch.apply(&mut record.settings)?;
        // A new filter meets today's limits; a kept one was accepted before.
        let matcher = match patch.filter {
            Some(_) => Matcher::compile(&record.settings.filter)?,
            None => Matcher::compile_stored(&record.settings.filter)?,
        };
        let bytes = encode(&record)?;
        let meta = self.inner.meta.clone();
        let (t, n) = (record.topic.clone(), record.name.clone());
        blocking(move || meta.put_group(&t, &n, &bytes)).await?;
        *lock(&g.record) = record.clone();
        g.send(GroupCmd::Settings {
            settings: record.settings,
            matcher,
        })
        .await?;
        self.group_info(&g).await
    }

    /// Deletes a group with its progress; its consumers' streams end.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn delete_group(&self, topic: &str, name: &str) -> Result<(), BrokerError> {
        self.find_group(topic, name)?;
        let _admin = self.inner.admin.lock().await;
        let g = self.find_group(topic, name)?;
        let meta = self.inner.meta.clone();
        let (t, n) = (topic.to_string(), name.to_string());
        blocking(move || meta.delete_group(&t, &n)).await?;
        if let Some(t) = self.topic(topic) {
            lock(&t.groups).remove(name);
        }
        self.forget_group(&g, Gone::GroupDeleted);
        tracing::info!(topic = %topic, group = %name, "group deleted");
        Ok(())
    }

    /// Moves a group to a position: events before it count as acknowledged,
    /// events from it on as pending. Returns the offset the group continues from.
    ///
    /// # Errors
    /// `NotFound`; `OutOfRange` for an offset outside the retained log.
    pub async fn seek(
        &self,
        topic: &str,
        group: &str,
        position: Position,
    ) -> Result<u64, BrokerError> {
        let g = self.find_group(topic, group)?;
        let t = self.topic(topic).ok_or_else(|| not_found_topic(topic))?;
        let offset = self.resolve_position(&t, position, "position")?;
        g.ask(|reply| GroupCmd::Seek { offset, reply }).await?
    }

    /// Version, uptime and totals.
    pub fn server_info(&self) -> ServerInfo {
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
        let groups = self
            .inner
            .groups_by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            storage_backend: "embedded".into(),
            started: self.inner.started,
            uptime: self.inner.started.elapsed().unwrap_or_default(),
            topics: topics.len() as u64,
            groups: groups as u64,
            published: topics
                .values()
                .map(|t| t.published.load(Ordering::Relaxed))
                .sum(),
            connected_consumers: self.inner.connected.load(Ordering::Relaxed),
            fsync: self.inner.config.log.fsync.to_string(),
        }
    }
}

/// Hands a topic's dedup and retention settings to its log.
fn apply_settings(log: &TopicLog, settings: &super::settings::TopicSettings) {
    log.set_dedup_window(settings.dedup_window);
    log.set_retention(settings.retention_max_age, settings.retention_max_bytes);
}

/// Splits a fetched `limit + 1` page into the page and the next token.
fn paginate<T, K>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> K) -> (Vec<T>, Option<K>) {
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(key);
        (items, next)
    } else {
        (items, None)
    }
}

pub(super) fn not_found_topic(name: &str) -> BrokerError {
    BrokerError::NotFound(format!("topic {} does not exist", echo(name)))
}

pub(super) fn not_found_group(topic: &str, name: &str) -> BrokerError {
    BrokerError::NotFound(format!(
        "group {} of topic {} does not exist",
        echo(name),
        echo(topic)
    ))
}
