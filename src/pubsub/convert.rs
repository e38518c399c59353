//! Pub/Sub messages and topics to and from Herald's, with Pub/Sub's
//! request limits.
//!
//! Pub/Sub layer, pure functions.
//!
//! A Pub/Sub message is a Herald event of type [`MESSAGE_TYPE`]: `data` is
//! the payload, `attributes` the attributes, `ordering_key` the key; the
//! server assigns the id (the `message_id`).

use std::time::Duration;

use tonic::Status;

use super::names::{self, Kind};
use crate::broker::forward;
use crate::broker::{Delivery, TopicPatch};
use crate::event::Event;
use crate::grpc::convert::{duration as duration_out, from_duration, timestamp};
use crate::model::results::TopicInfo;
use crate::proto::google::pubsub::v1::{PubsubMessage, ReceivedMessage, Topic, topic};

/// The event type of messages published through Pub/Sub.
pub const MESSAGE_TYPE: &str = "google.pubsub.v1.PubsubMessage";

/// Pub/Sub's limits on a publish request.
const MAX_MESSAGES: usize = 1000;
const MAX_ATTRIBUTES: usize = 100;
const MAX_ATTRIBUTE_KEY: usize = 256;
const MAX_ATTRIBUTE_VALUE: usize = 1024;
const MAX_ORDERING_KEY: usize = 1024;

/// Pub/Sub's bounds of a topic's `message_retention_duration`.
const MIN_RETENTION: Duration = Duration::from_secs(10 * 60);
const MAX_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// The events of a publish request, checked as Pub/Sub checks them
/// (Herald's own size limits are the broker's).
///
/// # Errors
/// INVALID_ARGUMENT.
pub fn events(messages: Vec<PubsubMessage>) -> Result<Vec<Event>, Status> {
    if messages.is_empty() {
        return Err(Status::invalid_argument(
            "The request contains no messages: at least one is required.",
        ));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(Status::invalid_argument(format!(
            "The number of messages in the request ({}) exceeds the maximum allowed ({MAX_MESSAGES}).",
            messages.len()
        )));
    }
    messages.into_iter().map(event).collect()
}

fn event(m: PubsubMessage) -> Result<Event, Status> {
    if m.data.is_empty() && m.attributes.is_empty() {
        return Err(Status::invalid_argument(
            "One or more messages in the publish request is empty. Each message must contain either non-empty data, or at least one attribute.",
        ));
    }
    if m.attributes.len() > MAX_ATTRIBUTES {
        return Err(Status::invalid_argument(format!(
            "A message has {} attributes, over the maximum of {MAX_ATTRIBUTES}.",
            m.attributes.len()
        )));
    }
    for (k, v) in &m.attributes {
        if k.is_empty() || k.len() > MAX_ATTRIBUTE_KEY || k.starts_with("goog") {
            return Err(Status::invalid_argument(format!(
                "Invalid attribute key {}: keys are 1 to {MAX_ATTRIBUTE_KEY} bytes and must not start with \"goog\".",
                crate::model::echo(k)
            )));
        }
        if v.len() > MAX_ATTRIBUTE_VALUE {
            return Err(Status::invalid_argument(format!(
                "The value of attribute {} is {} bytes, over the maximum of {MAX_ATTRIBUTE_VALUE}.",
                crate::model::echo(k),
                v.len()
            )));
        }
    }
    if m.ordering_key.len() > MAX_ORDERING_KEY {
        return Err(Status::invalid_argument(format!(
            "The ordering key is {} bytes, over the maximum of {MAX_ORDERING_KEY}.",
            m.ordering_key.len()
        )));
    }
    let mut attributes: Vec<(String, String)> = m.attributes.into_iter().collect();
    attributes.sort();
    Ok(Event {
        event_type: MESSAGE_TYPE.to_string(),
        key: m.ordering_key,
        data: m.data,
        attributes,
        ..Event::default()
    })
}

/// A delivery as Pub/Sub hands it out: `delivery_attempt` is exact and
/// always set (Pub/Sub sets it only with a dead-letter policy). A dead
/// letter forwarded by Herald also carries Pub/Sub's
/// `CloudPubSubDeadLetterSource*` attributes.
pub fn received(d: &Delivery, default_project: &str) -> ReceivedMessage {
    let e = &d.event.event;
    let us = d.event.publish_time_us;
    let mut attributes: std::collections::HashMap<String, String> =
        e.attributes.iter().cloned().collect();
    dead_letter_source(&mut attributes, default_project);
    ReceivedMessage {
        ack_id: d.ack_id.clone(),
        message: Some(PubsubMessage {
            data: e.data.clone(),
            attributes,
            message_id: e.id.clone(),
            publish_time: Some(timestamp(us)),
            ordering_key: e.key.clone(),
        }),
        delivery_attempt: i32::try_from(d.attempt).unwrap_or(i32::MAX),
    }
}

/// Adds Pub/Sub's names for where a forwarded dead letter came from.
fn dead_letter_source(
    attributes: &mut std::collections::HashMap<String, String>,
    default_project: &str,
) {
    let Some(group) = attributes.get(forward::ATTR_GROUP) else {
        return;
    };
    let (project, subscription) =
        match names::from_herald(Kind::Subscription, group, default_project) {
            Some(r) => (r.project, r.id),
            None => (default_project.to_string(), group.clone()),
        };
    let copied = [
        (
            forward::ATTR_ATTEMPTS,
            "CloudPubSubDeadLetterSourceDeliveryCount",
        ),
        (
            forward::ATTR_PUBLISH_TIME,
            "CloudPubSubDeadLetterSourceTopicPublishTime",
        ),
    ];
    for (ours, theirs) in copied {
        if let Some(v) = attributes.get(ours).cloned() {
            attributes.insert(theirs.to_string(), v);
        }
    }
    attributes.insert(
        "CloudPubSubDeadLetterSourceSubscription".to_string(),
        subscription,
    );
    attributes.insert(
        "CloudPubSubDeadLetterSourceSubscriptionProject".to_string(),
        project,
    );
}

/// A topic as Pub/Sub shows it, under its Pub/Sub `name`.
pub fn topic(name: String, info: &TopicInfo) -> Topic {
    Topic {
        name,
        message_retention_duration: info.record.settings.retention_max_age.map(duration_out),
        labels: info.record.settings.labels.clone().into_iter().collect(),
        state: topic::State::Active.into(),
        ..Topic::default()
    }
}

/// The settings a Pub/Sub topic asks for; what Herald does not store is
/// refused, not dropped.
///
/// # Errors
/// INVALID_ARGUMENT.
pub fn topic_patch(t: &Topic, fields: &[&str]) -> Result<TopicPatch, Status> {
    let mut patch = TopicPatch::default();
    for field in fields {
        match *field {
            "message_retention_duration" => {
                patch.retention_max_age = Some(match &t.message_retention_duration {
                    None => None,
                    Some(d) => Some(retention(d)?),
                });
            }
            "labels" => {
                patch.labels = Some(t.labels.clone().into_iter().collect());
            }
            "kms_key_name" if t.kms_key_name.is_empty() => {}
            "schema_settings" if t.schema_settings.is_none() => {}
            "message_storage_policy" if t.message_storage_policy.is_none() => {}
            "kms_key_name" | "message_storage_policy" => {
                return Err(Status::invalid_argument(format!(
                    "Topic field {field} is not supported by Herald."
                )));
            }
            "ingestion_data_source_settings" if t.ingestion_data_source_settings.is_none() => {}
            "message_transforms" if t.message_transforms.is_empty() => {}
            "tags" if t.tags.is_empty() => {}
            "schema_settings" => return Err(Status::unimplemented(NO_SCHEMAS)),
            "ingestion_data_source_settings" => {
                return Err(Status::unimplemented(
                    "Import topics (ingestion_data_source_settings) are not offered by Herald; \
                     publish to the topic instead.",
                ));
            }
            "message_transforms" => return Err(Status::unimplemented(NO_TRANSFORMS)),
            "tags" => return Err(Status::unimplemented(NO_TAGS)),
            "satisfies_pzs" | "name" | "state" => {}
            other => {
                return Err(Status::invalid_argument(format!(
                    "Invalid update_mask provided in the UpdateTopicRequest: {} is not a known Topic field.",
                    crate::model::echo(other)
                )));
            }
        }
    }
    Ok(patch)
}

/// The paths of an update request's field mask, which must name some.
///
/// # Errors
/// INVALID_ARGUMENT for a missing or empty mask.
pub fn mask_fields<'a>(
    mask: Option<&'a prost_types::FieldMask>,
    request: &str,
) -> Result<Vec<&'a str>, Status> {
    let fields: Vec<&str> = mask
        .map(|m| m.paths.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if fields.is_empty() {
        return Err(Status::invalid_argument(format!(
            "The update_mask in the {request} must be set."
        )));
    }
    Ok(fields)
}

/// Every settable field of a topic, for CreateTopic.
pub const TOPIC_FIELDS: &[&str] = &[
    "message_retention_duration",
    "labels",
    "kms_key_name",
    "schema_settings",
    "message_storage_policy",
    "ingestion_data_source_settings",
    "message_transforms",
    "tags",
];

/// Why a schema on a topic is refused.
const NO_SCHEMAS: &str =
    "Schemas (schema_settings) are not offered by Herald; validate messages in the publisher.";
/// Why message transforms on a topic or subscription are refused.
pub const NO_TRANSFORMS: &str =
    "Message transforms (message_transforms) are not offered by Herald; transform in the client.";
/// Why resource tags are refused.
pub const NO_TAGS: &str = "Resource manager tags (tags) are not offered by Herald; use labels.";

fn retention(d: &prost_types::Duration) -> Result<Duration, Status> {
    let d = duration_in(d).filter(|d| (MIN_RETENTION..=MAX_RETENTION).contains(d));
    d.ok_or_else(|| {
        Status::invalid_argument(
            "Invalid message_retention_duration: it must be between 10 minutes and 31 days.",
        )
    })
}

/// A protobuf Duration, `None` when negative or malformed (the caller
/// words Pub/Sub's error).
pub(crate) fn duration_in(d: &prost_types::Duration) -> Option<Duration> {
    from_duration("", d).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(data: &'static [u8], attrs: &[(&str, &str)]) -> PubsubMessage {
        PubsubMessage {
            data: Bytes::from_static(data),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PubsubMessage::default()
        }
    }

    #[test]
    fn a_message_becomes_an_event() {
        let mut m = message(b"hi", &[("b", "2"), ("a", "1")]);
        m.ordering_key = "user-7".into();
        let e = &events(vec![m]).unwrap()[0];
        assert_eq!(e.event_type, MESSAGE_TYPE);
        assert_eq!(e.key, "user-7");
        assert_eq!(&e.data[..], b"hi");
        assert_eq!(
            e.attributes,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert!(e.id.is_empty(), "the server assigns message ids");
    }

    #[test]
    fn pubsub_request_limits_are_enforced() {
        assert!(events(vec![]).is_err());
        assert!(events(vec![message(b"", &[])]).is_err(), "empty message");
        assert!(
            events(vec![message(b"", &[("k", "")])]).is_ok(),
            "an attribute suffices"
        );
        assert!(events(vec![message(b"x", &[("googx", "1")])]).is_err());
        let long = "v".repeat(MAX_ATTRIBUTE_VALUE + 1);
        assert!(events(vec![message(b"x", &[("k", &long)])]).is_err());
        let many = vec![message(b"x", &[]); MAX_MESSAGES + 1];
        assert_eq!(
            events(many).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn retention_is_bounded_and_unsupported_fields_are_refused() {
        let retained = |seconds| Topic {
            message_retention_duration: Some(prost_types::Duration { seconds, nanos: 0 }),
            ..Topic::default()
        };
        let patch = topic_patch(&retained(3600), TOPIC_FIELDS).unwrap();
        assert_eq!(
            patch.retention_max_age,
            Some(Some(Duration::from_secs(3600)))
        );
        assert!(topic_patch(&retained(60), TOPIC_FIELDS).is_err());
        let keyed = Topic {
            kms_key_name: "projects/p/locations/l/keyRings/r/cryptoKeys/k".into(),
            ..Topic::default()
        };
        assert!(topic_patch(&keyed, TOPIC_FIELDS).is_err());
        assert!(topic_patch(&Topic::default(), &["nope"]).is_err());
    }
}
