//! Detached subscriptions: DetachSubscription, and DeleteTopic, which in
//! Pub/Sub leaves the topic's subscriptions in place, detached, with topic
//! `_deleted-topic_`.
//!
//! Pub/Sub layer. A detached subscription is a group of the same name and
//! settings on the Herald topic `_deleted-topic_` (created when first
//! needed; not a Pub/Sub topic, so never listed as one), which receives no
//! events: the subscription delivers nothing, and can still be read,
//! listed, updated and deleted. Moving a group is two steps (the copy is
//! created first, then the original deleted, or its topic with it); if the
//! second fails the copy is removed again, so a failed call leaves the
//! subscription attached. Events published to `_deleted-topic_` through
//! `herald.v1` would reach detached subscriptions; nothing else publishes
//! there.

use tonic::Status;

use super::{Front, names::Resource, status};
use crate::broker::{BrokerError, GroupPatch, TopicPatch};
use crate::grpc::status::to_status;
use crate::model::results::GroupInfo;

/// The Herald topic of detached subscriptions, and the topic Pub/Sub
/// shows them with.
pub const DETACHED: &str = "_deleted-topic_";

/// Groups of a topic looked at per page.
const PAGE: usize = 500;

impl Front {
    /// Detaches the subscription `group` (of Pub/Sub name `resource`).
    ///
    /// # Errors
    /// NOT_FOUND, UNAVAILABLE.
    pub(crate) async fn detach(
        &self,
        resource: &Resource,
        group: &GroupInfo,
    ) -> Result<(), Status> {
        let r = &group.record;
        if r.topic == DETACHED {
            return Ok(());
        }
        self.copy_detached(group).await?;
        if let Err(e) = self.broker().delete_group(&r.topic, &r.name).await {
            self.undo_copy(&r.name).await;
            return Err(status(resource, e));
        }
        Ok(())
    }

    /// Deletes Herald topic `topic` (Pub/Sub name `resource`), leaving its
    /// subscriptions detached.
    ///
    /// # Errors
    /// NOT_FOUND, UNAVAILABLE.
    pub(crate) async fn delete_topic_detaching(
        &self,
        resource: &Resource,
        topic: &str,
    ) -> Result<(), Status> {
        let broker = self.broker();
        let mut copied: Vec<String> = Vec::new();
        let mut after = None;
        loop {
            let (page, more) = broker
                .list_groups(Some(topic), after.take(), PAGE)
                .await
                .map_err(|e| status(resource, e))?;
            for group in page {
                let r = &group.record;
                if self
                    .resource(super::names::Kind::Subscription, &r.name)
                    .is_none()
                {
                    continue;
                }
                if let Err(e) = self.copy_detached(&group).await {
                    for name in &copied {
                        self.undo_copy(name).await;
                    }
                    return Err(e);
                }
                copied.push(r.name.clone());
            }
            match more {
                Some(token) => after = Some(token),
                None => break,
            }
        }
        if let Err(e) = broker.delete_topic(topic).await {
            for name in &copied {
                self.undo_copy(name).await;
            }
            return Err(status(resource, e));
        }
        Ok(())
    }

    /// Creates the detached copy of `group`.
    async fn copy_detached(&self, group: &GroupInfo) -> Result<(), Status> {
        let broker = self.broker();
        match broker.create_topic(DETACHED, &TopicPatch::default()).await {
            Ok(_) | Err(BrokerError::AlreadyExists(_)) => {}
            Err(e) => return Err(to_status(e)),
        }
        let patch = GroupPatch::same_as(&group.record.settings);
        match broker
            .create_group(DETACHED, &group.record.name, &patch, None)
            .await
        {
            // Left by an earlier attempt that failed half way.
            Ok(_) | Err(BrokerError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(to_status(e)),
        }
    }

    async fn undo_copy(&self, name: &str) {
        if let Err(e) = self.broker().delete_group(DETACHED, name).await {
            tracing::warn!(group = %name, error = %e, "could not remove the detached copy of a subscription after a failed detach");
        }
    }
}
