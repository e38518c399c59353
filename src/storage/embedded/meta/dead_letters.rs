//! Stored form of dead letters: what a group gave up on, with a copy of the
//! event so it outlives retention.
//!
//! Storage layer. A record is `"HDL" 0x02 | u32 header length | header JSON |
//! event record`, where the header holds the failure details and the event
//! type (so listing by type needs no decoding of the event), and the event
//! record is the log's own CRC-checked framing. Release 0.1 wrote
//! `u32 header length | header JSON | event record` with a `replaying` flag
//! in the header; such records are still read (the flag now lives in the
//! group's entry rows, and the store migrates it on open).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::log::{decode_event, encode_event};
use crate::model::results::DeadLetter;
use crate::storage::StorageError;

const MAGIC: &[u8; 4] = b"HDL\x02";

/// What listing and counting need of a record, read without the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSummary {
    /// Record id.
    pub id: u64,
    /// The event's type.
    pub event_type: String,
    /// When it was dead-lettered, µs since the epoch.
    pub dead_letter_us: i64,
    /// Release 0.1 records only: the record was being replayed.
    pub legacy_replaying: bool,
}

#[derive(Serialize, Deserialize)]
struct Header {
    attempts: u32,
    last_reason: String,
    first_failure_us: i64,
    last_failure_us: i64,
    dead_letter_us: i64,
    /// Absent in release 0.1 records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_type: Option<String>,
    /// Release 0.1 only.
    #[serde(default, skip_serializing)]
    replaying: bool,
}

impl DeadLetter {
    /// Stored form.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            attempts: self.attempts,
            last_reason: self.last_reason.clone(),
            first_failure_us: self.first_failure_us,
            last_failure_us: self.last_failure_us,
            dead_letter_us: self.dead_letter_us,
            event_type: Some(self.event.event.event_type.clone()),
            replaying: false,
        };
        // A struct of plain fields always serialises.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let event = encode_event(&self.event);
        let mut out = Vec::with_capacity(8 + header.len() + event.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&event);
        out
    }

    /// Parses a stored record (current or release 0.1).
    ///
    /// # Errors
    /// `Meta` naming the record when it is damaged.
    pub fn decode(id: u64, bytes: &[u8]) -> Result<DeadLetter, StorageError> {
        let (header, event) = split(id, bytes)?;
        let event = decode_event(event).map_err(|e| bad(id, &e.to_string()))?;
        Ok(DeadLetter {
            id,
            event: Arc::new(event),
            attempts: header.attempts,
            last_reason: header.last_reason,
            first_failure_us: header.first_failure_us,
            last_failure_us: header.last_failure_us,
            dead_letter_us: header.dead_letter_us,
        })
    }
}

impl DeadLetterSummary {
    /// Reads the summary of a stored record; decodes the event only for
    /// release 0.1 records, whose header lacks the type.
    ///
    /// # Errors
    /// As [`DeadLetter::decode`].
    pub fn decode(id: u64, bytes: &[u8]) -> Result<DeadLetterSummary, StorageError> {
        let (header, event) = split(id, bytes)?;
        let event_type = match header.event_type {
            Some(t) => t,
            None => {
                decode_event(event)
                    .map_err(|e| bad(id, &e.to_string()))?
                    .event
                    .event_type
            }
        };
        Ok(DeadLetterSummary {
            id,
            event_type,
            dead_letter_us: header.dead_letter_us,
            legacy_replaying: header.replaying,
        })
    }
}

/// The header and the event bytes of a record.
fn split(id: u64, bytes: &[u8]) -> Result<(Header, &[u8]), StorageError> {
    let body = bytes.strip_prefix(MAGIC.as_slice()).unwrap_or(bytes);
    let len = body
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad(id, "too short"))?;
    let header = body
        .get(4..4usize.saturating_add(len))
        .ok_or_else(|| bad(id, "header cut"))?;
    let header: Header = serde_json::from_slice(header).map_err(|e| bad(id, &e.to_string()))?;
    Ok((header, &body[4 + len..]))
}

fn bad(id: u64, why: &str) -> StorageError {
    StorageError::Corrupt {
        path: std::path::PathBuf::from("meta.redb"),
        reason: format!("dead letter {id} is unreadable: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, StoredEvent};

    fn sample() -> DeadLetter {
        DeadLetter {
            id: 3,
            event: Arc::new(StoredEvent {
                offset: 9,
                publish_time_us: 5,
                event: Event {
                    id: "e".into(),
                    event_type: "Order.Placed".into(),
                    data: bytes::Bytes::from_static(b"{}"),
                    ..Event::default()
                },
            }),
            attempts: 4,
            last_reason: "boom".into(),
            first_failure_us: 1,
            last_failure_us: 2,
            dead_letter_us: 3,
        }
    }

    #[test]
    fn round_trip_and_summary_without_the_event() {
        let dl = sample();
        let bytes = dl.encode();
        assert_eq!(DeadLetter::decode(3, &bytes).unwrap(), dl);
        let s = DeadLetterSummary::decode(3, &bytes).unwrap();
        assert_eq!(
            (s.event_type.as_str(), s.dead_letter_us),
            ("Order.Placed", 3)
        );
        assert!(!s.legacy_replaying);
        for cut in [0, 3, 7, 20, bytes.len() - 1] {
            assert!(
                DeadLetter::decode(3, &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn release_0_1_records_are_read() {
        let dl = sample();
        let header = br#"{"attempts":4,"last_reason":"boom","first_failure_us":1,"last_failure_us":2,"dead_letter_us":3,"replaying":true}"#;
        let mut bytes = (header.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&encode_event(&dl.event));
        assert_eq!(DeadLetter::decode(3, &bytes).unwrap(), dl);
        let s = DeadLetterSummary::decode(3, &bytes).unwrap();
        assert!(s.legacy_replaying);
        assert_eq!(s.event_type, "Order.Placed");
    }
}
