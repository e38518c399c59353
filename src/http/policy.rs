//! The server's auth file as the console's [`Authorizer`]: the same
//! tokens, principals and rules as the gRPC edge, and the same need per
//! action as the RPC it stands for.
//!
//! Edge layer, over [`crate::auth`] and the gRPC edge's table
//! ([`crate::grpc::guard::RPCS`]): a console action is authorized exactly
//! as its RPC is (`publish`, `consume`, `manage`, `dead_letters` on the
//! topic; some permission on the topic to view it; `admin` for the
//! overview, which is GetServerInfo). `/metrics` has no RPC: any
//! authenticated principal may scrape it and sees the series of the topics
//! it may see. The policy is read at each request, so a reloaded auth file
//! applies at once, and a session ends as soon as its token is revoked.

use std::sync::Arc;

use super::auth::{Action, AuthError, Authorizer, Principal};
use crate::auth::{self as policy, AuthState, token};
use crate::grpc::guard::{Need, RPCS};

/// The credential of a certificate principal.
const CERTIFICATE: &str = "certificate";

/// Authorizes console requests with the server's auth file.
#[derive(Debug, Clone)]
pub struct ServerAuth {
    state: Arc<AuthState>,
}

impl ServerAuth {
    /// Over the auth file in force.
    pub fn new(state: Arc<AuthState>) -> ServerAuth {
        ServerAuth { state }
    }

    /// The principal in force under `who`'s name (current rules; one
    /// without any permission when the file no longer lists it).
    fn current(&self, who: &Principal) -> Arc<policy::Principal> {
        self.state.policy().principal(&who.name)
    }
}

/// What the RPC behind `action` needs; `/metrics` needs no more than being
/// authenticated (`View` without a topic).
pub fn need(action: Action) -> Option<Need> {
    if action == Action::ScrapeMetrics {
        return Some(Need::View);
    }
    RPCS.iter()
        .find(|row| row.method == action.rpc())
        .map(|row| row.need)
}

#[async_trait::async_trait]
impl Authorizer for ServerAuth {
    async fn authenticate(&self, token_text: &str) -> Result<Principal, AuthError> {
        let owner = self
            .state
            .policy()
            .authenticate(token_text)
            .map_err(|_| AuthError::BadToken)?;
        let id = token::id_of(token_text).unwrap_or_default();
        Ok(Principal {
            name: owner.name.clone(),
            credential: format!("token:{}", id.to_ascii_lowercase()),
        })
    }

    async fn resume(&self, who: Principal) -> Result<Principal, AuthError> {
        let id = who
            .credential
            .strip_prefix("token:")
            .ok_or(AuthError::BadToken)?;
        match self.state.policy().token_owner(id) {
            Some(owner) if owner == who.name => Ok(who),
            _ => Err(AuthError::BadToken),
        }
    }

    fn certificate(&self, name: &str) -> Option<Principal> {
        Some(Principal {
            name: name.to_string(),
            credential: CERTIFICATE.into(),
        })
    }

    fn authorize(
        &self,
        who: &Principal,
        action: Action,
        topic: Option<&str>,
    ) -> Result<(), AuthError> {
        let principal = self.current(who);
        let result = match (need(action), topic) {
            (Some(Need::Do(a)), Some(topic)) => policy::authorize(&principal, a, topic),
            (Some(Need::View), Some(topic)) => policy::authorize_view(&principal, topic),
            // Lists (filtered) and /metrics (filtered).
            (Some(Need::View), None) => Ok(()),
            (Some(Need::Admin), _) => policy::authorize_admin(&principal, "read server info"),
            // An action without a row, or one about no topic that needs a
            // topic: a bug in the console, refused.
            (need, topic) => {
                return Err(AuthError::Denied(format!(
                    "no authorization rule for {need:?} on {topic:?}"
                )));
            }
        };
        result.map_err(|e| AuthError::Denied(e.to_string()))
    }

    fn may_see(&self, who: &Principal, topic: &str) -> bool {
        self.current(who).may_see(topic)
    }

    fn sees_all(&self, who: &Principal) -> bool {
        self.current(who).sees_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every console action but `/metrics` stands for an RPC of the table,
    /// and needs what that RPC needs.
    #[test]
    fn every_action_has_the_need_of_its_rpc() {
        use crate::auth::Action as A;
        let actions = [
            (Action::GetServerInfo, Need::Admin),
            (Action::ListTopics, Need::View),
            (Action::GetTopic, Need::View),
            (Action::CreateTopic, Need::Do(A::Manage)),
            (Action::DeleteTopic, Need::Do(A::Manage)),
            (Action::Publish, Need::Do(A::Publish)),
            (Action::Read, Need::Do(A::Consume)),
            (Action::ListGroups, Need::View),
            (Action::GetGroup, Need::View),
            (Action::CreateGroup, Need::Do(A::Manage)),
            (Action::UpdateGroup, Need::Do(A::Manage)),
            (Action::DeleteGroup, Need::Do(A::Manage)),
            (Action::Seek, Need::Do(A::Manage)),
            (Action::ListDeadLetters, Need::Do(A::DeadLetters)),
            (Action::ReplayDeadLetters, Need::Do(A::DeadLetters)),
            (Action::PurgeDeadLetters, Need::Do(A::DeadLetters)),
            (Action::ScrapeMetrics, Need::View),
        ];
        for (action, expected) in actions {
            assert_eq!(need(action), Some(expected), "{action:?}");
        }
    }
}
