//! Topic and group administration: validate, apply defaults, hand to the
//! backend, and paginate.
//!
//! Broker layer.

use std::time::{Duration, SystemTime};

use super::Broker;
use super::error::{BrokerError, echo};
use super::filter::Matcher;
use super::names::check_name;
use super::settings::{GroupPatch, GroupRecord, Position, TopicPatch, TopicRecord};
use crate::event::now_us;
use crate::model::results::{GroupInfo, TopicInfo};

/// Version, uptime and totals of the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Crate version.
    pub version: String,
    /// Storage backend name.
    pub storage_backend: String,
    /// The backend's state in a few words.
    pub storage_state: String,
    /// Start time.
    pub started: SystemTime,
    /// Time since start.
    pub uptime: Duration,
    /// Topics.
    pub topics: u64,
    /// Groups.
    pub groups: u64,
    /// Events published through this node since start.
    pub published: u64,
    /// Open consumer streams (Subscribe or Consume) on this node.
    pub connected_consumers: u64,
    /// The fsync policy.
    pub fsync: String,
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

impl Broker {
    /// The defaults auto-creation uses, when it is on.
    pub(super) fn topic_defaults(&self) -> Option<&super::TopicSettings> {
        let c = &self.inner.config;
        c.auto_create.then_some(&c.topic_defaults)
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
        let mut settings = self.inner.config.topic_defaults.clone();
        patch.apply(&mut settings)?;
        let record = TopicRecord {
            name: name.to_string(),
            created_us: now_us(),
            settings,
        };
        self.inner.backend.create_topic(record).await
    }

    /// The topic exists afterwards: created with defaults when missing and
    /// auto-create is on.
    ///
    /// # Errors
    /// `NotFound` when missing and auto-create is off; `InvalidArgument`.
    pub(super) async fn ensure_topic(&self, field: &str, name: &str) -> Result<(), BrokerError> {
        check_name(field, name)?;
        match self.topic_defaults() {
            Some(defaults) => self.inner.backend.ensure_topic(name, defaults).await,
            None if self.inner.backend.topic_exists(name).await? => Ok(()),
            None => Err(crate::storage::not_found_topic(name)),
        }
    }

    /// A topic with stats.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_topic(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        check_name("name", name)?;
        self.inner.backend.get_topic(name).await
    }

    /// Whether `name` is a topic (for the edge's auto-create check).
    ///
    /// # Errors
    /// Storage failures other than `NotFound`.
    pub async fn has_topic(&self, name: &str) -> Result<bool, BrokerError> {
        self.inner.backend.topic_exists(name).await
    }

    /// Whether `name` is a group of `topic`.
    ///
    /// # Errors
    /// Storage failures other than `NotFound`.
    pub async fn has_group(&self, topic: &str, name: &str) -> Result<bool, BrokerError> {
        self.inner.backend.group_exists(topic, name).await
    }

    /// A page of topics in name order, after `after` (exclusive).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_topics(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<TopicInfo>, Option<String>), BrokerError> {
        let page = self.inner.backend.list_topics(after, limit + 1).await?;
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
        self.inner
            .backend
            .update_topic(name, &|settings| patch.apply(settings))
            .await
    }

    /// Deletes a topic with its events and groups.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        check_name("name", name)?;
        self.inner.backend.delete_topic(name).await
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
        not_to_itself(topic, &settings)?;
        let record = GroupRecord {
            topic: topic.to_string(),
            name: name.to_string(),
            created_us: now_us(),
            start: start.unwrap_or(Position::Latest),
            settings,
        };
        let created = self
            .inner
            .backend
            .create_group(record, self.topic_defaults())
            .await?;
        self.inner
            .watched
            .note(topic, name, &created.record.settings);
        Ok(created)
    }

    /// A group with stats.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_group(&self, topic: &str, name: &str) -> Result<GroupInfo, BrokerError> {
        check_name("topic", topic)?;
        check_name("group", name)?;
        self.inner.backend.get_group(topic, name).await
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
        if let Some(name) = topic {
            check_name("topic", name)?;
        }
        let page = self
            .inner
            .backend
            .list_groups(topic, after, limit + 1)
            .await?;
        Ok(paginate(page, limit, |g| {
            (g.record.topic.clone(), g.record.name.clone())
        }))
    }

    /// Changes a group's settings (the start position cannot change; use
    /// Seek; the ordering mode is fixed at creation).
    ///
    /// # Errors
    /// `NotFound`, `InvalidArgument`, `FailedPrecondition`.
    pub async fn update_group(
        &self,
        topic: &str,
        name: &str,
        patch: &GroupPatch,
    ) -> Result<GroupInfo, BrokerError> {
        check_name("topic", topic)?;
        check_name("group", name)?;
        if let Some(filter) = &patch.filter {
            Matcher::compile(filter)?;
        }
        let update = |settings: &mut super::GroupSettings| {
            if patch.ordered.is_some_and(|o| o != settings.ordered) {
                return Err(BrokerError::FailedPrecondition(format!(
                    "group.ordered: the ordering mode of group {} is fixed at creation; create a new group to change it",
                    echo(name)
                )));
            }
            patch.apply(settings)?;
            not_to_itself(topic, settings)
        };
        let updated = self
            .inner
            .backend
            .update_group(topic, name, &update)
            .await?;
        self.inner
            .watched
            .note(topic, name, &updated.record.settings);
        Ok(updated)
    }

    /// Deletes a group with its progress; its consumers' streams end.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn delete_group(&self, topic: &str, name: &str) -> Result<(), BrokerError> {
        check_name("topic", topic)?;
        check_name("group", name)?;
        self.inner.backend.delete_group(topic, name).await
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
        check_name("topic", topic)?;
        check_name("group", group)?;
        self.inner.backend.seek(topic, group, position).await
    }

    /// Version, uptime and totals.
    pub fn server_info(&self) -> ServerInfo {
        let backend = &self.inner.backend;
        let totals = backend.totals();
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            storage_backend: backend.kind().into(),
            storage_state: backend.state(),
            started: self.inner.started,
            uptime: self.inner.started.elapsed().unwrap_or_default(),
            topics: totals.topics,
            groups: totals.groups,
            published: totals.published,
            connected_consumers: totals.connected,
            fsync: self.inner.config.fsync.clone(),
        }
    }
}

/// A group cannot forward dead letters to its own topic (they would come
/// back to it, round after round).
fn not_to_itself(topic: &str, settings: &super::GroupSettings) -> Result<(), BrokerError> {
    if settings.dead_letter_topic == topic {
        return Err(BrokerError::invalid(
            "group.dead_letter_topic",
            format!("must not be the group's own topic {}", echo(topic)),
        ));
    }
    Ok(())
}
