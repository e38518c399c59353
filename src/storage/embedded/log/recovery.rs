//! Opening a log directory: find the segments, load or rebuild their sparse
//! indexes, and repair the tail of the last segment.
//!
//! Sealed segments were synced before the next one was created, so they are
//! trusted; only their index is checked and rebuilt when missing or
//! inconsistent. The last segment is scanned record by record, and the first
//! damaged record (torn header, impossible length, CRC mismatch, undecodable
//! payload or non-consecutive offset) and everything after it is truncated
//! away, with a warning naming the file, the position and the bytes dropped
//! (a note at `INFO` when they are all zeros, as the writer's runway leaves
//! them: `writer/runway.rs`).

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::codec::{self, HEADER_LEN};
use super::index::{self, IndexBuilder, IndexEntry};
use super::options::LogOptions;
use super::segment::{self, Damage, Next, Segment};
use crate::storage::StorageError;

/// Bytes per `pread` while scanning a whole segment.
const SCAN_CHUNK: usize = 1 << 20;

/// The state a writer resumes from.
#[derive(Debug)]
pub struct Recovered {
    /// All segments, oldest first; the last one is the active segment.
    pub segments: Vec<Arc<Segment>>,
    /// Offset the next appended event gets.
    pub next_offset: u64,
    /// Publish time of the newest record found (publish times never go back).
    pub last_publish_time_us: i64,
    /// Position of the active segment's last index entry.
    pub last_index_position: Option<u64>,
}

/// Opens (or creates) the log in `dir` and repairs its tail.
///
/// # Errors
/// I/O errors with the path involved.
pub fn recover(dir: &Path, opts: &LogOptions) -> Result<Recovered, StorageError> {
    fs::create_dir_all(dir)
        .map_err(|e| StorageError::io(format!("create log directory {}", dir.display()), e))?;
    let bases = list_segments(dir)?;
    let Some((&last, sealed)) = bases.split_last() else {
        let active = segment::create(dir, 0)?;
        info!(dir = %dir.display(), "created new log");
        return Ok(Recovered {
            segments: vec![Arc::new(active)],
            next_offset: 0,
            last_publish_time_us: i64::MIN,
            last_index_position: None,
        });
    };
    let mut segments = Vec::with_capacity(bases.len());
    let mut last_publish_time_us = i64::MIN;
    for &base in sealed {
        let segment = open_sealed(dir, base, opts)?;
        if let Some(t) = segment.last_publish_time() {
            last_publish_time_us = last_publish_time_us.max(t);
        }
        segments.push(Arc::new(segment));
    }
    let (active, scan) = open_active(dir, last, opts)?;
    active.set_last_publish_time(scan.last_publish_time_us);
    segments.push(Arc::new(active));
    Ok(Recovered {
        segments,
        next_offset: scan.next_offset,
        last_publish_time_us: last_publish_time_us.max(scan.last_publish_time_us),
        last_index_position: scan.entries.last().map(|e| e.position),
    })
}

/// Base offsets of the segment files in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let context = || format!("list log directory {}", dir.display());
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StorageError::io(context(), e))? {
        let entry = entry.map_err(|e| StorageError::io(context(), e))?;
        if let Some(base) = entry.file_name().to_str().and_then(segment::parse_log_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Opens a sealed segment read-only with a trustworthy index.
fn open_sealed(dir: &Path, base: u64, opts: &LogOptions) -> Result<Segment, StorageError> {
    let path = segment::log_path(dir, base);
    let file = OpenOptions::new()
        .read(true)
        .open(&path)
        .map_err(|e| StorageError::io(format!("open segment {}", path.display()), e))?;
    let len = file_len(&file, &path)?;
    let idx_path = segment::index_path(dir, base);
    let loaded = index::read_file(&idx_path)?;
    let existed = loaded.is_some();
    let segment = Segment::new(base, path, file, len, Vec::new());
    if let Some(entries) = loaded.and_then(|bytes| index::decode(&bytes, len))
        && let Some(newest) = newest_time(&segment, &entries)?
    {
        segment.extend_index(&entries);
        segment.set_last_publish_time(newest);
        return Ok(segment);
    }
    if existed {
        warn!(index = %idx_path.display(), "index inconsistent with its segment; rebuilding");
    } else {
        info!(index = %idx_path.display(), "index missing; rebuilding");
    }
    let scan = scan(&segment, opts)?;
    if let Some((position, damage)) = &scan.damage {
        // Sealed data is not repaired (it was acknowledged); reads that
        // reach this point report it as corrupt.
        warn!(
            file = %segment.path.display(),
            position,
            %damage,
            "sealed segment is damaged; records from this position on are unreadable"
        );
    }
    index::write_file(&idx_path, &scan.entries)?;
    segment.extend_index(&scan.entries);
    segment.set_last_publish_time(scan.last_publish_time_us);
    Ok(segment)
}

/// Spot-checks a decoded index against its segment (the last entry must
/// point at a record with the offset and publish time it claims) and reads
/// the records from there to the end for the newest publish time, which
/// age-based retention needs. `None` when the index does not match;
/// `i64::MIN` (no record) for an empty segment.
fn newest_time(segment: &Segment, entries: &[IndexEntry]) -> Result<Option<i64>, StorageError> {
    let Some(last) = entries.last() else {
        return Ok(Some(i64::MIN));
    };
    let mut reader = segment.reader(last.position, segment.len(), HEADER_LEN + 64 * 1024);
    let Next::Record { payload, .. } = reader.next_record()? else {
        return Ok(None);
    };
    let expected = (
        segment.base_offset + u64::from(last.rel_offset),
        last.publish_time_us,
    );
    if codec::peek_header(&payload).ok() != Some(expected) {
        return Ok(None);
    }
    let mut newest = last.publish_time_us;
    // Sealed data was synced before the next segment existed; a damaged
    // record here is reported by reads, and retention just uses the newest
    // time before it.
    while let Next::Record { payload, .. } = reader.next_record()? {
        match codec::peek_header(&payload) {
            Ok((_, t)) => newest = newest.max(t),
            Err(_) => break,
        }
    }
    Ok(Some(newest))
}

/// Opens the last segment read-write and truncates any damaged tail.
fn open_active(dir: &Path, base: u64, opts: &LogOptions) -> Result<(Segment, Scan), StorageError> {
    let path = segment::log_path(dir, base);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io(format!("open segment {}", path.display()), e))?;
    let len = file_len(&file, &path)?;
    let segment = Segment::new(base, path, file, len, Vec::new());
    let scan = scan(&segment, opts)?;
    if let Some((position, damage)) = &scan.damage {
        let position = *position;
        // Only what is logged depends on it: a read error here warns.
        let zeros_only = only_zeros(&segment.file, position, len).unwrap_or(false);
        segment.file.set_len(position).map_err(|e| {
            StorageError::io(
                format!("truncate {} to {position} bytes", segment.path.display()),
                e,
            )
        })?;
        segment.file.sync_all().map_err(|e| {
            StorageError::io(format!("sync truncated {}", segment.path.display()), e)
        })?;
        if zeros_only {
            // The unused runway of a writer that did not close (or space
            // whose data never reached the disk): nothing to warn about.
            info!(
                file = %segment.path.display(),
                position,
                dropped_bytes = len - position,
                "cut the zeros after the last record of the log"
            );
        } else {
            warn!(
                file = %segment.path.display(),
                position,
                dropped_bytes = len - position,
                %damage,
                "truncated damaged tail of the log"
            );
        }
    }
    segment.set_len(scan.valid_len);
    segment.extend_index(&scan.entries);
    Ok((segment, scan))
}

/// What a full scan of one segment found.
#[derive(Debug)]
struct Scan {
    entries: Vec<IndexEntry>,
    /// End of the last good record.
    valid_len: u64,
    next_offset: u64,
    last_publish_time_us: i64,
    /// The first bad record, if any.
    damage: Option<(u64, Damage)>,
}

/// Reads every record of `segment`, fully decoding each, and rebuilds its
/// index up to the first damaged record.
fn scan(segment: &Segment, opts: &LogOptions) -> Result<Scan, StorageError> {
    let mut builder = IndexBuilder::new(opts.index_interval_bytes, None);
    let mut out = Scan {
        entries: Vec::new(),
        valid_len: 0,
        next_offset: segment.base_offset,
        last_publish_time_us: i64::MIN,
        damage: None,
    };
    let mut reader = segment.reader(0, segment.len(), SCAN_CHUNK);
    loop {
        let (position, payload) = match reader.next_record()? {
            Next::Record { position, payload } => (position, payload),
            Next::End => break,
            Next::Damaged { position, damage } => {
                out.damage = Some((position, damage));
                break;
            }
        };
        let stored = match codec::decode_payload(&payload) {
            Ok(stored) => stored,
            Err(e) => {
                out.damage = Some((position, Damage::Decode(e)));
                break;
            }
        };
        let rel = stored
            .offset
            .checked_sub(segment.base_offset)
            .and_then(|r| u32::try_from(r).ok());
        let rel = match rel {
            Some(rel) if stored.offset == out.next_offset => rel,
            _ => {
                let damage = Damage::OffsetGap {
                    expected: out.next_offset,
                    found: stored.offset,
                };
                out.damage = Some((position, damage));
                break;
            }
        };
        if let Some(entry) = builder.observe(rel, position, stored.publish_time_us) {
            out.entries.push(entry);
        }
        out.next_offset += 1;
        out.last_publish_time_us = out.last_publish_time_us.max(stored.publish_time_us);
        out.valid_len = reader.position();
    }
    Ok(out)
}

/// Whether bytes `[from, to)` of `file` are all zero.
fn only_zeros(file: &std::fs::File, from: u64, to: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from;
    while at < to {
        let want = buf.len().min((to - at) as usize);
        let read = file.read_at(&mut buf[..want], at)?;
        if read == 0 {
            break;
        }
        if buf[..read].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += read as u64;
    }
    Ok(true)
}

fn file_len(file: &std::fs::File, path: &Path) -> Result<u64, StorageError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| StorageError::io(format!("stat {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use std::os::unix::fs::FileExt;

    fn write_records(dir: &Path, base: u64, count: u64) -> Vec<u64> {
        let path = segment::log_path(dir, base);
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for i in 0..count {
            let event = Event {
                id: format!("e{i}"),
                data: bytes::Bytes::from(vec![7; 50]),
                ..Event::default()
            };
            codec::encode_record(&mut bytes, base + i, 1000 + i as i64, &event);
            ends.push(bytes.len() as u64);
        }
        fs::write(path, bytes).unwrap();
        ends
    }

    #[test]
    fn offset_gap_in_the_last_segment_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let ends = write_records(dir.path(), 10, 5);
        // Append a valid record with a wrong offset.
        let path = segment::log_path(dir.path(), 10);
        let mut extra = Vec::new();
        codec::encode_record(&mut extra, 99, 2000, &Event::default());
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&extra, ends[4]).unwrap();
        let opts = LogOptions::default();
        let recovered = recover(dir.path(), &opts).unwrap();
        assert_eq!(recovered.next_offset, 15);
        assert_eq!(recovered.last_publish_time_us, 1004);
        assert_eq!(fs::metadata(&path).unwrap().len(), ends[4]);
    }

    #[test]
    fn missing_or_bad_sealed_index_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), 0, 40);
        write_records(dir.path(), 40, 3);
        let opts = LogOptions {
            index_interval_bytes: 200,
            ..LogOptions::default()
        };
        let idx = segment::index_path(dir.path(), 0);
        let first = recover(dir.path(), &opts).unwrap();
        let rebuilt = first.segments[0].index_snapshot();
        assert!(rebuilt.len() > 5, "{rebuilt:?}");
        assert_eq!(
            index::decode(&fs::read(&idx).unwrap(), first.segments[0].len()),
            Some(rebuilt.clone())
        );
        assert_eq!(first.next_offset, 43);
        drop(first);
        // An index whose shape is fine but whose last entry lies.
        let mut lying = rebuilt.clone();
        if let Some(last) = lying.last_mut() {
            last.rel_offset += 1;
        }
        index::write_file(&idx, &lying).unwrap();
        let second = recover(dir.path(), &opts).unwrap();
        assert_eq!(second.segments[0].index_snapshot(), rebuilt);
        assert_eq!(fs::read(&idx).unwrap(), index::encode(&rebuilt));
    }
}
