//! The Pub/Sub front door: `google.pubsub.v1` served on Herald's port, so
//! that Google's official Pub/Sub clients run unchanged against Herald
//! (`PUBSUB_EMULATOR_HOST`), on either storage backend.
//!
//! Pub/Sub layer, a sibling of `grpc/` and as thin: names and messages in,
//! one broker call, messages out. Topics are Herald topics and a
//! subscription is a group on its topic, named by the reversible mapping
//! of [`names`]. Authentication is the gRPC layer's (the same `authn`
//! layer runs before these services); each RPC is authorized here on the
//! Herald topic its name maps to, with one of Herald's actions.
//!
//! The vendored API (`proto/google/`, compiled by `build.rs` into
//! [`crate::proto::google`]), the name mapping ([`names`]), the Publisher
//! service ([`publisher`]) and the Subscriber service ([`subscriber`]:
//! subscriptions, acks, Pull, StreamingPull, snapshots and Seek).

pub mod convert;
mod detach;
mod exactly_once;
pub mod filter;
pub mod names;
pub mod publisher;
mod pull;
mod snapshots;
mod streaming;
pub mod subscriber;
pub mod subscriptions;

use std::sync::Arc;

use tonic::{Request, Status};

use crate::auth::{self, Action};
use crate::broker::{Broker, BrokerError};
use crate::grpc::audit;
use crate::grpc::guard::{Caller, Guard, Target};
use crate::grpc::status::{auth_status, to_status};
use names::{Kind, NameError, Resource};

/// The project whose topics and subscriptions are Herald's own, unprefixed
/// names, unless the configuration says otherwise.
pub const DEFAULT_PROJECT: &str = "herald";

/// How the front door is set up (`[pubsub]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The project under which `herald.v1` topics appear as they are.
    pub default_project: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            default_project: DEFAULT_PROJECT.to_string(),
        }
    }
}

/// What every Pub/Sub service holds.
#[derive(Clone)]
pub(crate) struct Front {
    broker: Broker,
    guard: Guard,
    default_project: Arc<str>,
    /// Where each subscription was last found (see [`Front::find_group`]).
    seen: subscriptions::Seen,
}

/// What an RPC needs on its topic.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Need {
    /// An action.
    Do(Action),
    /// Any permission (describe calls).
    View,
}

impl Front {
    pub(crate) fn new(broker: Broker, guard: Guard, options: &Options) -> Front {
        Front {
            broker,
            guard,
            default_project: options.default_project.as_str().into(),
            seen: subscriptions::Seen::default(),
        }
    }

    /// A Pub/Sub name of `kind`, parsed, and the Herald name it maps to.
    ///
    /// # Errors
    /// INVALID_ARGUMENT with Pub/Sub's wording.
    pub(crate) fn resolve(&self, kind: Kind, name: &str) -> Result<(Resource, String), Status> {
        let resource = names::parse(kind, name, &self.default_project)
            .map_err(|e: NameError| Status::invalid_argument(e.to_string()))?;
        let herald = names::to_herald(&resource, &self.default_project);
        Ok((resource, herald))
    }

    /// The Pub/Sub resource a Herald name stands for, if any.
    pub(crate) fn resource(&self, kind: Kind, herald: &str) -> Option<Resource> {
        names::from_herald(kind, herald, &self.default_project)
    }

    /// Authenticates `request` and authorizes `need` on Herald topic
    /// `topic`; refusals of management calls (`audited`) are logged.
    ///
    /// # Errors
    /// UNAUTHENTICATED, PERMISSION_DENIED.
    pub(crate) fn allow<T>(
        &self,
        request: &Request<T>,
        method: &'static str,
        need: Need,
        topic: &str,
    ) -> Result<Caller, Status> {
        let caller = self.guard.caller(request)?;
        self.authorize(&caller, method, need, topic)?;
        Ok(caller)
    }

    /// Authorizes `need` on Herald topic `topic` for `caller`.
    ///
    /// # Errors
    /// PERMISSION_DENIED.
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        method: &'static str,
        need: Need,
        topic: &str,
    ) -> Result<(), Status> {
        let Some(principal) = caller.principal() else {
            return Ok(());
        };
        let result = match need {
            Need::Do(action) => auth::authorize(principal, action, topic),
            Need::View => auth::authorize_view(principal, topic),
        };
        if let Err(e) = result {
            if matches!(need, Need::Do(Action::Manage)) {
                audit::denied(caller, method, Target::Topic(topic), &e);
            }
            return Err(auth_status(e));
        }
        Ok(())
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }
}

/// A broker failure as Pub/Sub words it: NOT_FOUND and ALREADY_EXISTS name
/// the resource as the client gave it; the rest as `herald.v1` answers.
pub(crate) fn status(resource: &Resource, e: BrokerError) -> Status {
    match e {
        BrokerError::NotFound(_) => not_found(resource),
        BrokerError::AlreadyExists(_) => already_exists(resource),
        other => to_status(other),
    }
}

/// Pub/Sub's NOT_FOUND for `resource`.
pub(crate) fn not_found(resource: &Resource) -> Status {
    Status::not_found(format!("Resource not found (resource={}).", resource.id))
}

/// Pub/Sub's ALREADY_EXISTS for `resource`.
pub(crate) fn already_exists(resource: &Resource) -> Status {
    Status::already_exists(format!(
        "Resource already exists in the project (resource={}).",
        resource.id
    ))
}
