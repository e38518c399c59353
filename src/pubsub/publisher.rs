//! `google.pubsub.v1.Publisher`: topics and publishing.
//!
//! Pub/Sub layer: each handler resolves the name, authorizes on the Herald
//! topic (`publish`, `manage`, or any permission for describe calls), makes
//! one broker call and answers in Pub/Sub's terms.

use tonic::{Request, Response, Status};

use super::convert::{self, TOPIC_FIELDS};
use super::names::{self, Kind, Resource};
use super::{Front, Need, status};
use crate::auth::Action;
use crate::grpc::audit;
use crate::grpc::guard::Caller;
use crate::grpc::status::to_status;
use crate::proto::google::pubsub::v1::publisher_server::Publisher;
use crate::proto::google::pubsub::v1::*;

/// What [`PublisherApi::write_topic`] does.
#[derive(Debug, Clone, Copy)]
enum Write {
    Create,
    Update,
}

/// Pub/Sub's default and largest page.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The Publisher service.
#[derive(Clone)]
pub struct PublisherApi {
    front: Front,
}

impl PublisherApi {
    pub(crate) fn new(front: Front) -> PublisherApi {
        PublisherApi { front }
    }

    /// CreateTopic and UpdateTopic: `fields` of `topic` applied, audited.
    async fn write_topic<R>(
        &self,
        request: &Request<R>,
        method: &'static str,
        topic: &Topic,
        fields: &[&str],
        write: Write,
    ) -> Result<Response<Topic>, Status> {
        let (resource, herald) = self.front.resolve(Kind::Topic, &topic.name)?;
        let caller = self
            .front
            .allow(request, method, Need::Do(Action::Manage), &herald)?;
        let patch = convert::topic_patch(topic, fields)?;
        let broker = self.front.broker();
        let result = match write {
            Write::Create => broker.create_topic(&herald, &patch).await,
            Write::Update => broker.update_topic(&herald, &patch).await,
        };
        let result = result.map_err(|e| status(&resource, e));
        let info = Self::audited(&caller, method, &herald, result)?;
        Ok(Response::new(convert::topic(resource.to_string(), &info)))
    }

    fn audited<T>(
        caller: &Caller,
        method: &'static str,
        topic: &str,
        outcome: Result<T, Status>,
    ) -> Result<T, Status> {
        audit::done(caller, method, topic, None, &outcome);
        outcome
    }
}

/// A page size as Pub/Sub takes it: 0 for the default, at most 1000.
pub(crate) fn page_size(size: i32) -> Result<usize, Status> {
    match usize::try_from(size) {
        Ok(0) => Ok(DEFAULT_PAGE),
        Ok(n) => Ok(n.min(MAX_PAGE)),
        Err(_) => Err(Status::invalid_argument("page_size must not be negative.")),
    }
}

/// A page token (the Herald name of the last item of the previous page).
fn page_token(token: &str) -> Option<String> {
    (!token.is_empty()).then(|| token.to_string())
}

impl PublisherApi {
    /// A page of what `shown` names the groups of Herald topic `herald`
    /// (those it names), after the group of `page_token`, and the next
    /// page's token (empty at the end).
    ///
    /// # Errors
    /// INVALID_ARGUMENT (page size), NOT_FOUND (the topic).
    async fn topic_group_names(
        &self,
        resource: &Resource,
        herald: &str,
        page_size: i32,
        page_token: &str,
        shown: impl Fn(&str) -> Option<String>,
    ) -> Result<(Vec<String>, String), Status> {
        let size = self::page_size(page_size)?;
        let mut after = self::page_token(page_token).map(|g| (herald.to_string(), g));
        let mut names = Vec::new();
        loop {
            let (page, more) = self
                .front
                .broker()
                .list_groups(Some(herald), after.take(), size)
                .await
                .map_err(|e| status(resource, e))?;
            for group in page {
                let Some(name) = shown(&group.record.name) else {
                    continue;
                };
                if names.len() == size {
                    let next = group_token(&names);
                    return Ok((names.into_iter().map(|(_, s)| s).collect(), next));
                }
                names.push((group.record.name, name));
            }
            match more {
                Some(token) => after = Some(token),
                None => return Ok((names.into_iter().map(|(_, s)| s).collect(), String::new())),
            }
        }
    }
}

#[tonic::async_trait]
impl Publisher for PublisherApi {
    async fn create_topic(&self, request: Request<Topic>) -> Result<Response<Topic>, Status> {
        const METHOD: &str = "google.pubsub.v1.Publisher/CreateTopic";
        let topic = request.get_ref();
        self.write_topic(&request, METHOD, topic, TOPIC_FIELDS, Write::Create)
            .await
    }

    async fn update_topic(
        &self,
        request: Request<UpdateTopicRequest>,
    ) -> Result<Response<Topic>, Status> {
        const METHOD: &str = "google.pubsub.v1.Publisher/UpdateTopic";
        let r = request.get_ref();
        let topic = r.topic.as_ref().ok_or_else(|| {
            Status::invalid_argument("The topic in the UpdateTopicRequest must be set.")
        })?;
        let fields = super::convert::mask_fields(r.update_mask.as_ref(), "UpdateTopicRequest")?;
        self.write_topic(&request, METHOD, topic, &fields, Write::Update)
            .await
    }

    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        const METHOD: &str = "google.pubsub.v1.Publisher/Publish";
        let (resource, herald) = self.front.resolve(Kind::Topic, &request.get_ref().topic)?;
        self.front
            .allow(&request, METHOD, Need::Do(Action::Publish), &herald)?;
        let events = convert::events(request.into_inner().messages)?;
        // Pub/Sub publishes only to topics that exist: no auto-create here.
        let broker = self.front.broker();
        if !broker.has_topic(&herald).await.map_err(to_status)? {
            return Err(super::not_found(&resource));
        }
        let published = broker
            .publish(&herald, events)
            .await
            .map_err(|e| status(&resource, e))?;
        Ok(Response::new(PublishResponse {
            message_ids: published.events.into_iter().map(|e| e.id).collect(),
        }))
    }

    async fn get_topic(
        &self,
        request: Request<GetTopicRequest>,
    ) -> Result<Response<Topic>, Status> {
        const METHOD: &str = "google.pubsub.v1.Publisher/GetTopic";
        let (resource, herald) = self.front.resolve(Kind::Topic, &request.get_ref().topic)?;
        self.front.allow(&request, METHOD, Need::View, &herald)?;
        let info = self
            .front
            .broker()
            .get_topic(&herald)
            .await
            .map_err(|e| status(&resource, e))?;
        Ok(Response::new(convert::topic(resource.to_string(), &info)))
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let caller = self.front.guard.caller(&request)?;
        let r = request.get_ref();
        let project = names::parse_project(&r.project)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let size = page_size(r.page_size)?;
        // Another project's topics share a prefix and sort together.
        let prefix = (project != *self.front.default_project).then(|| format!("1{project}."));
        let mut after = page_token(&r.page_token).or_else(|| prefix.clone());
        let mut topics = Vec::new();
        let mut next = None;
        'pages: loop {
            let (page, more) = self
                .front
                .broker()
                .list_topics(after.as_deref(), size)
                .await
                .map_err(to_status)?;
            for info in page {
                let name = &info.record.name;
                if prefix
                    .as_ref()
                    .is_some_and(|p| !name.starts_with(p.as_str()))
                {
                    break 'pages;
                }
                let mine = self
                    .front
                    .resource(Kind::Topic, name)
                    .filter(|t: &Resource| t.project == project);
                if let Some(t) = mine.filter(|_| caller.may_see(name)) {
                    if topics.len() == size {
                        next = topics.last().map(|(h, _): &(String, Topic)| h.clone());
                        break 'pages;
                    }
                    topics.push((name.clone(), convert::topic(t.to_string(), &info)));
                }
            }
            match more {
                Some(token) => after = Some(token),
                None => break,
            }
        }
        Ok(Response::new(ListTopicsResponse {
            topics: topics.into_iter().map(|(_, t)| t).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn list_topic_subscriptions(
        &self,
        request: Request<ListTopicSubscriptionsRequest>,
    ) -> Result<Response<ListTopicSubscriptionsResponse>, Status> {
        const METHOD: &str = "google.pubsub.v1.Publisher/ListTopicSubscriptions";
        let r = request.get_ref();
        let (resource, herald) = self.front.resolve(Kind::Topic, &r.topic)?;
        self.front.allow(&request, METHOD, Need::View, &herald)?;
        let (subscriptions, next_page_token) = self
            .topic_group_names(&resource, &herald, r.page_size, &r.page_token, |g| {
                self.front
                    .resource(Kind::Subscription, g)
                    .map(|s| s.to_string())
            })
            .await?;
        Ok(Response::new(ListTopicSubscriptionsResponse {
            subscriptions,
            next_page_token,
        }))
    }

    async fn list_topic_snapshots(
        &self,
        request: Request<ListTopicSnapshotsRequest>,
    ) -> Result<Response<ListTopicSnapshotsResponse>, Status> {
        const METHOD: &str = "google.pubsub.v1.Publisher/ListTopicSnapshots";
        let r = request.get_ref();
        let (resource, herald) = self.front.resolve(Kind::Topic, &r.topic)?;
        self.front.allow(&request, METHOD, Need::View, &herald)?;
        let (snapshots, next_page_token) = self
            .topic_group_names(&resource, &herald, r.page_size, &r.page_token, |g| {
                super::snapshots::snapshot_name(&self.front, g)
            })
            .await?;
        Ok(Response::new(ListTopicSnapshotsResponse {
            snapshots,
            next_page_token,
        }))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<()>, Status> {
        const METHOD: &str = "google.pubsub.v1.Publisher/DeleteTopic";
        let (resource, herald) = self.front.resolve(Kind::Topic, &request.get_ref().topic)?;
        let caller = self
            .front
            .allow(&request, METHOD, Need::Do(Action::Manage), &herald)?;
        let result = self.front.delete_topic_detaching(&resource, &herald).await;
        Self::audited(&caller, METHOD, &herald, result)?;
        Ok(Response::new(()))
    }

    async fn detach_subscription(
        &self,
        request: Request<DetachSubscriptionRequest>,
    ) -> Result<Response<DetachSubscriptionResponse>, Status> {
        const METHOD: &str = "google.pubsub.v1.Publisher/DetachSubscription";
        let name = &request.get_ref().subscription;
        let (resource, herald) = self.front.resolve(Kind::Subscription, name)?;
        let group = self
            .front
            .find_group(&herald)
            .await?
            .ok_or_else(|| super::not_found(&resource))?;
        let topic = group.record.topic.clone();
        let caller = self
            .front
            .allow(&request, METHOD, Need::Do(Action::Manage), &topic)?;
        let result = self.front.detach(&resource, &group).await;
        Self::audited(&caller, METHOD, &topic, result)?;
        Ok(Response::new(DetachSubscriptionResponse {}))
    }
}

/// The token after the last listed subscription: its group name.
fn group_token(listed: &[(String, String)]) -> String {
    listed.last().map(|(g, _)| g.clone()).unwrap_or_default()
}
