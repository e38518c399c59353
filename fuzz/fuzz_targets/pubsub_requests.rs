//! The Pub/Sub front door's decoding of request messages: arbitrary bytes
//! decoded as Publisher requests and Subscriptions go through name parsing
//! and the message, topic and subscription conversion (subscription filters
//! included, and arbitrary filter text); the result is a value or INVALID_ARGUMENT
//! with a short message, never a panic. Herald names that map back to a
//! Pub/Sub resource map to exactly that name again.
#![no_main]

use herald::proto::google::pubsub::v1::*;
use herald::pubsub::convert::{self, TOPIC_FIELDS};
use herald::pubsub::filter;
use herald::pubsub::names::{self, Kind};
use herald::pubsub::subscriptions::{SUBSCRIPTION_FIELDS, group_patch};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::{Code, Status};

const PROJECT: &str = "herald";

fn name(kind: Kind, s: &str) -> Result<(), Status> {
    names::parse(kind, s, PROJECT)
        .map(|_| ())
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn check<M: Message + Default>(bytes: &[u8], convert: impl FnOnce(M) -> Result<(), Status>) {
    let Ok(message) = M::decode(bytes) else {
        return;
    };
    if let Err(status) = convert(message) {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().len() < 2048, "{} bytes", status.message().len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 9 {
        0 => check(bytes, |t: Topic| {
            name(Kind::Topic, &t.name)?;
            convert::topic_patch(&t, TOPIC_FIELDS).map(|_| ())
        }),
        1 => check(bytes, |r: UpdateTopicRequest| {
            let topic = r.topic.unwrap_or_default();
            name(Kind::Topic, &topic.name)?;
            let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
            let fields: Vec<&str> = paths.iter().map(String::as_str).collect();
            convert::topic_patch(&topic, &fields).map(|_| ())
        }),
        2 => check(bytes, |r: PublishRequest| {
            name(Kind::Topic, &r.topic)?;
            convert::events(r.messages).map(|_| ())
        }),
        3 => check(bytes, |r: GetTopicRequest| name(Kind::Topic, &r.topic)),
        4 => check(bytes, |r: ListTopicsRequest| {
            names::parse_project(&r.project)
                .map(|_| ())
                .map_err(|e| Status::invalid_argument(e.to_string()))
        }),
        5 => check(bytes, |r: DetachSubscriptionRequest| {
            name(Kind::Subscription, &r.subscription)
        }),
        6 => check(bytes, |s: Subscription| {
            name(Kind::Subscription, &s.name)?;
            name(Kind::Topic, &s.topic)?;
            group_patch(&s, SUBSCRIPTION_FIELDS, None, "fuzz").map(|_| ())
        }),
        7 => {
            // A filter: parsed or refused; a parsed one evaluates.
            let Ok(text) = std::str::from_utf8(bytes) else {
                return;
            };
            match filter::parse(text) {
                Ok(Some(f)) => {
                    let attributes = [("k".to_string(), "v".to_string())];
                    let _ = f.matches(&attributes);
                }
                Ok(None) => {}
                Err(e) => assert!(e.len() < 2048, "{} bytes", e.len()),
            }
        }
        _ => {
            // A Herald name: if it stands for a resource, that resource's
            // Herald name is this name again (the mapping is a bijection).
            let Ok(herald) = std::str::from_utf8(bytes) else {
                return;
            };
            if let Some(r) = names::from_herald(Kind::Topic, herald, PROJECT) {
                assert_eq!(names::to_herald(&r, PROJECT), herald, "{r}");
                let parsed = names::parse(Kind::Topic, &r.to_string(), PROJECT);
                assert!(parsed.is_ok() || herald.len() > 249, "{r}: {parsed:?}");
            }
        }
    }
});
