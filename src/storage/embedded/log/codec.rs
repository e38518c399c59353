//! On-disk record format of the event log: framing and payload codec.
//!
//! A record is `[u32 LE payload_len][u32 LE crc32c(payload)][payload]`. The
//! payload is, all integers little-endian:
//!
//! ```text
//! offset u64 | publish_time_us i64 | time_us i64
//! id | event_type | source | key | content_type | schema_version   (u32 len + UTF-8 each)
//! attribute count u32 | (key, value) pairs                         (u32 len + UTF-8 each)
//! data len u32 | data bytes
//! ```
//!
//! Decoding is total: any byte string gives `Ok` or a precise error, never a
//! panic, and no allocation is sized by a length that was not first checked
//! against the bytes actually present.

use std::ops::Range;

use bytes::Bytes;

use crate::event::{Event, StoredEvent};

/// Bytes of the frame header: payload length and CRC32C.
pub const HEADER_LEN: usize = 8;

/// Largest payload the log writes or accepts when reading. Guards against
/// garbage lengths in a damaged file; appends of larger events are refused.
pub const MAX_PAYLOAD_LEN: usize = 64 << 20;

/// Payload bytes that do not depend on the event's content: offset, two
/// timestamps, six string lengths, the attribute count and the data length.
const FIXED_PAYLOAD_LEN: usize = 8 + 8 + 8 + 6 * 4 + 4 + 4;

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A field needs more bytes than remain in the payload.
    #[error("{field} needs {needed} bytes but only {remaining} remain")]
    Truncated {
        field: &'static str,
        needed: usize,
        remaining: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    /// The attribute count cannot fit in the remaining bytes.
    #[error("attribute count {count} cannot fit in the {remaining} remaining bytes")]
    TooManyAttributes { count: usize, remaining: usize },
    /// Bytes are left over after the data field.
    #[error("{count} unexpected bytes after the data field")]
    TrailingBytes { count: usize },
}

/// Why the bytes at a record boundary are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field exceeds [`MAX_PAYLOAD_LEN`].
    #[error("payload length {len} exceeds the {MAX_PAYLOAD_LEN}-byte maximum")]
    LengthTooLarge { len: u64 },
    /// The payload does not match its checksum.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
}

/// What [`parse_frame`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete record with a valid checksum; the payload is
    /// `buf[HEADER_LEN..total_len]`.
    Complete { total_len: usize },
    /// The buffer ends before the record does. `total_len` is the full
    /// record size once the header is readable.
    Incomplete { total_len: Option<usize> },
}

/// Payload size of `event` once encoded.
pub fn payload_len(event: &Event) -> usize {
    FIXED_PAYLOAD_LEN
        + event.id.len()
        + event.event_type.len()
        + event.source.len()
        + event.key.len()
        + event.content_type.len()
        + event.schema_version.len()
        + event
            .attributes
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>()
        + event.data.len()
}

/// Appends the framed record of `event` at `offset` to `buf`.
///
/// The caller must have checked `payload_len(event) <= MAX_PAYLOAD_LEN`
/// (`TopicLog::append` does); that bound is what makes every `as u32` below
/// lossless.
pub fn encode_record(buf: &mut Vec<u8>, offset: u64, publish_time_us: i64, event: &Event) {
    let len = payload_len(event);
    debug_assert!(len <= MAX_PAYLOAD_LEN);
    buf.reserve(HEADER_LEN + len);
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&publish_time_us.to_le_bytes());
    buf.extend_from_slice(&event.time_us.to_le_bytes());
    for field in [
        &event.id,
        &event.event_type,
        &event.source,
        &event.key,
        &event.content_type,
        &event.schema_version,
    ] {
        put_bytes(buf, field.as_bytes());
    }
    buf.extend_from_slice(&(event.attributes.len() as u32).to_le_bytes());
    for (k, v) in &event.attributes {
        put_bytes(buf, k.as_bytes());
        put_bytes(buf, v.as_bytes());
    }
    put_bytes(buf, &event.data);
    let payload = &buf[start + HEADER_LEN..];
    let crc = crc32c::crc32c(payload);
    let payload_len = payload.len() as u32;
    buf[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Checks the frame at the start of `buf`: header, length bound and CRC.
///
/// # Errors
/// [`FrameError`] when the length is impossible or the checksum is wrong.
pub fn parse_frame(buf: &[u8]) -> Result<Frame, FrameError> {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Ok(Frame::Incomplete { total_len: None });
    };
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    let stored = u32::from_le_bytes([c0, c1, c2, c3]);
    let len = len as usize;
    if len > MAX_PAYLOAD_LEN {
        return Err(FrameError::LengthTooLarge { len: len as u64 });
    }
    let Some(payload) = rest.get(..len) else {
        return Ok(Frame::Incomplete {
            total_len: Some(HEADER_LEN + len),
        });
    };
    let computed = crc32c::crc32c(payload);
    if computed != stored {
        return Err(FrameError::CrcMismatch { stored, computed });
    }
    Ok(Frame::Complete {
        total_len: HEADER_LEN + len,
    })
}

/// Reads just the offset and publish time at the front of a payload.
///
/// # Errors
/// [`DecodeError::Truncated`] when the payload is shorter than 16 bytes.
pub fn peek_header(payload: &[u8]) -> Result<(u64, i64), DecodeError> {
    let mut cursor = Cursor {
        buf: payload,
        pos: 0,
    };
    Ok((cursor.u64("offset")?, cursor.i64("publish_time_us")?))
}

/// Reads the offset, the publish time and the id at the front of a payload
/// without decoding the rest (the dedup index is rebuilt from these).
///
/// # Errors
/// [`DecodeError`] when those fields do not fit or the id is not UTF-8.
pub fn peek_id(payload: &[u8]) -> Result<(u64, i64, &str), DecodeError> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let offset = c.u64("offset")?;
    let publish_time_us = c.i64("publish_time_us")?;
    c.i64("time_us")?;
    let range = c.length_prefixed("id")?;
    let id = std::str::from_utf8(&payload[range])
        .map_err(|_| DecodeError::InvalidUtf8 { field: "id" })?;
    Ok((offset, publish_time_us, id))
}

/// Decodes a payload. `data` is a zero-copy slice of `payload`.
///
/// # Errors
/// A [`DecodeError`] naming the first field that does not fit or is invalid.
pub fn decode_payload(payload: &Bytes) -> Result<StoredEvent, DecodeError> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let offset = c.u64("offset")?;
    let publish_time_us = c.i64("publish_time_us")?;
    let time_us = c.i64("time_us")?;
    let id = c.string("id")?;
    let event_type = c.string("event_type")?;
    let source = c.string("source")?;
    let key = c.string("key")?;
    let content_type = c.string("content_type")?;
    let schema_version = c.string("schema_version")?;
    let count = c.u32("attribute count")? as usize;
    // Each pair takes at least its two length prefixes, so this bounds the
    // allocation by bytes actually present.
    if count > c.remaining() / 8 {
        return Err(DecodeError::TooManyAttributes {
            count,
            remaining: c.remaining(),
        });
    }
    let mut attributes = Vec::with_capacity(count);
    for _ in 0..count {
        let k = c.string("attribute key")?;
        let v = c.string("attribute value")?;
        attributes.push((k, v));
    }
    let data = payload.slice(c.length_prefixed("data")?);
    if c.remaining() > 0 {
        return Err(DecodeError::TrailingBytes {
            count: c.remaining(),
        });
    }
    Ok(StoredEvent {
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
            data,
            attributes,
        },
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<Range<usize>, DecodeError> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(DecodeError::Truncated {
                field,
                needed: n,
                remaining,
            });
        }
        let range = self.pos..self.pos + n;
        self.pos += n;
        Ok(range)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let range = self.take(N, field)?;
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[range]);
        Ok(out)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.array(field).map(i64::from_le_bytes)
    }

    fn length_prefixed(&mut self, field: &'static str) -> Result<Range<usize>, DecodeError> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let range = self.length_prefixed(field)?;
        std::str::from_utf8(&self.buf[range])
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8 { field })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Event {
        Event {
            id: "0192f0c4-7d1e-7000-8000-000000000001".into(),
            event_type: "OrderPlaced".into(),
            source: "orders".into(),
            key: "order-42".into(),
            time_us: 1_700_000_000_000_000,
            content_type: "application/json".into(),
            schema_version: "v3".into(),
            data: Bytes::from_static(br#"{"total":12.5,"currency":"EUR"}"#),
            attributes: vec![
                ("traceparent".into(), "00-abc-def-01".into()),
                ("zone".into(), "eu-west-1".into()),
            ],
        }
    }

    fn encode(offset: u64, publish: i64, event: &Event) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_record(&mut buf, offset, publish, event);
        buf
    }

    #[test]
    fn round_trips_one_record() {
        let event = sample();
        let buf = encode(7, 123, &event);
        assert_eq!(buf.len(), HEADER_LEN + payload_len(&event));
        let Ok(Frame::Complete { total_len }) = parse_frame(&buf) else {
            panic!("frame should be complete");
        };
        assert_eq!(total_len, buf.len());
        let payload = Bytes::from(buf).slice(HEADER_LEN..);
        assert_eq!(peek_header(&payload), Ok((7, 123)));
        assert_eq!(peek_id(&payload), Ok((7, 123, event.id.as_str())));
        assert!(peek_id(&payload[..30]).is_err());
        let stored = decode_payload(&payload).unwrap();
        assert_eq!(stored.offset, 7);
        assert_eq!(stored.publish_time_us, 123);
        assert_eq!(stored.event, event);
        // Zero-copy: the data points into the payload buffer.
        let data_ptr = stored.event.data.as_ptr() as usize;
        let base = payload.as_ptr() as usize;
        assert!(data_ptr >= base && data_ptr < base + payload.len());
    }

    #[test]
    fn frame_reports_missing_bytes_and_damage() {
        let buf = encode(1, 2, &sample());
        assert_eq!(
            parse_frame(&buf[..5]),
            Ok(Frame::Incomplete { total_len: None })
        );
        assert_eq!(
            parse_frame(&buf[..buf.len() - 1]),
            Ok(Frame::Incomplete {
                total_len: Some(buf.len())
            })
        );
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(
            parse_frame(&flipped),
            Err(FrameError::CrcMismatch { .. })
        ));
        let mut huge = buf;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_frame(&huge),
            Err(FrameError::LengthTooLarge {
                len: u64::from(u32::MAX)
            })
        );
    }

    #[test]
    fn decode_names_the_failing_field() {
        let buf = encode(1, 2, &sample());
        let payload = Bytes::from(buf).slice(HEADER_LEN..);
        let cut = payload.slice(..payload.len() - 3);
        assert!(matches!(
            decode_payload(&cut),
            Err(DecodeError::Truncated { field: "data", .. })
        ));
        let mut extra = payload.to_vec();
        extra.push(0);
        assert_eq!(
            decode_payload(&Bytes::from(extra)),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        // Invalid UTF-8 in the id (first byte after the id length prefix).
        let mut bad = payload.to_vec();
        bad[24 + 4] = 0xff;
        assert_eq!(
            decode_payload(&Bytes::from(bad)),
            Err(DecodeError::InvalidUtf8 { field: "id" })
        );
        // A huge attribute count must be rejected, not allocated.
        let event = Event::default();
        let mut small = encode(0, 0, &event)[HEADER_LEN..].to_vec();
        let count_at = FIXED_PAYLOAD_LEN - 8;
        small[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_payload(&Bytes::from(small)),
            Err(DecodeError::TooManyAttributes { .. })
        ));
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            (".*", ".*", ".*", ".*", any::<i64>(), ".{0,20}", ".{0,8}"),
            proptest::collection::vec(any::<u8>(), 0..512),
            proptest::collection::vec((".{0,12}", ".{0,24}"), 0..5),
        )
            .prop_map(
                |(
                    (id, event_type, source, key, time_us, content_type, schema_version),
                    data,
                    attributes,
                )| {
                    Event {
                        id,
                        event_type,
                        source,
                        key,
                        time_us,
                        content_type,
                        schema_version,
                        data: Bytes::from(data),
                        attributes,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_events_round_trip(
            event in arb_event(),
            offset in any::<u64>(),
            publish in any::<i64>(),
        ) {
            let buf = encode(offset, publish, &event);
            prop_assert_eq!(parse_frame(&buf), Ok(Frame::Complete { total_len: buf.len() }));
            let stored = decode_payload(&Bytes::from(buf).slice(HEADER_LEN..)).unwrap();
            prop_assert_eq!(stored.offset, offset);
            prop_assert_eq!(stored.publish_time_us, publish);
            prop_assert_eq!(stored.event, event);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_frame(&bytes);
            let _ = peek_header(&bytes);
            let _ = decode_payload(&Bytes::from(bytes));
        }

        #[test]
        fn mutated_records_never_panic(
            event in arb_event(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            // Mutations of a valid payload reach deeper decoder paths than
            // uniform random bytes do.
            let mut payload = encode(3, 4, &event)[HEADER_LEN..].to_vec();
            for (at, byte) in flips {
                let i = at.index(payload.len());
                payload[i] ^= byte;
            }
            let _ = decode_payload(&Bytes::from(payload));
        }
    }
}
