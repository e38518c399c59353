//! Start-up of the embedded backend: topics and their logs, orphaned
//! directories, and every group with its stored progress.
//!
//! Storage layer (embedded backend).

use std::sync::Arc;

use super::group::{self, GroupHandle, GroupStart};
use super::log::TopicLog;
use super::meta::{DeadLetterSummary, GroupState};
use super::topic::{Topic, lock};
use super::{EmbeddedBackend, blocking};
use crate::model::Error;
use crate::model::settings::{GroupRecord, TopicRecord, TopicSettings};
use crate::storage::StorageError;

/// Logs opened at once at start-up.
const LOAD_PARALLELISM: usize = 32;

pub(super) fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Internal(format!("stored {what} is unreadable: {e}")))
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))
}

/// Hands a topic's dedup and retention settings to its log.
pub(super) fn apply_settings(log: &TopicLog, settings: &TopicSettings) {
    log.set_dedup_window(settings.dedup_window);
    log.set_retention(settings.retention_max_age, settings.retention_max_bytes);
}

impl EmbeddedBackend {
    /// Loads topics and groups from metadata at start-up. Logs are opened
    /// (and their tails recovered) several at a time.
    pub(super) async fn load(&self) -> Result<(), Error> {
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
                let backend = self.clone();
                opening.spawn(async move {
                    let record: TopicRecord = decode("topic", &bytes)?;
                    let log = backend.open_log(&name).await?;
                    apply_settings(&log, &record.settings);
                    let stats = log.stats();
                    tracing::debug!(topic = %name, end_offset = stats.end_offset, segments = stats.segments, "topic loaded");
                    Ok::<_, Error>((name, Topic::new(record, log)))
                });
            }
            let Some(opened) = opening.join_next().await else {
                break;
            };
            let (name, topic) = opened.map_err(|e| Error::Internal(e.to_string()))??;
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
            groups = self.totals().groups,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "topics and groups loaded"
        );
        Ok(())
    }

    /// Starts every stored group (at start-up, and again after the
    /// metadata store was reopened following a failure). `clean` says
    /// whether the stored state was written by a graceful shutdown.
    pub(super) async fn load_groups(&self, clean: bool) -> Result<(), Error> {
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
    async fn remove_orphan_dirs(&self) -> Result<(), Error> {
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

    pub(super) async fn open_log(&self, name: &str) -> Result<TopicLog, Error> {
        let dir = self.inner.config.data_dir.join("topics").join(name);
        Ok(TopicLog::open(dir, self.inner.config.log.clone(), &self.inner.tasks).await?)
    }

    pub(super) async fn spawn_group(
        &self,
        topic: &Topic,
        record: GroupRecord,
        state: GroupState,
        dead_letters: Vec<DeadLetterSummary>,
        clean: bool,
    ) -> Result<GroupHandle, Error> {
        let name = record.name.clone();
        let (handle, task) = group::start(GroupStart {
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
            .insert(handle.uid, handle.clone());
        Ok(handle)
    }
}
