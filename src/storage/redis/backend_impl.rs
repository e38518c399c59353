//! [`Backend`] for [`RedisBackend`]: each method forwards to the module
//! that implements it.
//!
//! Storage layer (Redis backend).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::{RedisBackend, lock};
use crate::event::{Event, StoredEvent};
use crate::model::Error;
use crate::model::results::{
    DeadLetterCounts, GroupGauges, GroupInfo, LeaseOutcome, Selection, TopicInfo,
};
use crate::model::settings::{GroupRecord, GroupSettings, Position, TopicRecord, TopicSettings};
use crate::storage::backend::{
    Appended, Backend, BoxFuture, DeadLetterQuery, DeadLetterRows, DeliveryStream, Forwarded, Join,
    LeaseRef, Nack, TopicWatch, Totals, Update, found,
};

#[async_trait::async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> watch::Receiver<bool> {
        self.inner.healthy.subscribe()
    }

    fn state(&self) -> String {
        let shape = if self.inner.link.clustered() {
            "Redis Cluster"
        } else {
            "Redis"
        };
        if *self.inner.healthy.borrow() {
            format!("ok ({shape}, node {})", self.inner.node)
        } else {
            format!("{shape} unreachable; retrying")
        }
    }

    fn secret(&self) -> [u8; 16] {
        self.inner.secret
    }

    fn totals(&self) -> Totals {
        Totals {
            topics: self.inner.topic_count.load(Ordering::Relaxed),
            groups: self.inner.group_count.load(Ordering::Relaxed),
            published: self.inner.published.load(Ordering::Relaxed),
            connected: self.inner.connected.load(Ordering::Relaxed),
        }
    }

    fn group_gauges(&self) -> Vec<(String, String, Arc<GroupGauges>)> {
        lock(&self.inner.gauges).values().cloned().collect()
    }

    fn group_name(&self, group: u64) -> Option<(String, String)> {
        lock(&self.inner.groups)
            .get(&group)
            .map(|g| (g.topic.clone(), g.name.clone()))
    }

    async fn learn_group(&self, group: u64) -> Result<(), Error> {
        // Found groups are remembered by `group_ref`.
        self.group_by_id(group).await.map(|_| ())
    }

    async fn stop_consumers(&self) {
        self.stop_consumers_impl().await;
    }

    async fn close(&self) {
        self.close_impl().await;
    }

    async fn create_topic(&self, record: TopicRecord) -> Result<TopicInfo, Error> {
        self.create_topic_impl(record).await
    }

    async fn ensure_topic(&self, name: &str, defaults: &TopicSettings) -> Result<(), Error> {
        self.ensure_topic_impl(name, defaults).await
    }

    async fn topic_exists(&self, name: &str) -> Result<bool, Error> {
        self.topic_known(name).await
    }

    async fn group_exists(&self, topic: &str, group: &str) -> Result<bool, Error> {
        found(self.group_ref(topic, group).await)
    }

    async fn get_topic(&self, name: &str) -> Result<TopicInfo, Error> {
        self.get_topic_impl(name).await
    }

    async fn list_topics(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TopicInfo>, Error> {
        self.list_topics_impl(after, limit).await
    }

    async fn update_topic(
        &self,
        name: &str,
        update: Update<'_, TopicSettings>,
    ) -> Result<TopicInfo, Error> {
        self.update_topic_impl(name, update).await
    }

    async fn delete_topic(&self, name: &str) -> Result<(), Error> {
        self.delete_topic_impl(name).await
    }

    fn append(
        &self,
        topic: &str,
        events: Vec<Event>,
        server_ids: Vec<bool>,
    ) -> Result<BoxFuture<Result<Appended, Error>>, Error> {
        self.append_impl(topic, events, server_ids)
    }

    async fn read(
        &self,
        topic: &str,
        from: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        self.read_impl(topic, from, max_events, max_bytes).await
    }

    async fn resolve(&self, topic: &str, position: Position) -> Result<u64, Error> {
        self.resolve_impl(topic, position).await
    }

    async fn watch(&self, topic: &str, follow: bool) -> Result<TopicWatch, Error> {
        self.watch_impl(topic, follow).await
    }

    async fn create_group(
        &self,
        record: GroupRecord,
        topic_defaults: Option<&TopicSettings>,
    ) -> Result<GroupInfo, Error> {
        self.create_group_impl(record, topic_defaults).await
    }

    async fn ensure_group(
        &self,
        topic: &str,
        group: &str,
        defaults: Option<(&GroupSettings, &TopicSettings)>,
    ) -> Result<(), Error> {
        self.ensure_group_impl(topic, group, defaults).await
    }

    async fn get_group(&self, topic: &str, group: &str) -> Result<GroupInfo, Error> {
        self.get_group_impl(topic, group).await
    }

    async fn list_groups(
        &self,
        topic: Option<&str>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<GroupInfo>, Error> {
        self.list_groups_impl(topic, after, limit).await
    }

    async fn update_group(
        &self,
        topic: &str,
        group: &str,
        update: Update<'_, GroupSettings>,
    ) -> Result<GroupInfo, Error> {
        self.update_group_impl(topic, group, update).await
    }

    async fn delete_group(&self, topic: &str, group: &str) -> Result<(), Error> {
        self.delete_group_impl(topic, group).await
    }

    async fn seek(&self, topic: &str, group: &str, position: Position) -> Result<u64, Error> {
        self.seek_impl(topic, group, position).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        join: Join,
    ) -> Result<DeliveryStream, Error> {
        self.subscribe_impl(topic, group, consumer, join).await
    }

    async fn ack(&self, leases: &[LeaseRef]) -> Result<Vec<LeaseOutcome>, Error> {
        self.ack_impl(leases).await
    }

    async fn nack(&self, leases: &[LeaseRef], nack: &Nack) -> Result<Vec<LeaseOutcome>, Error> {
        self.nack_impl(leases, nack).await
    }

    async fn extend(
        &self,
        leases: &[LeaseRef],
        extension: Duration,
    ) -> Result<Vec<(LeaseOutcome, Option<i64>)>, Error> {
        self.extend_impl(leases, extension).await
    }

    async fn list_dead_letters(
        &self,
        topic: &str,
        group: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterRows, Error> {
        self.list_dead_letters_impl(topic, group, query).await
    }

    async fn replay_dead_letters(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, Error> {
        self.replay_dead_letters_impl(topic, group, selection).await
    }

    async fn purge_dead_letters(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, Error> {
        self.purge_dead_letters_impl(topic, group, selection).await
    }

    async fn forwarded(&self, topic: &str, group: &str) -> Result<Forwarded, Error> {
        self.forward_impl(topic, group, None).await
    }

    async fn set_forwarded(&self, topic: &str, group: &str, to: Forwarded) -> Result<(), Error> {
        self.forward_impl(topic, group, Some(to)).await.map(|_| ())
    }
}
