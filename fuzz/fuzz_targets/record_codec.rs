//! The log's record codec (frame, CRC32C, payload): bytes from disk or a
//! dead-letter copy decode to an event or an error, never a panic, and the
//! encoding is canonical (what decodes re-encodes to the same bytes); any
//! event round-trips.
#![no_main]

use herald::event::{Event, StoredEvent};
use herald::storage::embedded::log::{decode_event, encode_event};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
enum Input<'a> {
    Bytes(&'a [u8]),
    Event {
        offset: u64,
        publish_time_us: i64,
        time_us: i64,
        strings: [String; 6],
        data: Vec<u8>,
        attributes: Vec<(String, String)>,
    },
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Bytes(data) => {
        if let Ok(event) = decode_event(data) {
            assert_eq!(encode_event(&event), data, "decoded {event:?}");
        }
    }
    Input::Event {
        offset,
        publish_time_us,
        time_us,
        strings,
        data,
        attributes,
    } => {
        let [id, event_type, source, key, content_type, schema_version] = strings;
        let stored = StoredEvent {
            offset,
            publish_time_us,
            event: Event {
                id,
                event_type,
                source,
                key,
                time_us,
                content_type,
                schema_version,
                data: data.into(),
                attributes,
            },
        };
        let bytes = encode_event(&stored);
        assert_eq!(decode_event(&bytes).expect("an encoded event decodes"), stored);
    }
});
