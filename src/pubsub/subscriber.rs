//! `google.pubsub.v1.Subscriber`: subscriptions (groups), acks and
//! deadline changes, and StreamingPull.
//!
//! Pub/Sub layer. A subscription is a group named by the subscription's
//! Herald name on its topic's Herald topic; every call is authorized on
//! that topic (`manage` to create or delete, `consume` to receive and
//! settle, any permission to describe).

use std::time::Duration;

use tonic::{Request, Response, Status, Streaming};

use super::exactly_once::{self, Settling};
use super::names::{self, Kind, Resource};
use super::subscriptions::{SUBSCRIPTION_FIELDS, group_patch};
use super::{Front, Need, already_exists, not_found, status, streaming};
use crate::auth::Action;
use crate::broker::{BrokerError, GroupPatch};
use crate::grpc::audit;
use crate::grpc::status::to_status;
use crate::model::results::GroupInfo;
use crate::model::settings::Position;
use crate::proto::google::pubsub::v1::subscriber_server::Subscriber;
use crate::proto::google::pubsub::v1::*;

/// Pub/Sub's bounds of ModifyAckDeadline's `ack_deadline_seconds`.
const MAX_MODIFY_DEADLINE: i32 = 600;

/// The Subscriber service.
#[derive(Clone)]
pub struct SubscriberApi {
    front: Front,
}

fn unimplemented(method: &str, what: &str) -> Status {
    Status::unimplemented(format!(
        "google.pubsub.v1.Subscriber/{method}: {what} not supported by Herald yet"
    ))
}

impl SubscriberApi {
    pub(crate) fn new(front: Front) -> SubscriberApi {
        SubscriberApi { front }
    }

    /// NOT_FOUND when `patch` names a dead-letter topic that does not
    /// exist (as Pub/Sub refuses it).
    async fn dead_letter_topic_exists(
        &self,
        s: &Subscription,
        patch: &crate::broker::GroupPatch,
    ) -> Result<(), Status> {
        let Some(topic) = patch.dead_letter_topic.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(());
        };
        let broker = self.front.broker();
        if broker.has_topic(topic).await.map_err(to_status)? {
            return Ok(());
        }
        let policy = s
            .dead_letter_policy
            .as_ref()
            .map_or("", |p| p.dead_letter_topic.as_str());
        let (resource, _) = self.front.resolve(Kind::Topic, policy)?;
        Err(not_found(&resource))
    }

    /// The group of subscription `name`.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a bad name, NOT_FOUND.
    pub(crate) async fn group_of(&self, name: &str) -> Result<(Resource, GroupInfo), Status> {
        let (resource, herald) = self.front.resolve(Kind::Subscription, name)?;
        match self.front.find_group(&herald).await? {
            Some(group) => Ok((resource, group)),
            None => Err(not_found(&resource)),
        }
    }

    /// Deletes `group`, which Pub/Sub `resource` named, when the caller may
    /// manage its topic; audited.
    ///
    /// # Errors
    /// PERMISSION_DENIED, NOT_FOUND, UNAVAILABLE.
    pub(super) async fn delete_found<T>(
        &self,
        request: &Request<T>,
        method: &'static str,
        resource: &Resource,
        group: &GroupInfo,
    ) -> Result<Response<()>, Status> {
        let (topic, name) = (&group.record.topic, &group.record.name);
        let caller = self
            .front
            .allow(request, method, Need::Do(Action::Manage), topic)?;
        let outcome = self
            .front
            .broker()
            .delete_group(topic, name)
            .await
            .map_err(|e| status(resource, e));
        audit::done(&caller, method, topic, Some(name), &outcome);
        outcome?;
        Ok(Response::new(()))
    }

    /// The ack ids of an Acknowledge or ModifyAckDeadline, on their way to
    /// the broker. With exactly-once delivery, ids that cannot be this
    /// subscription's fail one by one; otherwise one of another
    /// subscription fails the call.
    fn settling(&self, group: &GroupInfo, ids: &[String]) -> Result<Settling, Status> {
        if ids.is_empty() {
            return Err(Status::invalid_argument("No ack ids specified."));
        }
        if exactly_once::enabled(group) {
            return Ok(exactly_once::split(self.front.broker(), group, ids));
        }
        self.own_ack_ids(group, ids)?;
        // An issued id of a group unknown here is not this subscription's
        // (its group is known once found): left out, as Pub/Sub's acks are
        // best effort. A malformed one goes on, to be refused.
        let broker = self.front.broker();
        let try_ids = ids
            .iter()
            .filter(|id| !broker.ack_id_issued(id) || broker.ack_id_group(id).is_some())
            .cloned()
            .collect();
        Ok(Settling {
            try_ids,
            ..Settling::default()
        })
    }

    /// Creates the group of a new subscription, whose name must be unique
    /// across topics. Checking first and creating after is not one step, so
    /// two creators of one name on different topics (maybe on different
    /// nodes) could both pass the check: each looks again after creating,
    /// and one that finds another group of the name removes its own. When
    /// that leaves none (both looked at once), it tries again after a
    /// random pause.
    ///
    /// # Errors
    /// ALREADY_EXISTS, storage failures.
    async fn create_unique(
        &self,
        sub: &Resource,
        topic: &str,
        group: &str,
        patch: &GroupPatch,
    ) -> Result<GroupInfo, Status> {
        let broker = self.front.broker();
        for _ in 0..CREATE_TRIES {
            if self.front.find_group(group).await?.is_some() {
                return Err(already_exists(sub));
            }
            let info = broker
                .create_group(topic, group, patch, None)
                .await
                .map_err(|e| status(sub, e))?;
            let named = self.front.groups_named(group, false).await?;
            if named.iter().all(|g| g.record.topic == topic) {
                return Ok(info);
            }
            match broker.delete_group(topic, group).await {
                // Someone else removed it already.
                Ok(()) | Err(BrokerError::NotFound(_)) => {}
                Err(e) => return Err(status(sub, e)),
            }
            if self.front.find_group(group).await?.is_some() {
                return Err(already_exists(sub));
            }
            let mut jitter = [0u8; 1];
            let _ = getrandom::fill(&mut jitter);
            tokio::time::sleep(Duration::from_millis(5 + u64::from(jitter[0] % 64))).await;
        }
        Err(Status::aborted(
            "Concurrent CreateSubscription calls of this name kept colliding; retry.",
        ))
    }

    /// Checks that every ack id of `ids` that names a group names this one.
    pub(super) fn own_ack_ids(&self, group: &GroupInfo, ids: &[String]) -> Result<(), Status> {
        let own = (&group.record.topic, &group.record.name);
        for id in ids {
            if let Some((topic, name)) = self.front.broker().ack_id_group(id)
                && (&topic, &name) != own
            {
                return Err(Status::invalid_argument(format!(
                    "ack id {} is not of this subscription",
                    crate::model::echo(id)
                )));
            }
        }
        Ok(())
    }
}

/// Rounds of create-and-look of one CreateSubscription.
const CREATE_TRIES: usize = 8;

#[tonic::async_trait]
impl Subscriber for SubscriberApi {
    type StreamingPullStream = streaming::ResponseStream;

    async fn create_subscription(
        &self,
        request: Request<Subscription>,
    ) -> Result<Response<Subscription>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/CreateSubscription";
        let s = request.get_ref();
        let (sub, group) = self.front.resolve(Kind::Subscription, &s.name)?;
        let (topic, herald_topic) = self.front.resolve(Kind::Topic, &s.topic)?;
        let caller = self
            .front
            .allow(&request, METHOD, Need::Do(Action::Manage), &herald_topic)?;
        let patch = group_patch(s, SUBSCRIPTION_FIELDS, None, &self.front.default_project)?;
        let broker = self.front.broker();
        let outcome = async {
            if !broker.has_topic(&herald_topic).await.map_err(to_status)? {
                return Err(not_found(&topic));
            }
            self.dead_letter_topic_exists(s, &patch).await?;
            self.create_unique(&sub, &herald_topic, &group, &patch)
                .await
        }
        .await;
        audit::done(&caller, METHOD, &herald_topic, Some(&group), &outcome);
        let info = outcome?;
        let out = self
            .front
            .subscription(&info)
            .ok_or_else(|| Status::internal("the new group does not map back to a subscription"))?;
        Ok(Response::new(out))
    }

    async fn get_subscription(
        &self,
        request: Request<GetSubscriptionRequest>,
    ) -> Result<Response<Subscription>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/GetSubscription";
        let (resource, group) = self.group_of(&request.get_ref().subscription).await?;
        self.front
            .allow(&request, METHOD, Need::View, &group.record.topic)?;
        let out = self
            .front
            .subscription(&group)
            .ok_or_else(|| not_found(&resource))?;
        Ok(Response::new(out))
    }

    async fn update_subscription(
        &self,
        request: Request<UpdateSubscriptionRequest>,
    ) -> Result<Response<Subscription>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/UpdateSubscription";
        let r = request.get_ref();
        let s = r.subscription.as_ref().ok_or_else(|| {
            Status::invalid_argument(
                "The subscription in the UpdateSubscriptionRequest must be set.",
            )
        })?;
        let fields =
            super::convert::mask_fields(r.update_mask.as_ref(), "UpdateSubscriptionRequest")?;
        let (resource, group) = self.group_of(&s.name).await?;
        let (topic, name) = (&group.record.topic, &group.record.name);
        let caller = self
            .front
            .allow(&request, METHOD, Need::Do(Action::Manage), topic)?;
        let patch = group_patch(s, &fields, Some(&group), &self.front.default_project)?;
        self.dead_letter_topic_exists(s, &patch).await?;
        let outcome = self
            .front
            .broker()
            .update_group(topic, name, &patch)
            .await
            .map_err(|e| status(&resource, e));
        audit::done(&caller, METHOD, topic, Some(name), &outcome);
        let out = self.front.subscription(&outcome?);
        Ok(Response::new(out.ok_or_else(|| not_found(&resource))?))
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> Result<Response<ListSubscriptionsResponse>, Status> {
        let caller = self.front.guard.caller(&request)?;
        let r = request.get_ref();
        let project = names::parse_project(&r.project)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (subscriptions, next_page_token) = self
            .front
            .list_groups_as(&caller, r.page_size, &r.page_token, |group| {
                let mine = self
                    .front
                    .resource(Kind::Subscription, &group.record.name)
                    .is_some_and(|r| r.project == project);
                mine.then(|| self.front.subscription(group)).flatten()
            })
            .await?;
        Ok(Response::new(ListSubscriptionsResponse {
            subscriptions,
            next_page_token,
        }))
    }

    async fn delete_subscription(
        &self,
        request: Request<DeleteSubscriptionRequest>,
    ) -> Result<Response<()>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/DeleteSubscription";
        let (resource, group) = self.group_of(&request.get_ref().subscription).await?;
        self.delete_found(&request, METHOD, &resource, &group).await
    }

    async fn modify_ack_deadline(
        &self,
        request: Request<ModifyAckDeadlineRequest>,
    ) -> Result<Response<()>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/ModifyAckDeadline";
        let r = request.get_ref();
        let (_, group) = self.group_of(&r.subscription).await?;
        self.front.allow(
            &request,
            METHOD,
            Need::Do(Action::Consume),
            &group.record.topic,
        )?;
        let seconds = r.ack_deadline_seconds;
        if !(0..=MAX_MODIFY_DEADLINE).contains(&seconds) {
            return Err(Status::invalid_argument(
                "Invalid ack_deadline_seconds: it must be between 0 and 600.",
            ));
        }
        let broker = self.front.broker();
        let settling = self
            .settling(&group, &r.ack_ids)?
            .apply(async |ids| {
                if seconds == 0 {
                    broker
                        .nack(ids, Some(Duration::ZERO), "ModifyAckDeadline 0", false)
                        .await
                } else {
                    let extension = Duration::from_secs(u64::from(seconds.unsigned_abs()));
                    broker.extend(ids, extension).await
                }
            })
            .await?;
        answer(&group, settling)
    }

    async fn acknowledge(
        &self,
        request: Request<AcknowledgeRequest>,
    ) -> Result<Response<()>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/Acknowledge";
        let r = request.get_ref();
        let (_, group) = self.group_of(&r.subscription).await?;
        self.front.allow(
            &request,
            METHOD,
            Need::Do(Action::Consume),
            &group.record.topic,
        )?;
        let broker = self.front.broker();
        let settling = self
            .settling(&group, &r.ack_ids)?
            .apply(async |ids| broker.ack(ids).await)
            .await?;
        answer(&group, settling)
    }

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<PullResponse>, Status> {
        super::pull::pull(self, request).await
    }

    async fn streaming_pull(
        &self,
        request: Request<Streaming<StreamingPullRequest>>,
    ) -> Result<Response<Self::StreamingPullStream>, Status> {
        streaming::open(self, request).await
    }

    async fn modify_push_config(
        &self,
        _request: Request<ModifyPushConfigRequest>,
    ) -> Result<Response<()>, Status> {
        Err(unimplemented("ModifyPushConfig", "push delivery is"))
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        self.get_snapshot_impl(request).await
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        self.list_snapshots_impl(request).await
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        self.create_snapshot_impl(request).await
    }

    async fn update_snapshot(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        self.update_snapshot_impl(request).await
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        self.delete_snapshot_impl(request).await
    }

    async fn seek(&self, request: Request<SeekRequest>) -> Result<Response<SeekResponse>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/Seek";
        let r = request.get_ref();
        let Some(target) = &r.target else {
            return Err(Status::invalid_argument(
                "The seek target (time or snapshot) must be set.",
            ));
        };
        let (resource, group) = self.group_of(&r.subscription).await?;
        let position = match target {
            seek_request::Target::Time(t) => {
                Position::Time(crate::grpc::convert::from_timestamp("time", t)?)
            }
            seek_request::Target::Snapshot(s) => self.snapshot_position(s, &group).await?,
        };
        let (topic, name) = (&group.record.topic, &group.record.name);
        let caller = self
            .front
            .allow(&request, METHOD, Need::Do(Action::Manage), topic)?;
        // Before the first retained event: from it; after the last: the end.
        let outcome = self
            .front
            .broker()
            .seek(topic, name, position)
            .await
            .map_err(|e| status(&resource, e));
        audit::done(&caller, METHOD, topic, Some(name), &outcome);
        outcome?;
        Ok(Response::new(SeekResponse {}))
    }
}

impl SubscriberApi {
    pub(crate) fn front(&self) -> &Front {
        &self.front
    }
}

/// The answer to an Acknowledge or ModifyAckDeadline: with exactly-once
/// delivery, the failed ack ids; otherwise OK (Pub/Sub's acks are best
/// effort there).
fn answer(group: &GroupInfo, settling: Settling) -> Result<Response<()>, Status> {
    if exactly_once::enabled(group) {
        settling.into_result()?;
    }
    Ok(Response::new(()))
}
