//! The embedded backend behind the storage seam: each method of
//! [`Backend`] forwards to the file that implements it.
//!
//! Storage layer (embedded backend).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{EmbeddedBackend, blocking};
use crate::event::{Event, StoredEvent};
use crate::model::Error;
use crate::model::results::{
    DeadLetterCounts, GroupGauges, GroupInfo, LeaseOutcome, Selection, TopicInfo,
};
use crate::model::settings::{GroupRecord, GroupSettings, Position, TopicRecord, TopicSettings};
use crate::storage::backend::{
    Appended, Backend, BoxFuture, DeadLetterQuery, DeadLetterRows, DeliveryStream, Forwarded, Held,
    Join, LeaseRef, Nack, TopicWatch, Totals, Update,
};

#[async_trait::async_trait]
impl Backend for EmbeddedBackend {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn health(&self) -> watch::Receiver<bool> {
        self.inner.health.subscribe()
    }

    fn state(&self) -> String {
        if *self.inner.health.borrow() {
            format!("ok ({})", self.inner.config.data_dir.display())
        } else {
            "metadata store failed; reopening".into()
        }
    }

    fn secret(&self) -> [u8; 16] {
        self.inner.secret
    }

    fn totals(&self) -> Totals {
        EmbeddedBackend::totals(self)
    }

    fn group_gauges(&self) -> Vec<(String, String, Arc<GroupGauges>)> {
        EmbeddedBackend::group_gauges(self)
    }

    fn group_name(&self, group: u64) -> Option<(String, String)> {
        self.group_by_id(group).map(|g| g.key())
    }

    async fn stop_consumers(&self) {
        self.stop_groups().await;
    }

    async fn close(&self) {
        self.shut_down().await;
    }

    async fn create_topic(&self, record: TopicRecord) -> Result<TopicInfo, Error> {
        self.create_topic_impl(record).await
    }

    async fn ensure_topic(&self, name: &str, defaults: &TopicSettings) -> Result<(), Error> {
        self.ensure_topic_impl(name, defaults).await
    }

    async fn topic_exists(&self, name: &str) -> Result<bool, Error> {
        Ok(self.topic(name).is_some())
    }

    async fn group_exists(&self, topic: &str, group: &str) -> Result<bool, Error> {
        Ok(self.find_group(topic, group).is_ok())
    }

    async fn get_topic(&self, name: &str) -> Result<TopicInfo, Error> {
        self.get_topic_impl(name)
    }

    async fn list_topics(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TopicInfo>, Error> {
        Ok(self.list_topics_impl(after, limit))
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
        self.resolve_impl(topic, position)
    }

    async fn watch(&self, topic: &str, _follow: bool) -> Result<TopicWatch, Error> {
        self.watch_impl(topic)
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
        let g = self.find_group(topic, group)?;
        self.group_info(&g).await
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
        _consumer: &str,
        join: Join,
    ) -> Result<DeliveryStream, Error> {
        self.subscribe_impl(topic, group, join).await
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
        let uid = self.find_group(topic, group)?.uid;
        let meta = self.inner.meta.clone();
        let (t, g) = (topic.to_string(), group.to_string());
        let upto = blocking(move || meta.forwarded(&t, &g, uid)).await?;
        Ok(Forwarded {
            uid,
            upto,
            newest: None,
        })
    }

    async fn set_forwarded(&self, topic: &str, group: &str, to: Forwarded) -> Result<(), Error> {
        if self.find_group(topic, group)?.uid != to.uid {
            return Ok(());
        }
        let meta = self.inner.meta.clone();
        let (t, g) = (topic.to_string(), group.to_string());
        blocking(move || meta.set_forwarded(&t, &g, to.uid, to.upto)).await
    }

    async fn hold_admin_for_test(&self) -> Box<dyn Held + '_> {
        Box::new(self.inner.admin.lock().await)
    }

    fn inject_metadata_write_failures(&self, on: bool) {
        self.inner.meta.inject_write_failures(on);
    }
}
