//! `herald.v1.AdminService`: topics, groups, seek and server info.
//!
//! gRPC layer: convert, one broker call, convert back.

use tonic::{Request, Response, Status};

use super::convert::{
    duration, group_out, group_patch, page_size, position_in, system_time, topic_out, topic_patch,
};
use super::status::{invalid, to_status};
use crate::broker::Broker;
use crate::proto::admin_service_server::AdminService;
use crate::proto::*;

/// Serves AdminService.
pub struct AdminApi {
    broker: Broker,
}

impl AdminApi {
    /// A service over `broker`.
    pub fn new(broker: Broker) -> Self {
        AdminApi { broker }
    }
}

fn bad_token() -> Status {
    invalid("page_token", "is not a token issued by this server")
}

/// Group list tokens are `topic/group` ('/' cannot occur in names).
fn group_token(token: &str) -> Result<Option<(String, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let (t, g) = token.split_once('/').ok_or_else(bad_token)?;
    crate::broker::names::check_name("page_token", t).map_err(|_| bad_token())?;
    crate::broker::names::check_name("page_token", g).map_err(|_| bad_token())?;
    Ok(Some((t.to_string(), g.to_string())))
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let topic = request
            .into_inner()
            .topic
            .ok_or_else(|| invalid("topic", "is required"))?;
        let patch = topic_patch(&topic)?;
        let info = self
            .broker
            .create_topic(&topic.name, &patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CreateTopicResponse {
            topic: Some(topic_out(info)),
        }))
    }

    async fn get_topic(
        &self,
        request: Request<GetTopicRequest>,
    ) -> Result<Response<GetTopicResponse>, Status> {
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
        let r = request.into_inner();
        let limit = page_size(r.page_size)?;
        let after = if r.page_token.is_empty() {
            None
        } else {
            crate::broker::names::check_name("page_token", &r.page_token)
                .map_err(|_| bad_token())?;
            Some(r.page_token.as_str())
        };
        let (topics, next) = self
            .broker
            .list_topics(after, limit)
            .await
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
        let topic = request
            .into_inner()
            .topic
            .ok_or_else(|| invalid("topic", "is required"))?;
        let patch = topic_patch(&topic)?;
        let info = self
            .broker
            .update_topic(&topic.name, &patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(UpdateTopicResponse {
            topic: Some(topic_out(info)),
        }))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        self.broker
            .delete_topic(&request.into_inner().name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn create_group(
        &self,
        request: Request<CreateGroupRequest>,
    ) -> Result<Response<CreateGroupResponse>, Status> {
        let group = request
            .into_inner()
            .group
            .ok_or_else(|| invalid("group", "is required"))?;
        let patch = group_patch(&group)?;
        let start = group
            .start_position
            .as_ref()
            .map(|p| position_in("group.start_position", p))
            .transpose()?;
        let info = self
            .broker
            .create_group(&group.topic, &group.name, &patch, start)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CreateGroupResponse {
            group: Some(group_out(info)),
        }))
    }

    async fn get_group(
        &self,
        request: Request<GetGroupRequest>,
    ) -> Result<Response<GetGroupResponse>, Status> {
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
        let r = request.into_inner();
        let limit = page_size(r.page_size)?;
        let after = group_token(&r.page_token)?;
        let topic = (!r.topic.is_empty()).then_some(r.topic.as_str());
        let (groups, next) = self
            .broker
            .list_groups(topic, after, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListGroupsResponse {
            groups: groups.into_iter().map(group_out).collect(),
            next_page_token: next.map(|(t, g)| format!("{t}/{g}")).unwrap_or_default(),
        }))
    }

    async fn update_group(
        &self,
        request: Request<UpdateGroupRequest>,
    ) -> Result<Response<UpdateGroupResponse>, Status> {
        let group = request
            .into_inner()
            .group
            .ok_or_else(|| invalid("group", "is required"))?;
        if group.start_position.is_some() {
            return Err(invalid(
                "group.start_position",
                "cannot be changed; use Seek to move a group",
            ));
        }
        let patch = group_patch(&group)?;
        let info = self
            .broker
            .update_group(&group.topic, &group.name, &patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(UpdateGroupResponse {
            group: Some(group_out(info)),
        }))
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let r = request.into_inner();
        self.broker
            .delete_group(&r.topic, &r.group)
            .await
            .map_err(to_status)?;
        Ok(Response::new(DeleteGroupResponse {}))
    }

    async fn seek(&self, request: Request<SeekRequest>) -> Result<Response<SeekResponse>, Status> {
        let r = request.into_inner();
        let position = r
            .position
            .as_ref()
            .ok_or_else(|| invalid("position", "is required"))
            .and_then(|p| position_in("position", p))?;
        let offset = self
            .broker
            .seek(&r.topic, &r.group, position)
            .await
            .map_err(to_status)?;
        Ok(Response::new(SeekResponse { offset }))
    }

    async fn get_server_info(
        &self,
        _request: Request<GetServerInfoRequest>,
    ) -> Result<Response<GetServerInfoResponse>, Status> {
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
