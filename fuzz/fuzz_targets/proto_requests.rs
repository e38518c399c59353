//! Proto → domain conversion of every request message: arbitrary bytes
//! decoded as each request type (what tonic hands a handler) go through
//! the handler's authorization lookup and conversion step; the result is a
//! value or INVALID_ARGUMENT, never another code and never a panic.
#![no_main]

use herald::grpc::guard::Guarded;
use herald::grpc::requests;
use herald::proto::*;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::{Code, Status};

/// Decodes `bytes` as `M` (undecodable bytes are tonic's to refuse) and
/// runs the table lookup and `convert` on it.
fn check<M, T>(bytes: &[u8], convert: impl FnOnce(M) -> Result<T, Status>)
where
    M: Message + Default + Guarded,
{
    let Ok(message) = M::decode(bytes) else {
        return;
    };
    let _ = message.target();
    if let Err(status) = convert(message) {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        // Messages travel in HTTP/2 headers: they must stay short.
        assert!(status.message().len() < 2048, "{} bytes", status.message().len());
    }
}

fn none<M>(_: M) -> Result<(), Status> {
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 23 {
        0 => check(bytes, |r: PublishRequest| requests::events(r.events)),
        1 => check(bytes, |r: PublishStreamRequest| requests::events(r.events)),
        2 => check(bytes, none::<SubscribeRequest>),
        3 => check(bytes, none::<AckRequest>),
        4 => check(bytes, |r: NackRequest| requests::nack_delay(&r)),
        5 => check(bytes, |r: ExtendDeadlineRequest| requests::extension(&r)),
        6 => check(bytes, requests::read),
        7 => check(bytes, |r: CreateTopicRequest| requests::topic(r.topic)),
        8 => check(bytes, none::<GetTopicRequest>),
        9 => check(bytes, |r: ListTopicsRequest| requests::list_topics(&r)),
        10 => check(bytes, |r: UpdateTopicRequest| requests::topic(r.topic)),
        11 => check(bytes, none::<DeleteTopicRequest>),
        12 => check(bytes, |r: CreateGroupRequest| requests::create_group(r.group)),
        13 => check(bytes, none::<GetGroupRequest>),
        14 => check(bytes, |r: ListGroupsRequest| requests::list_groups(&r)),
        15 => check(bytes, |r: UpdateGroupRequest| requests::update_group(r.group)),
        16 => check(bytes, none::<DeleteGroupRequest>),
        17 => check(bytes, |r: SeekRequest| requests::seek(&r)),
        18 => check(bytes, none::<GetServerInfoRequest>),
        19 => check(bytes, |r: ListDeadLettersRequest| requests::list_dead_letters(&r)),
        20 => check(bytes, |r: ReplayDeadLettersRequest| requests::replay(&r)),
        21 => check(bytes, |r: PurgeDeadLettersRequest| requests::purge(&r)),
        _ => check(bytes, requests::consume),
    }
});
