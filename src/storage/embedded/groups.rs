//! Consumer groups of the embedded backend: create, get, list, update,
//! delete, seek.
//!
//! Storage layer (embedded backend). Existence is checked under the admin
//! lock, in the same order as creations and deletions, so concurrent admin
//! calls are linearizable.

use std::sync::Arc;

use super::group::{Gone, GroupCmd, GroupHandle};
use super::load::encode;
use super::meta::{GroupState, StateHeader, fresh_generation};
use super::topic::{Topic, lock};
use super::topics::not_found_topic;
use super::{EmbeddedBackend, blocking};
use crate::event::now_us;
use crate::model::filter::Matcher;
use crate::model::results::GroupInfo;
use crate::model::settings::{GroupRecord, GroupSettings, Position, TopicSettings};
use crate::model::{Error, echo};
use crate::storage::backend::Update;

pub(super) use crate::storage::not_found_group;

impl EmbeddedBackend {
    pub(super) async fn create_group_impl(
        &self,
        record: GroupRecord,
        topic_defaults: Option<&TopicSettings>,
    ) -> Result<GroupInfo, Error> {
        let handle = {
            // Existence is checked under the same lock as every creation and
            // deletion, so a concurrent DeleteTopic cannot slip in between.
            let _admin = self.inner.admin.lock().await;
            let t = self
                .ensure_topic_locked(
                    &record.topic,
                    topic_defaults,
                    Some((record.start, "group.start_position")),
                )
                .await?;
            if t.group(&record.name).is_some() {
                return Err(Error::AlreadyExists(format!(
                    "group {} of topic {} already exists",
                    echo(&record.name),
                    echo(&record.topic)
                )));
            }
            self.create_group_locked(&t, record).await?
        };
        self.group_info(&handle).await
    }

    async fn create_group_locked(
        &self,
        topic: &Topic,
        record: GroupRecord,
    ) -> Result<GroupHandle, Error> {
        let cursor = self.resolve_in(topic, record.start, "group.start_position")?;
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
    pub(super) fn resolve_in(
        &self,
        topic: &Topic,
        position: Position,
        field: &str,
    ) -> Result<u64, Error> {
        let (start, end) = (topic.log.start_offset(), topic.log.end_offset());
        Ok(match position {
            Position::Earliest => start,
            Position::Latest => end,
            Position::Offset(o) if o < start => {
                return Err(Error::OutOfRange(format!(
                    "{field}: offset {o} is before the first available offset {start}"
                )));
            }
            Position::Offset(o) if o > end => {
                return Err(Error::OutOfRange(format!(
                    "{field}: offset {o} is past the end of the topic ({end})"
                )));
            }
            Position::Offset(o) => o,
            Position::Time(t) => topic.log.offset_for_time(t)?,
        })
    }

    /// The group, created (with its topic) from `defaults` when missing
    /// and defaults are given.
    pub(super) async fn ensure_group_handle(
        &self,
        topic: &str,
        name: &str,
        defaults: Option<(&GroupSettings, &TopicSettings)>,
    ) -> Result<GroupHandle, Error> {
        if let Some(g) = self.topic(topic).and_then(|t| t.group(name)) {
            return Ok(g);
        }
        let Some((group_defaults, topic_defaults)) = defaults else {
            return Err(match self.topic(topic) {
                None => not_found_topic(topic),
                Some(_) => not_found_group(topic, name),
            });
        };
        let _admin = self.inner.admin.lock().await;
        let t = self
            .ensure_topic_locked(topic, Some(topic_defaults), None)
            .await?;
        if let Some(g) = t.group(name) {
            return Ok(g);
        }
        let record = GroupRecord {
            topic: topic.to_string(),
            name: name.to_string(),
            created_us: now_us(),
            start: Position::Latest,
            settings: group_defaults.clone(),
        };
        self.create_group_locked(&t, record).await
    }

    pub(super) fn find_group(&self, topic: &str, name: &str) -> Result<GroupHandle, Error> {
        let t = self.topic(topic).ok_or_else(|| not_found_topic(topic))?;
        t.group(name).ok_or_else(|| not_found_group(topic, name))
    }

    pub(super) async fn group_info(&self, g: &GroupHandle) -> Result<GroupInfo, Error> {
        let stats = g.ask(|reply| GroupCmd::Stats { reply }).await?;
        let record = lock(&g.record).clone();
        Ok(GroupInfo { record, stats })
    }

    pub(super) async fn list_groups_impl(
        &self,
        topic: Option<&str>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<GroupInfo>, Error> {
        let topics: Vec<Arc<Topic>> = match topic {
            Some(name) => vec![self.topic(name).ok_or_else(|| not_found_topic(name))?],
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
        handles.truncate(limit);
        let mut infos = Vec::with_capacity(handles.len());
        for (_, g) in &handles {
            infos.push(self.group_info(g).await?);
        }
        Ok(infos)
    }

    pub(super) async fn update_group_impl(
        &self,
        topic: &str,
        name: &str,
        update: Update<'_, GroupSettings>,
    ) -> Result<GroupInfo, Error> {
        self.find_group(topic, name)?;
        let _admin = self.inner.admin.lock().await;
        // Found again under the lock: a DeleteGroup that ran meanwhile wins.
        let g = self.find_group(topic, name)?;
        let mut record = lock(&g.record).clone();
        let before = record.settings.filter.clone();
        update(&mut record.settings)?;
        // A new filter meets today's limits; a kept one was accepted before.
        let matcher = if record.settings.filter == before {
            Matcher::compile_stored(&record.settings.filter)?
        } else {
            Matcher::compile(&record.settings.filter)?
        };
        let bytes = encode(&record)?;
        let meta = self.inner.meta.clone();
        let (t, n) = (record.topic.clone(), record.name.clone());
        blocking(move || meta.put_group(&t, &n, &bytes)).await?;
        *lock(&g.record) = record.clone();
        g.send(GroupCmd::Settings {
            settings: Box::new(record.settings),
            matcher,
        })
        .await?;
        self.group_info(&g).await
    }

    pub(super) async fn delete_group_impl(&self, topic: &str, name: &str) -> Result<(), Error> {
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

    pub(super) async fn seek_impl(
        &self,
        topic: &str,
        group: &str,
        position: Position,
    ) -> Result<u64, Error> {
        let g = self.find_group(topic, group)?;
        let t = self.topic(topic).ok_or_else(|| not_found_topic(topic))?;
        let offset = self.resolve_in(&t, position, "position")?;
        g.ask(|reply| GroupCmd::Seek { offset, reply }).await?
    }
}
