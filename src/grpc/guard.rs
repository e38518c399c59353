//! Authorization of every RPC, from one table: what each call needs and
//! which request field names its topic.
//!
//! gRPC layer, over [`crate::auth`]. The authentication layer (`authn.rs`)
//! has put the [`Caller`] in the request; each handler's first step is
//! [`Guard::check`], which looks the request type up in [`RPCS`] and asks
//! `auth` before anything reaches the broker. Refusals never depend on the
//! broker's state, so a caller learns nothing about topics it may not see:
//! a topic that does not exist and one it may not touch answer alike.
//!
//! Two rows need the broker, read-only: ack ids are authorized on the topic
//! of the group that issued them (`Broker::ack_id_group`), and a call that
//! would create a topic or group implicitly (auto-create) also needs
//! `manage` on it ([`Guard::check_create`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::{Request, Status};

use super::status::{auth_status, to_status};
use crate::auth::{self, Action, AuthError, Principal};
use crate::broker::Broker;
use crate::broker::error::echo;
use crate::proto::*;

/// What an RPC needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// This action on the target topic(s).
    Do(Action),
    /// Some permission on the target topic (describe calls and lists).
    View,
    /// The caller must be admin (server-wide calls).
    Admin,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpc {
    /// `package.Service/Method`.
    pub method: &'static str,
    /// What it needs.
    pub need: Need,
    /// A management action: logged to `herald::audit`.
    pub audited: bool,
}

/// Where a request's topic is.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A topic named by the request.
    Topic(&'a str),
    /// The topics of the groups that issued these ack ids.
    AckIds(&'a [String]),
    /// A listing, of one topic's groups or of everything (filtered).
    Listing(Option<&'a str>),
    /// The server as a whole.
    Server,
}

/// A request message the table knows.
pub trait Guarded {
    /// Its row.
    const RPC: Rpc;
    /// Its target.
    fn target(&self) -> Target<'_>;
}

macro_rules! table {
    ($( $method:literal $request:ty => $need:expr, audited: $audited:literal, |$r:ident| $target:expr; )*) => {
        /// Every RPC of `herald.v1`: what it needs, and where its topic is.
        pub const RPCS: &[Rpc] = &[
            $( Rpc { method: $method, need: $need, audited: $audited }, )*
        ];
        $(
            impl Guarded for $request {
                const RPC: Rpc = Rpc { method: $method, need: $need, audited: $audited };
                fn target(&self) -> Target<'_> {
                    let $r = self;
                    $target
                }
            }
        )*
    };
}

use Need::{Admin, Do, View};
use Target::{AckIds, Listing, Server, Topic};

fn topic_name(t: &Option<crate::proto::Topic>) -> &str {
    t.as_ref().map_or("", |t| t.name.as_str())
}

fn group_topic(g: &Option<Group>) -> &str {
    g.as_ref().map_or("", |g| g.topic.as_str())
}

/// The topic a Consume stream opens ("" on its later requests).
fn consume_topic(r: &ConsumeRequest) -> &str {
    match &r.kind {
        Some(consume_request::Kind::Open(open)) => &open.topic,
        _ => "",
    }
}

table! {
    "herald.v1.PublisherService/Publish" PublishRequest
        => Do(Action::Publish), audited: false, |r| Topic(&r.topic);
    // Checked for each request of the stream.
    "herald.v1.PublisherService/PublishStream" PublishStreamRequest
        => Do(Action::Publish), audited: false, |r| Topic(&r.topic);
    "herald.v1.SubscriberService/Subscribe" SubscribeRequest
        => Do(Action::Consume), audited: false, |r| Topic(&r.topic);
    // Checked on the stream's first request, which opens it; its acks,
    // nacks and extensions are limited to deliveries of its group.
    "herald.v1.SubscriberService/Consume" ConsumeRequest
        => Do(Action::Consume), audited: false, |r| Topic(consume_topic(r));
    "herald.v1.SubscriberService/Ack" AckRequest
        => Do(Action::Consume), audited: false, |r| AckIds(&r.ack_ids);
    "herald.v1.SubscriberService/Nack" NackRequest
        => Do(Action::Consume), audited: false, |r| AckIds(&r.ack_ids);
    "herald.v1.SubscriberService/ExtendDeadline" ExtendDeadlineRequest
        => Do(Action::Consume), audited: false, |r| AckIds(&r.ack_ids);
    "herald.v1.SubscriberService/Read" ReadRequest
        => Do(Action::Consume), audited: false, |r| Topic(&r.topic);
    "herald.v1.AdminService/CreateTopic" CreateTopicRequest
        => Do(Action::Manage), audited: true, |r| Topic(topic_name(&r.topic));
    "herald.v1.AdminService/GetTopic" GetTopicRequest
        => View, audited: false, |r| Topic(&r.name);
    "herald.v1.AdminService/ListTopics" ListTopicsRequest
        => View, audited: false, |_r| Listing(None);
    "herald.v1.AdminService/UpdateTopic" UpdateTopicRequest
        => Do(Action::Manage), audited: true, |r| Topic(topic_name(&r.topic));
    "herald.v1.AdminService/DeleteTopic" DeleteTopicRequest
        => Do(Action::Manage), audited: true, |r| Topic(&r.name);
    "herald.v1.AdminService/CreateGroup" CreateGroupRequest
        => Do(Action::Manage), audited: true, |r| Topic(group_topic(&r.group));
    "herald.v1.AdminService/GetGroup" GetGroupRequest
        => View, audited: false, |r| Topic(&r.topic);
    "herald.v1.AdminService/ListGroups" ListGroupsRequest
        => View, audited: false, |r| Listing((!r.topic.is_empty()).then_some(r.topic.as_str()));
    "herald.v1.AdminService/UpdateGroup" UpdateGroupRequest
        => Do(Action::Manage), audited: true, |r| Topic(group_topic(&r.group));
    "herald.v1.AdminService/DeleteGroup" DeleteGroupRequest
        => Do(Action::Manage), audited: true, |r| Topic(&r.topic);
    "herald.v1.AdminService/Seek" SeekRequest
        => Do(Action::Manage), audited: true, |r| Topic(&r.topic);
    "herald.v1.AdminService/GetServerInfo" GetServerInfoRequest
        => Admin, audited: false, |_r| Server;
    "herald.v1.DeadLetterService/ListDeadLetters" ListDeadLettersRequest
        => Do(Action::DeadLetters), audited: false, |r| Topic(&r.topic);
    "herald.v1.DeadLetterService/ReplayDeadLetters" ReplayDeadLettersRequest
        => Do(Action::DeadLetters), audited: true, |r| Topic(&r.topic);
    "herald.v1.DeadLetterService/PurgeDeadLetters" PurgeDeadLettersRequest
        => Do(Action::DeadLetters), audited: true, |r| Topic(&r.topic);
}

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing (authentication is off).
    None,
    /// A bearer token, by id.
    Token(Arc<str>),
    /// A TLS client certificate.
    Certificate,
}

/// Who is calling: put in each request by the authentication layer.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` when authentication is off: everything is allowed.
    principal: Option<Arc<Principal>>,
    credential: Credential,
    peer: Option<SocketAddr>,
}

impl Caller {
    /// An authenticated principal.
    pub fn authenticated(
        principal: Arc<Principal>,
        credential: Credential,
        peer: Option<SocketAddr>,
    ) -> Caller {
        Caller {
            principal: Some(principal),
            credential,
            peer,
        }
    }

    /// Anyone, with authentication off.
    pub fn anonymous(peer: Option<SocketAddr>) -> Caller {
        Caller {
            principal: None,
            credential: Credential::None,
            peer,
        }
    }

    /// The principal; `None` with authentication off.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_deref()
    }

    /// The principal's name, `-` with authentication off (for logs).
    pub fn name(&self) -> &str {
        self.principal.as_deref().map_or("-", |p| p.name.as_str())
    }

    /// How it authenticated.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The client's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Whether it may see `topic` (always, with authentication off).
    pub fn may_see(&self, topic: &str) -> bool {
        self.principal().is_none_or(|p| p.may_see(topic))
    }

    /// Whether it sees every topic, so lists need no filtering.
    pub fn sees_all(&self) -> bool {
        self.principal().is_none_or(Principal::sees_all)
    }
}

/// The authorization step of every handler.
#[derive(Clone)]
pub struct Guard {
    broker: Broker,
    /// Whether authentication is required (else every caller is anonymous).
    on: bool,
}

impl Guard {
    /// A guard over `broker`; `on` when `auth.mode = "required"`.
    pub fn new(broker: Broker, on: bool) -> Guard {
        Guard { broker, on }
    }

    /// The caller of `request`.
    ///
    /// # Errors
    /// UNAUTHENTICATED when authentication is on and the request carries
    /// no caller (it did not pass the authentication layer).
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if let Some(caller) = request.extensions().get::<Caller>() {
            return Ok(caller.clone());
        }
        if self.on {
            return Err(Status::unauthenticated("no credential"));
        }
        Ok(Caller::anonymous(request.remote_addr()))
    }

    /// Authenticates and authorizes `request` by its row of the table.
    ///
    /// # Errors
    /// UNAUTHENTICATED or PERMISSION_DENIED.
    pub fn check<R: Guarded>(&self, request: &Request<R>) -> Result<Caller, Status> {
        let caller = self.caller(request)?;
        self.authorize(&caller, request.get_ref())?;
        Ok(caller)
    }

    /// Authorizes one request message for `caller`.
    ///
    /// # Errors
    /// PERMISSION_DENIED naming what is missing.
    pub fn authorize<R: Guarded>(&self, caller: &Caller, request: &R) -> Result<(), Status> {
        let Some(principal) = caller.principal() else {
            return Ok(());
        };
        let result = match (R::RPC.need, request.target()) {
            (Do(action), Topic(topic)) => auth::authorize(principal, action, topic),
            (Do(action), AckIds(ids)) => self.authorize_ack_ids(principal, action, ids),
            (View, Topic(topic) | Listing(Some(topic))) => auth::authorize_view(principal, topic),
            (View, Listing(None)) => Ok(()),
            (Admin, _) => auth::authorize_admin(principal, "read server info"),
            // A row whose need does not fit its target: a bug in the table
            // (its test makes every RPC go through here). Refuse.
            (need, target) => {
                return Err(Status::internal(format!(
                    "no authorization rule for {need:?} on {target:?}"
                )));
            }
        };
        result.map_err(|e| {
            if R::RPC.audited {
                super::audit::denied(caller, R::RPC.method, request.target(), &e);
            }
            auth_status(e)
        })
    }

    fn authorize_ack_ids(
        &self,
        principal: &Principal,
        action: Action,
        ids: &[String],
    ) -> Result<(), AuthError> {
        // Ids of one call are mostly of one group: its field (before the
        // first '-') decides the topic, so an id of a group already allowed
        // needs no lookup (an altered id is refused by the broker later).
        let mut allowed: Option<&str> = None;
        for (index, id) in ids.iter().enumerate() {
            let group = id.split('-').next();
            if group.is_some() && group == allowed {
                continue;
            }
            // An id that names no running group changes nothing: the broker
            // answers it as unknown (or malformed). Only a verified id of a
            // permitted group lets later ids of that group through.
            if let Some((topic, _)) = self.broker.ack_id_group(id) {
                if !principal.may(action, &topic) {
                    return Err(AuthError::DeniedDelivery {
                        principal: echo(&principal.name),
                        index,
                    });
                }
                allowed = group;
            }
        }
        Ok(())
    }

    /// Checks a call that creates `topic` (and `group` of it) when they do
    /// not exist and auto-create is on: that needs `manage` on the topic.
    /// Returns whether the call will create something, for the audit log.
    ///
    /// # Errors
    /// PERMISSION_DENIED when it would create without `manage`; the
    /// storage failure when existence cannot be read.
    pub async fn check_create(
        &self,
        caller: &Caller,
        topic: &str,
        group: Option<&str>,
    ) -> Result<bool, Status> {
        if !self.broker.config().auto_create {
            return Ok(false);
        }
        // Existence is a storage read: skip it when nothing depends on it
        // (no refusal to decide, and the audit event would be dropped).
        let decides = caller
            .principal()
            .is_some_and(|p| !p.may(Action::Manage, topic));
        if !decides && !tracing::enabled!(target: super::audit::TARGET, tracing::Level::INFO) {
            return Ok(false);
        }
        let exists = |found: Result<bool, crate::broker::BrokerError>| found.map_err(to_status);
        let missing = if !exists(self.broker.has_topic(topic).await)? {
            Some(("topic", topic))
        } else {
            match group {
                Some(g) if !exists(self.broker.has_group(topic, g).await)? => Some(("group", g)),
                _ => None,
            }
        };
        let Some((what, name)) = missing else {
            return Ok(false);
        };
        match caller.principal() {
            Some(p) if !p.may(Action::Manage, topic) => Err(auth_status(AuthError::DeniedCreate {
                principal: echo(&p.name),
                what,
                name: echo(name),
                topic: echo(topic),
            })),
            _ => Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every method of every `herald.v1` service, from the descriptors
    /// compiled into the binary.
    fn methods() -> BTreeSet<String> {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut out = BTreeSet::new();
        for file in set.file {
            let package = file.package().to_string();
            for service in &file.service {
                for method in &service.method {
                    out.insert(format!("{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
        out
    }

    #[test]
    fn the_table_has_exactly_one_row_per_rpc() {
        let rows: Vec<&str> = RPCS.iter().map(|r| r.method).collect();
        let unique: BTreeSet<String> = rows.iter().map(|m| m.to_string()).collect();
        assert_eq!(unique.len(), rows.len(), "a method is listed twice");
        assert_eq!(unique, methods(), "table rows vs the proto's RPCs");
    }
}
