//! `google.pubsub.v1.Subscriber/Pull`: one unary call takes up to
//! `max_messages` deliveries of a subscription.
//!
//! Pub/Sub layer, over the broker's Consume machinery with a pull's
//! consumer: the call joins the group, waits for the first batch (up to
//! `WAIT`, shorter when the client's deadline is nearer, or about
//! `IMMEDIATE` with `return_immediately`), and leaves; the leases of what
//! it returns stay until they are acked, nacked (ModifyAckDeadline 0),
//! extended or past the subscription's ack deadline, as in Pub/Sub. An
//! answer with no messages is normal (nothing arrived in time). The
//! subscription's filter applies as in StreamingPull.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::convert::received;
use super::streaming::{consumer_name, stored_filter, wanted};
use super::subscriber::SubscriberApi;
use super::{Need, status};
use crate::auth::Action;
use crate::broker::ConsumeOptions;
use crate::proto::google::pubsub::v1::{PullRequest, PullResponse};

const METHOD: &str = "google.pubsub.v1.Subscriber/Pull";
/// Longest a pull waits for a first message.
const WAIT: Duration = Duration::from_secs(10);
/// How long `return_immediately` waits for what is ready.
const IMMEDIATE: Duration = Duration::from_millis(100);
/// Time left to answer before the client's own deadline.
const MARGIN: Duration = Duration::from_millis(500);

/// Answers a Pull.
///
/// # Errors
/// UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND,
/// UNAVAILABLE.
pub(super) async fn pull(
    api: &SubscriberApi,
    request: Request<PullRequest>,
) -> Result<Response<PullResponse>, Status> {
    let front = api.front();
    let caller = front.guard.caller(&request)?;
    let r = request.get_ref();
    if r.max_messages <= 0 {
        return Err(Status::invalid_argument(
            "Invalid max_messages: it must be greater than 0.",
        ));
    }
    let (resource, group) = api.group_of(&r.subscription).await?;
    let topic = group.record.topic.clone();
    front.authorize(&caller, METHOD, Need::Do(Action::Consume), &topic)?;
    let filter = stored_filter(&group)?;
    let limit = front.broker().config().max_in_flight_limit;
    let max = r.max_messages.unsigned_abs().min(limit);
    let options = ConsumeOptions {
        max_in_flight: Some(max),
        max_batch: Some(max),
        pull: true,
        ..ConsumeOptions::default()
    };
    let consumer = consumer_name("pull");
    let (mut batches, settler) = front
        .broker()
        .consume(&topic, &group.record.name, &consumer, options)
        .await
        .map_err(|e| status(&resource, e))?;
    // Deprecated in Pub/Sub, still sent by older clients: honoured.
    #[allow(deprecated)]
    let immediately = r.return_immediately;
    let wait = if immediately {
        IMMEDIATE
    } else {
        client_deadline(&request).map_or(WAIT, |d| d.saturating_sub(MARGIN).min(WAIT))
    };
    let mut taken = match tokio::time::timeout(wait, batches.next()).await {
        Ok(Some(Ok(batch))) => batch,
        Ok(Some(Err(e))) => return Err(status(&resource, e)),
        Ok(None) | Err(_) => Vec::new(),
    };
    taken.extend(batches.take_ready());
    // Leaving keeps the leases of what was taken.
    drop(batches);
    let taken = wanted(filter.as_ref(), taken, &settler).await?;
    let project = front.default_project.clone();
    Ok(Response::new(PullResponse {
        received_messages: taken.iter().map(|d| received(d, &project)).collect(),
    }))
}

/// The client's deadline from its `grpc-timeout` header, if any.
fn client_deadline<T>(request: &Request<T>) -> Option<Duration> {
    let v = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse_timeout(v)
}

/// A `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(v: &str) -> Option<Duration> {
    if !v.is_ascii() {
        return None;
    }
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_writes_them() {
        assert_eq!(parse_timeout("59999m"), Some(Duration::from_millis(59_999)));
        assert_eq!(parse_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S", "é"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }
}
