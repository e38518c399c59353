//! Pub/Sub snapshots and Seek to a snapshot.
//!
//! Pub/Sub layer. A snapshot is kept as a group of its topic named
//! `_s.` + the snapshot's Herald name (so it is durable on every backend
//! and never a subscription: names starting with `_` are not Pub/Sub
//! resources), which never consumes and starts at the source
//! subscription's ack floor when the snapshot is taken. Seek to it moves
//! the subscription to that offset: every message unacknowledged at the
//! snapshot and every later one is delivered again, and so are messages
//! above the floor that were already acknowledged then (Pub/Sub keeps
//! those acknowledged; Herald's progress is a floor, so this is at least
//! what Pub/Sub redelivers, never less). A snapshot is a temporary group
//! that expires 7 days after it is taken, as in Pub/Sub (`expire_time`;
//! UpdateSnapshot can move it).

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::names::{self, Kind, Resource};
use super::subscriber::SubscriberApi;
use super::{Front, Need, already_exists, not_found, status};
use crate::auth::Action;
use crate::broker::{BrokerError, GroupPatch, Position};
use crate::grpc::audit;
use crate::grpc::convert::{from_timestamp, timestamp};
use crate::model::results::GroupInfo;
use crate::proto::google::pubsub::v1::{
    CreateSnapshotRequest, DeleteSnapshotRequest, GetSnapshotRequest, ListSnapshotsRequest,
    ListSnapshotsResponse, Snapshot, UpdateSnapshotRequest,
};

/// Herald group names of snapshots start with this.
const PREFIX: &str = "_s.";
/// How long a snapshot lives unless updated (Pub/Sub's 7 days).
const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The Pub/Sub name of the snapshot kept as Herald group `group`, if it
/// is one.
pub(super) fn snapshot_name(front: &Front, group: &str) -> Option<String> {
    let herald = group.strip_prefix(PREFIX)?;
    front
        .resource(Kind::Snapshot, herald)
        .map(|r| r.to_string())
}

impl SubscriberApi {
    /// The snapshot `name`, parsed, and its group.
    ///
    /// # Errors
    /// INVALID_ARGUMENT, NOT_FOUND.
    pub(super) async fn snapshot_of(&self, name: &str) -> Result<(Resource, GroupInfo), Status> {
        let (resource, herald) = self.front().resolve(Kind::Snapshot, name)?;
        match self
            .front()
            .find_group(&format!("{PREFIX}{herald}"))
            .await?
        {
            Some(group) => Ok((resource, group)),
            None => Err(not_found(&resource)),
        }
    }

    /// A snapshot's group as Pub/Sub shows it.
    fn snapshot(&self, g: &GroupInfo) -> Option<Snapshot> {
        let front = self.front();
        let name = snapshot_name(front, &g.record.name)?;
        let topic = front.resource(Kind::Topic, &g.record.topic)?;
        let ttl = g.record.settings.expire_after.unwrap_or(LIFETIME);
        let expire_us = g
            .record
            .created_us
            .saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
        Some(Snapshot {
            name,
            topic: topic.to_string(),
            expire_time: Some(timestamp(expire_us)),
            labels: g.record.settings.labels.clone().into_iter().collect(),
        })
    }

    pub(super) async fn create_snapshot_impl(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/CreateSnapshot";
        let r = request.get_ref();
        let (_, source) = self.group_of(&r.subscription).await?;
        let name = if r.name.is_empty() {
            let project = self
                .front()
                .resource(Kind::Subscription, &source.record.name)
                .map_or_else(|| self.front().default_project.to_string(), |s| s.project);
            format!(
                "projects/{project}/snapshots/snapshot-{}",
                uuid::Uuid::new_v4().simple()
            )
        } else {
            r.name.clone()
        };
        let (snap, herald) = self.front().resolve(Kind::Snapshot, &name)?;
        let group = format!("{PREFIX}{herald}");
        let topic = source.record.topic.clone();
        let caller = self
            .front()
            .allow(&request, METHOD, Need::Do(Action::Manage), &topic)?;
        let outcome = async {
            if self.front().find_group(&group).await?.is_some() {
                return Err(already_exists(&snap));
            }
            let patch = GroupPatch {
                expire_after: Some(Some(LIFETIME)),
                labels: Some(r.labels.clone().into_iter().collect()),
                ..GroupPatch::default()
            };
            let broker = self.front().broker();
            let at = Position::Offset(source.stats.ack_floor);
            let created = match broker.create_group(&topic, &group, &patch, Some(at)).await {
                // The floor fell out of retention meanwhile: from the start.
                Err(BrokerError::OutOfRange(_)) => {
                    broker
                        .create_group(&topic, &group, &patch, Some(Position::Earliest))
                        .await
                }
                other => other,
            };
            created.map_err(|e| status(&snap, e))
        }
        .await;
        audit::done(&caller, METHOD, &topic, Some(&group), &outcome);
        let out = self
            .snapshot(&outcome?)
            .ok_or_else(|| Status::internal("the new snapshot does not map back to a name"))?;
        Ok(Response::new(out))
    }

    pub(super) async fn get_snapshot_impl(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/GetSnapshot";
        let (resource, group) = self.snapshot_of(&request.get_ref().snapshot).await?;
        self.front()
            .allow(&request, METHOD, Need::View, &group.record.topic)?;
        let out = self.snapshot(&group).ok_or_else(|| not_found(&resource))?;
        Ok(Response::new(out))
    }

    pub(super) async fn list_snapshots_impl(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let caller = self.front().guard.caller(&request)?;
        let r = request.get_ref();
        let project = names::parse_project(&r.project)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (snapshots, next_page_token) = self
            .front()
            .list_groups_as(&caller, r.page_size, &r.page_token, |group| {
                self.snapshot(group)
                    .filter(|s| s.name.starts_with(&format!("projects/{project}/")))
            })
            .await?;
        Ok(Response::new(ListSnapshotsResponse {
            snapshots,
            next_page_token,
        }))
    }

    pub(super) async fn update_snapshot_impl(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/UpdateSnapshot";
        let r = request.get_ref();
        let s = r.snapshot.as_ref().ok_or_else(|| {
            Status::invalid_argument("The snapshot in the UpdateSnapshotRequest must be set.")
        })?;
        let fields = super::convert::mask_fields(r.update_mask.as_ref(), "UpdateSnapshotRequest")?;
        let (resource, group) = self.snapshot_of(&s.name).await?;
        let (topic, name) = (&group.record.topic, &group.record.name);
        let caller = self
            .front()
            .allow(&request, METHOD, Need::Do(Action::Manage), topic)?;
        let mut patch = GroupPatch::default();
        for field in &fields {
            match *field {
                "expire_time" => {
                    let t = s.expire_time.as_ref().ok_or_else(|| {
                        Status::invalid_argument("Invalid expire_time: it must be set.")
                    })?;
                    let at = from_timestamp("expire_time", t)?;
                    let ttl = u64::try_from(at.saturating_sub(group.record.created_us)).map_err(
                        |_| {
                            Status::invalid_argument(
                                "Invalid expire_time: it must be after the snapshot was created.",
                            )
                        },
                    )?;
                    patch.expire_after = Some(Some(Duration::from_micros(ttl)));
                }
                "labels" => {
                    patch.labels = Some(s.labels.clone().into_iter().collect());
                }
                other => {
                    return Err(Status::invalid_argument(format!(
                        "Invalid update_mask: {} is not a Snapshot field Herald can change.",
                        crate::model::echo(other)
                    )));
                }
            }
        }
        let outcome = self
            .front()
            .broker()
            .update_group(topic, name, &patch)
            .await
            .map_err(|e| status(&resource, e));
        audit::done(&caller, METHOD, topic, Some(name), &outcome);
        let out = self
            .snapshot(&outcome?)
            .ok_or_else(|| not_found(&resource))?;
        Ok(Response::new(out))
    }

    pub(super) async fn delete_snapshot_impl(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        const METHOD: &str = "google.pubsub.v1.Subscriber/DeleteSnapshot";
        let (resource, group) = self.snapshot_of(&request.get_ref().snapshot).await?;
        self.delete_found(&request, METHOD, &resource, &group).await
    }

    /// Where Seek to snapshot `name` moves subscription group `group`.
    ///
    /// # Errors
    /// INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION (a snapshot of
    /// another topic).
    pub(super) async fn snapshot_position(
        &self,
        name: &str,
        group: &GroupInfo,
    ) -> Result<Position, Status> {
        let (_, snap) = self.snapshot_of(name).await?;
        if snap.record.topic != group.record.topic {
            return Err(Status::failed_precondition(
                "The snapshot's topic is not the subscription's topic.",
            ));
        }
        Ok(snap.record.start)
    }
}
