//! `herald.v1.AdminService`: topics, groups, seek and server info.
//!
//! gRPC layer: authorize, convert, one broker call, convert back. Changes
//! are written to the audit log (`audit.rs`); lists show only the topics
//! (and their groups) the caller may see (`visible.rs`).

use tonic::{Request, Response, Status};

use super::convert::{duration, group_out, system_time, topic_out};
use super::guard::{Caller, Guard, Guarded};
use super::requests;
use super::status::to_status;
use super::visible::visible_page;
use crate::broker::Broker;
use crate::proto::admin_service_server::AdminService;
use crate::proto::*;

/// Serves AdminService.
pub struct AdminApi {
    broker: Broker,
    guard: Guard,
}

impl AdminApi {
    /// A service over `broker`, authorizing with `guard`.
    pub fn new(broker: Broker, guard: Guard) -> Self {
        AdminApi { broker, guard }
    }
}

/// Logs a management action of `R` and passes its result on.
fn audited<R: Guarded, T>(
    caller: &Caller,
    topic: &str,
    group: Option<&str>,
    result: Result<T, Status>,
) -> Result<T, Status> {
    super::audit::done(caller, R::RPC.method, topic, group, &result);
    result
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let (topic, patch) = requests::topic(request.into_inner().topic)?;
        let result = self.broker.create_topic(&topic.name, &patch).await;
        let info = audited::<CreateTopicRequest, _>(
            &caller,
            &topic.name,
            None,
            result.map_err(to_status),
        )?;
        Ok(Response::new(CreateTopicResponse {
            topic: Some(topic_out(info)),
        }))
    }

    async fn get_topic(
        &self,
        request: Request<GetTopicRequest>,
    ) -> Result<Response<GetTopicResponse>, Status> {
        self.guard.check(&request)?;
        let info = self
            .broker
            .get_topic(&request.into_inner().name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetTopicResponse {
            topic: Some(topic_out(info)),
        }))
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let (limit, after) = requests::list_topics(request.get_ref())?;
        let broker = &self.broker;
        let (topics, next) = if caller.sees_all() {
            broker.list_topics(after.as_deref(), limit).await
        } else {
            visible_page(
                after,
                limit,
                |after: Option<String>, n| async move {
                    broker.list_topics(after.as_deref(), n).await
                },
                |t| caller.may_see(&t.record.name),
                |t| t.record.name.clone(),
            )
            .await
        }
        .map_err(to_status)?;
        Ok(Response::new(ListTopicsResponse {
            topics: topics.into_iter().map(topic_out).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn update_topic(
        &self,
        request: Request<UpdateTopicRequest>,
    ) -> Result<Response<UpdateTopicResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let (topic, patch) = requests::topic(request.into_inner().topic)?;
        let result = self.broker.update_topic(&topic.name, &patch).await;
        let info = audited::<UpdateTopicRequest, _>(
            &caller,
            &topic.name,
            None,
            result.map_err(to_status),
        )?;
        Ok(Response::new(UpdateTopicResponse {
            topic: Some(topic_out(info)),
        }))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let name = request.into_inner().name;
        let result = self.broker.delete_topic(&name).await.map_err(to_status);
        audited::<DeleteTopicRequest, _>(&caller, &name, None, result)?;
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn create_group(
        &self,
        request: Request<CreateGroupRequest>,
    ) -> Result<Response<CreateGroupResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let (group, patch, start) = requests::create_group(request.into_inner().group)?;
        let result = self
            .broker
            .create_group(&group.topic, &group.name, &patch, start)
            .await
            .map_err(to_status);
        let info =
            audited::<CreateGroupRequest, _>(&caller, &group.topic, Some(&group.name), result)?;
        Ok(Response::new(CreateGroupResponse {
            group: Some(group_out(info)),
        }))
    }

    async fn get_group(
        &self,
        request: Request<GetGroupRequest>,
    ) -> Result<Response<GetGroupResponse>, Status> {
        self.guard.check(&request)?;
        let r = request.into_inner();
        let info = self
            .broker
            .get_group(&r.topic, &r.group)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetGroupResponse {
            group: Some(group_out(info)),
        }))
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let r = request.into_inner();
        let (limit, after) = requests::list_groups(&r)?;
        let topic = (!r.topic.is_empty()).then_some(r.topic.as_str());
        let broker = &self.broker;
        // A topic's groups are visible with the topic (checked above).
        let (groups, next) = if caller.sees_all() || topic.is_some() {
            broker.list_groups(topic, after, limit).await
        } else {
            visible_page(
                after,
                limit,
                |after, n| {
                    let broker = broker.clone();
                    async move { broker.list_groups(None, after, n).await }
                },
                |g| caller.may_see(&g.record.topic),
                |g| (g.record.topic.clone(), g.record.name.clone()),
            )
            .await
        }
        .map_err(to_status)?;
        Ok(Response::new(ListGroupsResponse {
            groups: groups.into_iter().map(group_out).collect(),
            next_page_token: next.map(requests::group_token).unwrap_or_default(),
        }))
    }

    async fn update_group(
        &self,
        request: Request<UpdateGroupRequest>,
    ) -> Result<Response<UpdateGroupResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let (group, patch) = requests::update_group(request.into_inner().group)?;
        let result = self
            .broker
            .update_group(&group.topic, &group.name, &patch)
            .await
            .map_err(to_status);
        let info =
            audited::<UpdateGroupRequest, _>(&caller, &group.topic, Some(&group.name), result)?;
        Ok(Response::new(UpdateGroupResponse {
            group: Some(group_out(info)),
        }))
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let r = request.into_inner();
        let result = self
            .broker
            .delete_group(&r.topic, &r.group)
            .await
            .map_err(to_status);
        audited::<DeleteGroupRequest, _>(&caller, &r.topic, Some(&r.group), result)?;
        Ok(Response::new(DeleteGroupResponse {}))
    }

    async fn seek(&self, request: Request<SeekRequest>) -> Result<Response<SeekResponse>, Status> {
        let caller = self.guard.check(&request)?;
        let r = request.into_inner();
        let position = requests::seek(&r)?;
        let result = self
            .broker
            .seek(&r.topic, &r.group, position)
            .await
            .map_err(to_status);
        let offset = audited::<SeekRequest, _>(&caller, &r.topic, Some(&r.group), result)?;
        Ok(Response::new(SeekResponse { offset }))
    }

    async fn get_server_info(
        &self,
        request: Request<GetServerInfoRequest>,
    ) -> Result<Response<GetServerInfoResponse>, Status> {
        self.guard.check(&request)?;
        let info = self.broker.server_info();
        Ok(Response::new(GetServerInfoResponse {
            version: info.version,
            storage_backend: info.storage_backend,
            start_time: Some(system_time(info.started)),
            uptime: Some(duration(info.uptime)),
            topics: info.topics,
            groups: info.groups,
            published: info.published,
            connected_consumers: info.connected_consumers,
            fsync: info.fsync,
        }))
    }
}
