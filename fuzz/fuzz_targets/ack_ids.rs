//! Ack ids, as Ack, Nack and ExtendDeadline receive them: any string
//! either verifies under the deployment's key or is refused, never a panic;
//! what verifies re-encodes to an id naming the same delivery; any lease
//! round-trips; and an id changed in its group, entry or lease number, or
//! checked under another key, does not verify.
#![no_main]

use herald::broker::lease::AckIds;
use herald::storage::backend::LeaseRef;
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    key: [u8; 16],
    other_key: [u8; 16],
    text: String,
    group: u64,
    entry: u64,
    lease: u64,
}

fuzz_target!(|input: Input| {
    let ids = AckIds::new(input.key);
    // Arbitrary text: refused (`parse` names the field) or a delivery.
    match ids.parse("ack_ids[0]", &input.text) {
        Ok(lease) => {
            let again = ids.encode(&lease);
            assert_eq!(ids.decode(&again), Some(lease), "{:?}", input.text);
        }
        Err(e) => assert!(e.to_string().starts_with("ack_ids[0]: "), "{e}"),
    }
    // A genuine id round-trips, fits the documented size, and verifies
    // under its own key only.
    let lease = LeaseRef {
        group: input.group,
        key: input.entry,
        lease: input.lease,
    };
    let text = ids.encode(&lease);
    assert!(text.len() <= 68 && text.is_ascii(), "{text}");
    assert_eq!(ids.decode(&text), Some(lease));
    if input.other_key != input.key {
        // A 64-bit tag: a match would need a 2^-64 coincidence.
        assert_eq!(AckIds::new(input.other_key).decode(&text), None);
    }
    // The tag of one delivery does not verify another: swapping in another
    // group (the cross-group forgery), entry or lease number fails.
    let tag = &text[text.rfind('-').expect("four fields")..];
    for forged in [
        LeaseRef {
            group: lease.group.wrapping_add(1),
            ..lease
        },
        LeaseRef {
            key: lease.key ^ 1,
            ..lease
        },
        LeaseRef {
            lease: lease.lease.wrapping_sub(1),
            ..lease
        },
    ] {
        let fake = format!(
            "{:x}-{:x}-{:x}{tag}",
            forged.group, forged.key, forged.lease
        );
        assert_eq!(ids.decode(&fake), None, "{fake}");
    }
});
