//! Topics of the embedded backend: create, get, list, update, delete.
//!
//! Storage layer (embedded backend). Creation and deletion are serialised
//! by the admin lock, and existence is checked under it, so a topic found
//! here cannot be deleted before the caller acts on it.

use std::sync::Arc;

use super::group::{Gone, GroupHandle};
use super::load::{apply_settings, encode};
use super::topic::{Topic, lock};
use super::{EmbeddedBackend, blocking};
use crate::event::now_us;
use crate::model::results::TopicInfo;
use crate::model::settings::{Position, TopicRecord, TopicSettings};
use crate::model::{Error, echo};
use crate::storage::StorageError;
use crate::storage::backend::Update;

pub(super) fn not_found_topic(name: &str) -> Error {
    Error::NotFound(format!("topic {} does not exist", echo(name)))
}

impl EmbeddedBackend {
    /// Creates a topic (the caller holds the admin lock).
    pub(super) async fn create_topic_locked(
        &self,
        record: TopicRecord,
    ) -> Result<Arc<Topic>, Error> {
        let name = record.name.clone();
        // A directory without a metadata record is left over from a crash
        // during an earlier delete: it must not leak old events into the new topic.
        let dir = self.inner.config.data_dir.join("topics").join(&name);
        if dir.exists() {
            let d = dir.clone();
            blocking(move || {
                std::fs::remove_dir_all(&d)
                    .map_err(|e| StorageError::io(format!("removing {}", d.display()), e))
            })
            .await?;
        }
        let log = self.open_log(&name).await?;
        apply_settings(&log, &record.settings);
        let bytes = encode(&record)?;
        let meta = self.inner.meta.clone();
        let key = name.clone();
        if let Err(e) = blocking(move || meta.put_topic(&key, &bytes)).await {
            let _ = log.close().await;
            return Err(e);
        }
        let topic = Arc::new(Topic::new(record, log));
        self.inner
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), topic.clone());
        tracing::info!(topic = %name, "topic created");
        Ok(topic)
    }

    /// The topic, created with `defaults` when missing and defaults are
    /// given (the caller holds the admin lock). When it has to be created,
    /// `start` (a group's start position) is checked against the empty
    /// topic first, so a bad one creates nothing.
    pub(super) async fn ensure_topic_locked(
        &self,
        name: &str,
        defaults: Option<&TopicSettings>,
        start: Option<(Position, &str)>,
    ) -> Result<Arc<Topic>, Error> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        let Some(defaults) = defaults else {
            return Err(not_found_topic(name));
        };
        if let Some((Position::Offset(o), field)) = start
            && o > 0
        {
            return Err(Error::OutOfRange(format!(
                "{field}: offset {o} is past the end of the topic (0)"
            )));
        }
        self.create_topic_locked(TopicRecord {
            name: name.to_string(),
            created_us: now_us(),
            settings: defaults.clone(),
        })
        .await
    }

    pub(super) async fn create_topic_impl(&self, record: TopicRecord) -> Result<TopicInfo, Error> {
        let _admin = self.inner.admin.lock().await;
        if self.topic(&record.name).is_some() {
            return Err(Error::AlreadyExists(format!(
                "topic {} already exists",
                echo(&record.name)
            )));
        }
        Ok(self.create_topic_locked(record).await?.info())
    }

    pub(super) async fn ensure_topic_impl(
        &self,
        name: &str,
        defaults: &TopicSettings,
    ) -> Result<(), Error> {
        if self.topic(name).is_some() {
            return Ok(());
        }
        let _admin = self.inner.admin.lock().await;
        self.ensure_topic_locked(name, Some(defaults), None).await?;
        Ok(())
    }

    pub(super) fn get_topic_impl(&self, name: &str) -> Result<TopicInfo, Error> {
        self.topic(name)
            .map(|t| t.info())
            .ok_or_else(|| not_found_topic(name))
    }

    pub(super) fn list_topics_impl(&self, after: Option<&str>, limit: usize) -> Vec<TopicInfo> {
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
        let iter: Box<dyn Iterator<Item = (&String, &Arc<Topic>)>> = match after {
            Some(a) => Box::new(
                topics.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            ),
            None => Box::new(topics.iter()),
        };
        iter.take(limit).map(|(_, t)| t.info()).collect()
    }

    pub(super) async fn update_topic_impl(
        &self,
        name: &str,
        update: Update<'_, TopicSettings>,
    ) -> Result<TopicInfo, Error> {
        let _admin = self.inner.admin.lock().await;
        let topic = self.topic(name).ok_or_else(|| not_found_topic(name))?;
        let mut record = lock(&topic.record).clone();
        update(&mut record.settings)?;
        let bytes = encode(&record)?;
        let meta = self.inner.meta.clone();
        let key = name.to_string();
        blocking(move || meta.put_topic(&key, &bytes)).await?;
        apply_settings(&topic.log, &record.settings);
        *lock(&topic.record) = record;
        Ok(topic.info())
    }

    pub(super) async fn delete_topic_impl(&self, name: &str) -> Result<(), Error> {
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

    pub(super) fn forget_group(&self, g: &GroupHandle, why: Gone) {
        let _ = g.gone.set(why);
        g.stop.cancel();
        self.inner
            .groups_by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&g.uid);
    }
}
