//! Stored form of consumer-group progress: a small header per group plus one
//! row per pending entry, so a flush writes what changed and nothing else.
//!
//! Storage layer. Formats (all integers little-endian):
//!
//! ```text
//! header (group_state table):  "HGS" 0x02 | generation u64 | floor u64 | cursor u64 | reserved u64
//! entry  (group_entries table): 0x01 | attempts u32 | has_due u8 | due_us i64 | first_failure_us i64 | reason UTF-8
//! ```
//!
//! A header that starts with `{` is the JSON snapshot of release 0.1 (the
//! whole pending list in one value); [`legacy`] reads it so the store can
//! migrate it on open. Anything else is refused with a message naming the
//! version found.

use serde::Deserialize;

use crate::storage::StorageError;

const HEADER_MAGIC: &[u8; 4] = b"HGS\x02";
const HEADER_LEN: usize = 4 + 8 * 4;
const ENTRY_VERSION: u8 = 1;
const ENTRY_FIXED: usize = 1 + 4 + 1 + 8 + 8;

/// Where a group stands, without its pending entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateHeader {
    /// Chosen when the group is created; writes for another generation (a
    /// deleted group of the same name) are ignored.
    pub generation: u64,
    /// Every offset below is done (informational; recomputed on load).
    pub floor: u64,
    /// Offsets from here on are re-read from the log on load; those below
    /// are done unless they have an entry row.
    pub cursor: u64,
    /// Offsets below this may have been handed out once without an entry
    /// row of their own (first deliveries are reserved in bulk).
    pub reserved: u64,
}

/// One pending entry of a group: an offset, or a replayed dead letter
/// (`REPLAY_BIT | id`, see the broker's dispatcher).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredEntry {
    /// Offset or replay key.
    pub key: u64,
    /// Deliveries made, or reserved: a retry that may be handed out before
    /// the next write is already counted.
    pub attempts: u32,
    /// Wall-clock time of the next retry (µs since the epoch), if waiting.
    pub due_us: Option<i64>,
    /// First failure, µs since the epoch; 0 if none.
    pub first_failure_us: i64,
    /// Why the last attempt failed.
    pub last_reason: String,
}

/// What a flush changes for one group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateDelta {
    /// The new header.
    pub header: StateHeader,
    /// Entry rows to delete (applied first).
    pub deletes: Vec<u64>,
    /// Entry rows to create or replace.
    pub upserts: Vec<StoredEntry>,
}

/// A group's stored progress as loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupState {
    /// The header.
    pub header: StateHeader,
    /// Every entry row, by key.
    pub entries: Vec<StoredEntry>,
}

impl StateHeader {
    /// Stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(HEADER_MAGIC);
        for v in [self.generation, self.floor, self.cursor, self.reserved] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parses the stored form.
    ///
    /// # Errors
    /// `Corrupt` for anything that is not a current header.
    pub fn decode(bytes: &[u8]) -> Result<StateHeader, StorageError> {
        if bytes.len() != HEADER_LEN || &bytes[..4] != HEADER_MAGIC {
            return Err(corrupt(format!(
                "group state header of {} bytes with version tag {:?} is not a format this release reads",
                bytes.len(),
                bytes.get(..4).unwrap_or(bytes)
            )));
        }
        let u = |i: usize| le_u64(bytes, 4 + 8 * i);
        Ok(StateHeader {
            generation: u(0),
            floor: u(1),
            cursor: u(2),
            reserved: u(3),
        })
    }
}

impl StoredEntry {
    /// Stored form (the key is the row's key, not part of the value).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_FIXED + self.last_reason.len());
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.attempts.to_le_bytes());
        out.push(u8::from(self.due_us.is_some()));
        out.extend_from_slice(&self.due_us.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.first_failure_us.to_le_bytes());
        out.extend_from_slice(self.last_reason.as_bytes());
        out
    }

    /// Parses the stored form of the row `key`.
    ///
    /// # Errors
    /// `Corrupt` when the bytes are not a version-1 entry.
    pub fn decode(key: u64, bytes: &[u8]) -> Result<StoredEntry, StorageError> {
        if bytes.len() < ENTRY_FIXED || bytes[0] != ENTRY_VERSION {
            return Err(corrupt(format!(
                "group entry {key} ({} bytes, version {:?}) is not a format this release reads",
                bytes.len(),
                bytes.first()
            )));
        }
        let i64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            i64::from_le_bytes(b)
        };
        let mut attempts = [0u8; 4];
        attempts.copy_from_slice(&bytes[1..5]);
        let last_reason = std::str::from_utf8(&bytes[ENTRY_FIXED..])
            .map_err(|_| corrupt(format!("group entry {key}: reason is not UTF-8")))?
            .to_string();
        Ok(StoredEntry {
            key,
            attempts: u32::from_le_bytes(attempts),
            due_us: (bytes[5] != 0).then(|| i64_at(6)),
            first_failure_us: i64_at(14),
            last_reason,
        })
    }
}

/// The JSON snapshot of release 0.1.
#[derive(Deserialize)]
struct LegacySnapshot {
    floor: u64,
    cursor: u64,
    #[serde(default)]
    pending: Vec<LegacyEntry>,
}

#[derive(Deserialize)]
struct LegacyEntry {
    k: u64,
    a: u32,
    #[serde(default)]
    d: Option<i64>,
    #[serde(default)]
    f: i64,
    #[serde(default)]
    r: String,
}

/// True when `bytes` is a release 0.1 snapshot rather than a header.
pub fn is_legacy(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'{')
}

/// Reads a release 0.1 snapshot (JSON with the whole pending list) as a
/// group state with the given generation.
///
/// # Errors
/// `Corrupt` when the JSON does not parse.
pub fn legacy(bytes: &[u8], generation: u64) -> Result<GroupState, StorageError> {
    let s: LegacySnapshot = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(format!("release 0.1 group snapshot is unreadable: {e}")))?;
    Ok(GroupState {
        header: StateHeader {
            generation,
            floor: s.floor,
            cursor: s.cursor,
            // 0.1 did not reserve first deliveries; its shutdown was exact.
            reserved: s.cursor,
        },
        entries: s
            .pending
            .into_iter()
            .map(|p| StoredEntry {
                key: p.k,
                attempts: p.a,
                due_us: p.d,
                first_failure_us: p.f,
                last_reason: p.r,
            })
            .collect(),
    })
}

/// The little-endian u64 at `at` (the caller checked the length).
pub(super) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn corrupt(reason: String) -> StorageError {
    StorageError::Corrupt {
        path: std::path::PathBuf::from("meta.redb"),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_entry_round_trip_and_garbage_is_refused() {
        let h = StateHeader {
            generation: 7,
            floor: 1,
            cursor: 9,
            reserved: 4096,
        };
        assert_eq!(StateHeader::decode(&h.encode()).unwrap(), h);
        let e = StoredEntry {
            key: 3,
            attempts: 2,
            due_us: Some(-5),
            first_failure_us: 11,
            last_reason: "db down ✗".into(),
        };
        assert_eq!(StoredEntry::decode(3, &e.encode()).unwrap(), e);
        let plain = StoredEntry {
            key: 4,
            ..StoredEntry::default()
        };
        assert_eq!(StoredEntry::decode(4, &plain.encode()).unwrap(), plain);
        for bad in [
            &b""[..],
            b"HGS\x03aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"\x02\0\0\0\0",
        ] {
            assert!(StateHeader::decode(bad).is_err());
            assert!(StoredEntry::decode(0, bad).is_err());
        }
    }

    #[test]
    fn release_0_1_snapshots_are_read() {
        let json = br#"{"floor":2,"cursor":9,"pending":[{"k":2,"a":1},{"k":5,"a":3,"d":77,"f":10,"r":"x"}]}"#;
        assert!(is_legacy(json));
        let s = legacy(json, 42).unwrap();
        assert_eq!(s.header.generation, 42);
        assert_eq!((s.header.cursor, s.header.reserved), (9, 9));
        assert_eq!(s.entries[1].due_us, Some(77));
        assert_eq!(s.entries[1].last_reason, "x");
    }
}
