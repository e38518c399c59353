//! Exactly-once delivery (`enable_exactly_once_delivery`), served by
//! Herald's durable acks: such a subscription is a group with
//! `ack_durability = sync`, so a confirmed ack is on disk (or in Redis)
//! and the event is never delivered again. What Pub/Sub adds for these
//! subscriptions is an answer per ack id: unary Acknowledge and
//! ModifyAckDeadline fail with INVALID_ARGUMENT carrying a
//! `google.rpc.ErrorInfo` whose metadata maps each failed ack id to
//! `PERMANENT_FAILURE_INVALID_ACK_ID` (the others succeeded), and
//! StreamingPull answers acks and deadline changes on the stream with
//! confirmations listing the valid and the invalid ids.
//!
//! Pub/Sub layer. An ack id fails when it is malformed, of another
//! subscription, unknown, already acknowledged or dead-lettered, or (for
//! a deadline change) no longer the current lease.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::broker::{Broker, BrokerError};
use crate::grpc::status::to_status;
use crate::model::results::{GroupInfo, LeaseOutcome, LeaseResult};
use crate::model::settings::AckDurability;

/// Pub/Sub's ErrorInfo reason, domain and per-id code.
const REASON: &str = "EXACTLY_ONCE_ACKID_FAILURE";
const DOMAIN: &str = "pubsub.googleapis.com";
const INVALID: &str = "PERMANENT_FAILURE_INVALID_ACK_ID";

/// Whether `group`, as a subscription, has exactly-once delivery.
pub(super) fn enabled(group: &GroupInfo) -> bool {
    group.record.settings.ack_durability == AckDurability::Sync
}

/// `ids` split into those that may be `group`'s (issued by this
/// deployment, of no other group) and those that fail as they are.
pub(super) fn split(broker: &Broker, group: &GroupInfo, ids: &[String]) -> Settling {
    let own = (&group.record.topic, &group.record.name);
    // The subscription's own group is known on this node once it was
    // found (`Front::find_group`), so an id of a group unknown here is not
    // of this subscription.
    let (try_ids, failed) = ids.iter().cloned().partition(|id| {
        broker
            .ack_id_group(id)
            .is_some_and(|(topic, name)| (&topic, &name) == own)
    });
    Settling {
        try_ids,
        done: Vec::new(),
        failed,
    }
}

/// The ack ids of one request on their way to a confirmation.
#[derive(Debug, Default)]
pub(super) struct Settling {
    /// Still to be handed to the broker.
    pub try_ids: Vec<String>,
    /// Confirmed.
    pub done: Vec<String>,
    /// Failed.
    pub failed: Vec<String>,
}

impl Settling {
    /// Sorts the broker's results into done and failed.
    pub(super) fn record(&mut self, results: Vec<LeaseResult>) {
        for r in results {
            if r.outcome == LeaseOutcome::Ok {
                self.done.push(r.ack_id);
            } else {
                self.failed.push(r.ack_id);
            }
        }
    }

    /// Hands the ids still to settle to `op` (a broker call; not called
    /// when there are none, which the broker would refuse) and sorts its
    /// results.
    ///
    /// # Errors
    /// The broker's failure.
    pub(super) async fn apply(
        mut self,
        op: impl AsyncFnOnce(&[String]) -> Result<Vec<LeaseResult>, BrokerError>,
    ) -> Result<Settling, Status> {
        if !self.try_ids.is_empty() {
            let results = op(&self.try_ids).await.map_err(to_status)?;
            self.record(results);
        }
        Ok(self)
    }

    /// Adds the outcomes of `other` to these.
    pub(super) fn absorb(&mut self, other: Settling) {
        self.done.extend(other.done);
        self.failed.extend(other.failed);
    }

    /// OK when nothing failed, else Pub/Sub's INVALID_ARGUMENT naming each
    /// failed ack id in an ErrorInfo.
    pub(super) fn into_result(self) -> Result<(), Status> {
        if self.failed.is_empty() {
            return Ok(());
        }
        let metadata: HashMap<String, String> = self
            .failed
            .into_iter()
            .map(|id| (id, INVALID.to_string()))
            .collect();
        Err(Status::with_error_details(
            Code::InvalidArgument,
            "Some acknowledgement ids in the request were invalid. This could be because the \
             acknowledgement ids have expired, were already acknowledged or were malformed.",
            ErrorDetails::with_error_info(REASON, DOMAIN, metadata),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, outcome: LeaseOutcome) -> LeaseResult {
        LeaseResult {
            ack_id: id.into(),
            outcome,
            deadline_us: None,
        }
    }

    #[test]
    fn failed_ack_ids_are_named_in_an_error_info() {
        let mut s = Settling {
            failed: vec!["bad".into()],
            ..Settling::default()
        };
        s.record(vec![
            result("a", LeaseOutcome::Ok),
            result("b", LeaseOutcome::AlreadyDone),
        ]);
        assert_eq!(s.done, ["a"]);
        let status = s.into_result().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, REASON);
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(info.metadata.len(), 2);
        assert_eq!(info.metadata["b"], INVALID);
        assert_eq!(info.metadata["bad"], INVALID);
        assert!(Settling::default().into_result().is_ok());
    }
}
