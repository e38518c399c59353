//! Reads from the segment files: events by offset and the offset for a time.
//!
//! Both seek with the sparse index, then scan forward with large `pread`s;
//! each decoded event gets a buffer of its own (one copy), so a long-lived
//! event does not keep the whole read chunk alive.
//! Only bytes of committed records (below each segment's published length and
//! the log's end offset) are ever looked at.

use std::sync::Arc;

use super::cache::Budget;
use super::codec::{self, HEADER_LEN};
use super::segment::{Damage, Next, Segment};
use crate::event::StoredEvent;
use crate::storage::StorageError;

/// Smallest and largest single `pread` of a read.
const MIN_CHUNK: usize = 16 << 10;
const MAX_CHUNK: usize = 8 << 20;

/// Record size assumed before a segment's index says better.
const DEFAULT_RECORD_GUESS: u64 = 512;

/// Appends the events `[from, end)` (within `budget`) from disk to `out`.
///
/// # Errors
/// I/O errors, and [`StorageError::Corrupt`] when a committed record does not
/// decode or offsets are not dense.
pub fn read(
    segments: &[Arc<Segment>],
    from: u64,
    end: u64,
    budget: &mut Budget,
    out: &mut Vec<Arc<StoredEvent>>,
) -> Result<(), StorageError> {
    let mut next = from;
    let Some(mut i) = containing(segments, next) else {
        return Ok(());
    };
    while next < end && !budget.exhausted() {
        let Some(segment) = segments.get(i) else {
            break;
        };
        let entry = segment.entry_for_offset(next);
        let start = entry.map_or(0, |e| e.position);
        let limit = segment.len();
        let chunk = chunk_size(
            segment,
            entry.map_or(segment.base_offset, |e| {
                segment.base_offset + u64::from(e.rel_offset)
            }),
            next,
            budget,
        );
        let mut reader = segment.reader(start, limit, chunk);
        loop {
            let (position, payload) = match reader.next_record()? {
                Next::Record { position, payload } => (position, payload),
                Next::End => break,
                Next::Damaged { position, damage } => {
                    return Err(corrupt(segment, position, &damage));
                }
            };
            let (offset, _) = codec::peek_header(&payload)
                .map_err(|e| corrupt(segment, position, &Damage::Decode(e)))?;
            if offset < next {
                continue;
            }
            if offset >= end {
                return Ok(());
            }
            if offset != next {
                let damage = Damage::OffsetGap {
                    expected: next,
                    found: offset,
                };
                return Err(corrupt(segment, position, &damage));
            }
            // A record of its own, not a slice of the chunk: an event a
            // group keeps must not keep the whole chunk alive.
            let own = bytes::Bytes::copy_from_slice(&payload);
            let event = codec::decode_payload(&own)
                .map_err(|e| corrupt(segment, position, &Damage::Decode(e)))?;
            let size = event.event.size();
            out.push(Arc::new(event));
            next += 1;
            if !budget.take(size) {
                return Ok(());
            }
        }
        i += 1;
    }
    Ok(())
}

/// The first offset in `[start, end)` whose publish time is `>= t_us`, or
/// `end` when there is none. Publish times never decrease along the log.
///
/// # Errors
/// As for [`read`].
pub fn offset_for_time(
    segments: &[Arc<Segment>],
    t_us: i64,
    end: u64,
) -> Result<u64, StorageError> {
    // Segments whose first record is older than `t_us`; the answer is in the
    // last of them, or is the start of the one after it.
    let older =
        segments.partition_point(|s| s.first_publish_time().is_some_and(|first| first < t_us));
    let Some(segment) = older.checked_sub(1).and_then(|i| segments.get(i)) else {
        let start = segments.first().map_or(end, |s| s.base_offset);
        return Ok(start.min(end));
    };
    let after = segments.get(older).map_or(end, |s| s.base_offset).min(end);
    let Some(entry) = segment.entry_before_time(t_us) else {
        return Ok(after);
    };
    let mut reader = segment.reader(entry.position, segment.len(), MIN_CHUNK * 4);
    loop {
        let (position, payload) = match reader.next_record()? {
            Next::Record { position, payload } => (position, payload),
            Next::End => return Ok(after),
            Next::Damaged { position, damage } => return Err(corrupt(segment, position, &damage)),
        };
        let (offset, publish_time_us) = codec::peek_header(&payload)
            .map_err(|e| corrupt(segment, position, &Damage::Decode(e)))?;
        if offset >= end {
            return Ok(end);
        }
        if publish_time_us >= t_us {
            return Ok(offset);
        }
    }
}

/// Calls `f(offset, publish_time_us, id)` for every event in `[from, end)`,
/// in order, decoding nothing but those fields (the dedup index is rebuilt
/// this way).
///
/// # Errors
/// As for [`read`].
pub fn for_each_id(
    segments: &[Arc<Segment>],
    from: u64,
    end: u64,
    mut f: impl FnMut(u64, i64, &str),
) -> Result<(), StorageError> {
    let mut next = from;
    let Some(mut i) = containing(segments, next) else {
        return Ok(());
    };
    while next < end {
        let Some(segment) = segments.get(i) else {
            break;
        };
        let start = segment.entry_for_offset(next).map_or(0, |e| e.position);
        let mut reader = segment.reader(start, segment.len(), MAX_CHUNK / 8);
        loop {
            let (position, payload) = match reader.next_record()? {
                Next::Record { position, payload } => (position, payload),
                Next::End => break,
                Next::Damaged { position, damage } => {
                    return Err(corrupt(segment, position, &damage));
                }
            };
            let (offset, publish_time_us, id) = codec::peek_id(&payload)
                .map_err(|e| corrupt(segment, position, &Damage::Decode(e)))?;
            if offset < next {
                continue;
            }
            if offset >= end {
                return Ok(());
            }
            if offset != next {
                let damage = Damage::OffsetGap {
                    expected: next,
                    found: offset,
                };
                return Err(corrupt(segment, position, &damage));
            }
            f(offset, publish_time_us, id);
            next += 1;
        }
        i += 1;
    }
    Ok(())
}

/// Index of the segment holding `offset`, if any.
fn containing(segments: &[Arc<Segment>], offset: u64) -> Option<usize> {
    segments
        .partition_point(|s| s.base_offset <= offset)
        .checked_sub(1)
}

/// One `pread` large enough for the skip from the index entry to `next` plus
/// what the budget may still take, estimated from the segment's average
/// record size, within [`MIN_CHUNK`, `MAX_CHUNK`].
fn chunk_size(segment: &Segment, entry_offset: u64, next: u64, budget: &Budget) -> usize {
    let avg = segment
        .entry_for_offset(u64::MAX)
        .filter(|e| e.rel_offset > 0)
        .map_or(DEFAULT_RECORD_GUESS, |e| {
            e.position / u64::from(e.rel_offset)
        })
        .max(HEADER_LEN as u64);
    let skip = next.saturating_sub(entry_offset).saturating_mul(avg);
    let by_events = (budget.events_left() as u64).saturating_mul(avg);
    let by_bytes = (budget.bytes_left() as u64).saturating_add(avg);
    let want = skip
        .saturating_add(by_events.min(by_bytes))
        .saturating_add(avg);
    usize::try_from(want)
        .unwrap_or(MAX_CHUNK)
        .clamp(MIN_CHUNK, MAX_CHUNK)
}

fn corrupt(segment: &Segment, position: u64, damage: &Damage) -> StorageError {
    StorageError::Corrupt {
        path: segment.path.clone(),
        reason: format!("at byte {position}: {damage}"),
    }
}
