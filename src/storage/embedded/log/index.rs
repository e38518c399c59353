//! Sparse offset/time index of one segment (`{base_offset:020}.idx`).
//!
//! One fixed-size little-endian entry per `index_interval_bytes` of records,
//! always including the segment's first record: relative offset (u32), file
//! position (u64) and publish time (i64). Reads seek to the last entry at or
//! before the wanted offset (or before the wanted time) and scan from there.
//! The index is only a hint: it is rebuilt from the segment when missing or
//! inconsistent, and the active segment's index lives in memory until the
//! segment is sealed.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::storage::StorageError;

/// Bytes of one entry on disk.
pub const ENTRY_LEN: usize = 4 + 8 + 8;

/// One sparse-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset minus the segment's base offset.
    pub rel_offset: u32,
    /// Byte position of the record's header in the segment file.
    pub position: u64,
    /// Publish time of that record; non-decreasing along the log.
    pub publish_time_us: i64,
}

/// Decides which records get an entry: the first one, then each one that
/// starts at least `interval` bytes after the previous entry.
#[derive(Debug, Clone)]
pub struct IndexBuilder {
    interval: u64,
    last_position: Option<u64>,
}

impl IndexBuilder {
    /// A builder for a segment whose last entry (if any) is at `last_position`.
    pub fn new(interval: u64, last_position: Option<u64>) -> Self {
        IndexBuilder {
            interval,
            last_position,
        }
    }

    /// The entry for the record at `position`, if it deserves one.
    pub fn observe(
        &mut self,
        rel_offset: u32,
        position: u64,
        publish_time_us: i64,
    ) -> Option<IndexEntry> {
        let due = self
            .last_position
            .is_none_or(|last| position.saturating_sub(last) >= self.interval);
        if !due {
            return None;
        }
        self.last_position = Some(position);
        Some(IndexEntry {
            rel_offset,
            position,
            publish_time_us,
        })
    }
}

/// The last entry whose relative offset is `<= rel_offset`.
pub fn lookup_offset(entries: &[IndexEntry], rel_offset: u32) -> Option<IndexEntry> {
    let n = entries.partition_point(|e| e.rel_offset <= rel_offset);
    n.checked_sub(1).and_then(|i| entries.get(i)).copied()
}

/// The last entry whose publish time is `< t_us`.
pub fn lookup_time_before(entries: &[IndexEntry], t_us: i64) -> Option<IndexEntry> {
    let n = entries.partition_point(|e| e.publish_time_us < t_us);
    n.checked_sub(1).and_then(|i| entries.get(i)).copied()
}

/// Serializes entries in file form.
pub fn encode(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        out.extend_from_slice(&e.rel_offset.to_le_bytes());
        out.extend_from_slice(&e.position.to_le_bytes());
        out.extend_from_slice(&e.publish_time_us.to_le_bytes());
    }
    out
}

/// Parses an index file, checking only its shape: whole entries, starting at
/// the segment's first record, strictly increasing offsets and positions,
/// every position inside a segment of `segment_len` bytes.
pub fn decode(bytes: &[u8], segment_len: u64) -> Option<Vec<IndexEntry>> {
    let (chunks, rest) = bytes.as_chunks::<ENTRY_LEN>();
    if !rest.is_empty() {
        return None;
    }
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let (rel, tail) = chunk.split_first_chunk::<4>()?;
        let (pos, time) = tail.split_first_chunk::<8>()?;
        let entry = IndexEntry {
            rel_offset: u32::from_le_bytes(*rel),
            position: u64::from_le_bytes(*pos),
            publish_time_us: i64::from_le_bytes(time.try_into().ok()?),
        };
        let ordered = match entries.last() {
            None => entry.rel_offset == 0 && entry.position == 0,
            Some(prev) => {
                entry.rel_offset > prev.rel_offset
                    && entry.position > prev.position
                    && entry.publish_time_us >= prev.publish_time_us
            }
        };
        if !ordered || entry.position >= segment_len {
            return None;
        }
        entries.push(entry);
    }
    if entries.is_empty() != (segment_len == 0) {
        return None;
    }
    Some(entries)
}

/// Reads an index file; `Ok(None)` when it does not exist.
///
/// # Errors
/// I/O errors other than "not found", with the path.
pub fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(
            format!("read index {}", path.display()),
            e,
        )),
    }
}

/// Replaces the index file at `path` with `entries` and syncs it.
///
/// # Errors
/// Create, write or sync failures, with the path.
pub fn write_file(path: &Path, entries: &[IndexEntry]) -> Result<(), StorageError> {
    let context = |what: &str| format!("{what} index {}", path.display());
    let mut file = File::create(path).map_err(|e| StorageError::io(context("create"), e))?;
    file.write_all(&encode(entries))
        .map_err(|e| StorageError::io(context("write"), e))?;
    file.sync_data()
        .map_err(|e| StorageError::io(context("sync"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rel_offset: u32, position: u64, publish_time_us: i64) -> IndexEntry {
        IndexEntry {
            rel_offset,
            position,
            publish_time_us,
        }
    }

    #[test]
    fn builder_spaces_entries_by_interval() {
        let mut b = IndexBuilder::new(100, None);
        assert_eq!(b.observe(0, 0, 5), Some(entry(0, 0, 5)));
        assert_eq!(b.observe(1, 60, 5), None);
        assert_eq!(b.observe(2, 120, 6), Some(entry(2, 120, 6)));
        assert_eq!(b.observe(3, 219, 6), None);
        assert_eq!(b.observe(4, 220, 7), Some(entry(4, 220, 7)));
    }

    #[test]
    fn file_form_round_trips_and_rejects_inconsistency() {
        let entries = vec![entry(0, 0, 10), entry(9, 4100, 10), entry(20, 8300, 12)];
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes, 9000), Some(entries.clone()));
        // Position beyond the segment, partial entry, wrong start, disorder.
        assert_eq!(decode(&bytes, 8300), None);
        assert_eq!(decode(&bytes[..bytes.len() - 1], 9000), None);
        assert_eq!(decode(&encode(&entries[1..]), 9000), None);
        let swapped = [entries[0], entries[2], entries[1]];
        assert_eq!(decode(&encode(&swapped), 9000), None);
        // Empty index only for an empty segment.
        assert_eq!(decode(&[], 0), Some(vec![]));
        assert_eq!(decode(&[], 10), None);
    }

    #[test]
    fn lookups_pick_the_entry_at_or_before() {
        let entries = [entry(0, 0, 10), entry(9, 4100, 20), entry(20, 8300, 30)];
        assert_eq!(lookup_offset(&entries, 0), Some(entries[0]));
        assert_eq!(lookup_offset(&entries, 8), Some(entries[0]));
        assert_eq!(lookup_offset(&entries, 9), Some(entries[1]));
        assert_eq!(lookup_offset(&entries, 99), Some(entries[2]));
        assert_eq!(lookup_time_before(&entries, 10), None);
        assert_eq!(lookup_time_before(&entries, 11), Some(entries[0]));
        assert_eq!(lookup_time_before(&entries, 30), Some(entries[1]));
    }
}
