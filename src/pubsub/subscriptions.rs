//! Subscriptions as groups: finding a subscription's group (a Pub/Sub
//! subscription is named without its topic), and the settings a
//! Subscription asks for as a group's.
//!
//! Pub/Sub layer.

use std::time::Duration;

use tonic::Status;

use super::Front;
use super::convert::{duration_in, duration_out};
use super::names::Kind;
use crate::broker::GroupPatch;
use crate::broker::settings::MAX_EXPIRE_AFTER;
use crate::grpc::status::to_status;
use crate::model::results::GroupInfo;
use crate::proto::google::pubsub::v1::{ExpirationPolicy, RetryPolicy, Subscription};

/// Pub/Sub's bounds of `ack_deadline_seconds`, and its default.
const MIN_ACK_DEADLINE: i32 = 10;
const MAX_ACK_DEADLINE: i32 = 600;
const DEFAULT_ACK_DEADLINE: i32 = 10;
/// Pub/Sub's bounds of a retry policy's backoffs.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Groups looked at per storage call while searching.
const SCAN_PAGE: usize = 500;

impl Front {
    /// The group of Herald name `group` on any topic (Pub/Sub subscriptions
    /// are unique by name; the first in topic order otherwise).
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) async fn find_group(&self, group: &str) -> Result<Option<GroupInfo>, Status> {
        let mut after = None;
        loop {
            let (page, more) = self
                .broker()
                .list_groups(None, after, SCAN_PAGE)
                .await
                .map_err(to_status)?;
            if let Some(found) = page.into_iter().find(|g| g.record.name == group) {
                return Ok(Some(found));
            }
            match more {
                Some(next) => after = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// A group as a Subscription, when both its name and its topic's are
    /// Pub/Sub names.
    pub(crate) fn subscription(&self, g: &GroupInfo) -> Option<Subscription> {
        let name = self.resource(Kind::Subscription, &g.record.name)?;
        let topic = self.resource(Kind::Topic, &g.record.topic)?;
        let s = &g.record.settings;
        Some(Subscription {
            name: name.to_string(),
            topic: topic.to_string(),
            ack_deadline_seconds: i32::try_from(s.ack_deadline.as_secs()).unwrap_or(i32::MAX),
            enable_message_ordering: s.ordered,
            retry_policy: Some(RetryPolicy {
                minimum_backoff: Some(duration_out(s.retry.min_backoff)),
                maximum_backoff: Some(duration_out(s.retry.max_backoff)),
            }),
            // An empty policy: never expires.
            expiration_policy: Some(ExpirationPolicy {
                ttl: s.expire_after.map(duration_out),
            }),
            ..Subscription::default()
        })
    }
}

/// The group settings a new Subscription asks for. Fields Herald does not
/// serve yet are refused, not dropped.
///
/// # Errors
/// INVALID_ARGUMENT.
pub fn group_patch(s: &Subscription) -> Result<GroupPatch, Status> {
    let unsupported = |field: &str| {
        Err(Status::invalid_argument(format!(
            "Subscription field {field} is not supported by Herald yet."
        )))
    };
    if s.push_config
        .as_ref()
        .is_some_and(|p| !p.push_endpoint.is_empty())
    {
        return unsupported("push_config");
    }
    if !s.filter.is_empty() {
        return unsupported("filter");
    }
    if s.dead_letter_policy.is_some() {
        return unsupported("dead_letter_policy");
    }
    if !s.labels.is_empty() {
        return unsupported("labels");
    }
    if s.retain_acked_messages || s.message_retention_duration.is_some() {
        return unsupported("retain_acked_messages");
    }
    let deadline = match s.ack_deadline_seconds {
        0 => DEFAULT_ACK_DEADLINE,
        d if (MIN_ACK_DEADLINE..=MAX_ACK_DEADLINE).contains(&d) => d,
        _ => {
            return Err(Status::invalid_argument(
                "Invalid ack_deadline_seconds: it must be between 10 and 600.",
            ));
        }
    };
    let mut patch = GroupPatch {
        ack_deadline: Some(Duration::from_secs(u64::from(deadline.unsigned_abs()))),
        ordered: Some(s.enable_message_ordering),
        ..GroupPatch::default()
    };
    if let Some(retry) = &s.retry_policy {
        let backoff = |d: &Option<prost_types::Duration>, field: &str| match d {
            None => Ok(None),
            Some(d) => duration_in(d)
                .filter(|d| *d <= MAX_BACKOFF)
                .map(Some)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "Invalid retry_policy.{field}: it must be between 0 and 600 seconds."
                    ))
                }),
        };
        patch.min_backoff = backoff(&retry.minimum_backoff, "minimum_backoff")?;
        patch.max_backoff = backoff(&retry.maximum_backoff, "maximum_backoff")?;
    }
    if let Some(policy) = &s.expiration_policy {
        let ttl = match &policy.ttl {
            None => None,
            Some(d) => Some(
                duration_in(d)
                    .filter(|d| *d >= Duration::from_secs(86_400) && *d <= MAX_EXPIRE_AFTER)
                    .ok_or_else(|| {
                        Status::invalid_argument(
                            "Invalid expiration_policy.ttl: it must be at least 1 day.",
                        )
                    })?,
            ),
        };
        patch.expire_after = Some(ttl);
    }
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_asks_for_group_settings() {
        let s = Subscription {
            ack_deadline_seconds: 30,
            enable_message_ordering: true,
            retry_policy: Some(RetryPolicy {
                minimum_backoff: Some(duration_out(Duration::from_secs(1))),
                maximum_backoff: Some(duration_out(Duration::from_secs(60))),
            }),
            ..Subscription::default()
        };
        let p = group_patch(&s).unwrap();
        assert_eq!(p.ack_deadline, Some(Duration::from_secs(30)));
        assert_eq!(p.ordered, Some(true));
        assert_eq!(p.min_backoff, Some(Duration::from_secs(1)));
        assert_eq!(p.max_backoff, Some(Duration::from_secs(60)));
        let default = group_patch(&Subscription::default()).unwrap();
        assert_eq!(default.ack_deadline, Some(Duration::from_secs(10)));
    }

    #[test]
    fn out_of_range_or_unsupported_fields_are_refused() {
        let bad = Subscription {
            ack_deadline_seconds: 5,
            ..Subscription::default()
        };
        assert!(group_patch(&bad).is_err());
        let filtered = Subscription {
            filter: "attributes.k = \"v\"".into(),
            ..Subscription::default()
        };
        assert!(group_patch(&filtered).is_err());
    }
}
