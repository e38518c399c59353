//! One segment of the log: the `{base_offset:020}.log` file, its committed
//! length, its in-memory sparse index, and a chunked record reader over it.
//!
//! Segments are shared (`Arc`) between the writer, which appends with
//! `pwrite`, and readers, which use `pread`; neither moves a file cursor, so
//! they need no lock around the file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;

use super::codec::{self, DecodeError, Frame, FrameError, HEADER_LEN};
use super::index::{self, IndexEntry};
use super::{read_guard, write_guard};
use crate::storage::StorageError;

/// Why the bytes at some position of a segment are not the record expected
/// there. Recovery truncates at the first one in the last segment; anywhere
/// else it is reported as [`StorageError::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// Fewer than the 8 header bytes remain.
    #[error("record header cut short ({available} of 8 bytes present)")]
    ShortHeader { available: u64 },
    /// The header's length runs past the end of the data.
    #[error("record of {total_len} bytes runs past the end ({available} bytes present)")]
    PastEnd { total_len: u64, available: u64 },
    /// Impossible length or checksum mismatch.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The checksum matched but the payload does not decode.
    #[error("undecodable payload: {0}")]
    Decode(#[from] DecodeError),
    /// The record's offset is not the next one.
    #[error("record has offset {found}, expected {expected}")]
    OffsetGap { expected: u64, found: u64 },
}

/// One segment file and what readers need to find records in it.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the first record; also the file name.
    pub base_offset: u64,
    /// Path of the `.log` file, for error messages.
    pub path: PathBuf,
    /// Read-write for the active segment, read-only for sealed ones.
    pub file: File,
    /// Bytes of complete, written records. Set by the writer after each
    /// write and before the end offset is published, so readers never look
    /// at bytes still being written.
    len: AtomicU64,
    /// Publish time of the newest record (`i64::MIN` while empty): what
    /// age-based retention compares. Set by recovery and by the writer.
    last_publish_time_us: AtomicI64,
    /// Sparse index, appended to by the writer once per group commit.
    index: RwLock<Vec<IndexEntry>>,
}

impl Segment {
    pub fn new(
        base_offset: u64,
        path: PathBuf,
        file: File,
        len: u64,
        index: Vec<IndexEntry>,
    ) -> Self {
        Segment {
            base_offset,
            path,
            file,
            len: AtomicU64::new(len),
            last_publish_time_us: AtomicI64::new(i64::MIN),
            index: RwLock::new(index),
        }
    }

    /// Bytes of complete records.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Writer only: records up to `len` are now complete.
    pub fn set_len(&self, len: u64) {
        self.len.store(len, Ordering::Release);
    }

    /// Publish time of the newest record, if the segment has any.
    pub fn last_publish_time(&self) -> Option<i64> {
        let t = self.last_publish_time_us.load(Ordering::Acquire);
        (t != i64::MIN).then_some(t)
    }

    /// Recovery and writer only: the newest record was published at `t_us`
    /// (`i64::MIN`: there is none).
    pub fn set_last_publish_time(&self, t_us: i64) {
        self.last_publish_time_us.store(t_us, Ordering::Release);
    }

    /// Writer only: adds entries for freshly written records.
    pub fn extend_index(&self, entries: &[IndexEntry]) {
        if !entries.is_empty() {
            write_guard(&self.index).extend_from_slice(entries);
        }
    }

    /// A copy of the index, for writing the `.idx` file on seal.
    pub fn index_snapshot(&self) -> Vec<IndexEntry> {
        read_guard(&self.index).clone()
    }

    /// Last index entry at or before `offset`.
    pub fn entry_for_offset(&self, offset: u64) -> Option<IndexEntry> {
        let rel = offset.saturating_sub(self.base_offset);
        let rel = u32::try_from(rel).unwrap_or(u32::MAX);
        index::lookup_offset(&read_guard(&self.index), rel)
    }

    /// Last index entry whose publish time is before `t_us`.
    pub fn entry_before_time(&self, t_us: i64) -> Option<IndexEntry> {
        index::lookup_time_before(&read_guard(&self.index), t_us)
    }

    /// Publish time of the first record, if the segment has one indexed.
    pub fn first_publish_time(&self) -> Option<i64> {
        read_guard(&self.index).first().map(|e| e.publish_time_us)
    }

    /// A reader of the records in `[position, limit)`, reading `chunk` bytes
    /// (or one whole record, if larger) per `pread`.
    pub fn reader(&self, position: u64, limit: u64, chunk: usize) -> RecordReader<'_> {
        RecordReader::new(&self.file, &self.path, position, limit, chunk)
    }
}

/// File name of the segment starting at `base_offset`.
pub fn log_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

/// File name of that segment's index.
pub fn index_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.idx"))
}

/// The base offset encoded in a segment file name, if it is one.
pub fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Creates a new, empty active segment and makes its name durable.
///
/// # Errors
/// Create failures (including "already exists") and directory sync failures.
pub fn create(dir: &Path, base_offset: u64) -> Result<Segment, StorageError> {
    let path = log_path(dir, base_offset);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StorageError::io(format!("create segment {}", path.display()), e))?;
    sync_dir(dir)?;
    Ok(Segment::new(base_offset, path, file, 0, Vec::new()))
}

/// Deletes the files of the segment at `base_offset`: the index first, then
/// the log, so that a crash in between leaves a segment whose index recovery
/// rebuilds, never an index without its segment. A file already gone is fine.
/// The caller syncs the directory.
///
/// # Errors
/// Remove failures other than "not found", with the path.
pub fn remove_files(dir: &Path, base_offset: u64) -> Result<(), StorageError> {
    for path in [index_path(dir, base_offset), log_path(dir, base_offset)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(format!("remove {}", path.display()), e)),
        }
    }
    Ok(())
}

/// Syncs a directory so that files created or removed in it stay so.
///
/// # Errors
/// Open or sync failure, with the path.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("sync directory {}", dir.display()), e))
}

/// What [`RecordReader::next_record`] found.
#[derive(Debug)]
pub enum Next {
    /// A record with a valid frame; `payload` is a slice of the read buffer.
    Record { position: u64, payload: Bytes },
    /// Clean end: the next record would start at the limit.
    End,
    /// The bytes at `position` are not a valid record.
    Damaged { position: u64, damage: Damage },
}

/// Walks the records of a segment range with few, large `pread`s. Payloads
/// are zero-copy slices of the read buffers.
#[derive(Debug)]
pub struct RecordReader<'a> {
    file: &'a File,
    path: &'a Path,
    /// Position of the next record.
    position: u64,
    /// Nothing at or past this position is read.
    limit: u64,
    /// Holds the file bytes `[buf_start, buf_start + buf.len())`.
    buf: Bytes,
    buf_start: u64,
    chunk: usize,
}

impl<'a> RecordReader<'a> {
    fn new(file: &'a File, path: &'a Path, position: u64, limit: u64, chunk: usize) -> Self {
        RecordReader {
            file,
            path,
            position,
            limit,
            buf: Bytes::new(),
            buf_start: position,
            chunk: chunk.max(HEADER_LEN),
        }
    }

    /// Position of the next record (after the last one returned).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next record, a clean end, or the damage found instead.
    ///
    /// # Errors
    /// Only I/O errors; bad bytes are reported as [`Next::Damaged`].
    pub fn next_record(&mut self) -> Result<Next, StorageError> {
        if self.position >= self.limit {
            return Ok(Next::End);
        }
        loop {
            // position >= buf_start always holds: the buffer is only ever
            // refilled starting at `position`, which then only grows.
            let skip = usize::try_from(self.position - self.buf_start).unwrap_or(usize::MAX);
            let available = self.buf.get(skip..).unwrap_or_default();
            let damaged = |damage: Damage| Next::Damaged {
                position: self.position,
                damage,
            };
            let need = match codec::parse_frame(available) {
                Ok(Frame::Complete { total_len }) => {
                    let payload = self.buf.slice(skip + HEADER_LEN..skip + total_len);
                    let position = self.position;
                    self.position += total_len as u64;
                    return Ok(Next::Record { position, payload });
                }
                Ok(Frame::Incomplete { total_len }) => total_len,
                Err(e) => return Ok(damaged(e.into())),
            };
            let in_file = self.limit - self.position;
            let need_len = need.unwrap_or(HEADER_LEN) as u64;
            if need_len > in_file {
                return Ok(damaged(match need {
                    None => Damage::ShortHeader { available: in_file },
                    Some(total_len) => Damage::PastEnd {
                        total_len: total_len as u64,
                        available: in_file,
                    },
                }));
            }
            // The frame was incomplete with fewer bytes buffered than it
            // needs, so this read strictly grows what is available.
            self.fill(need_len)?;
        }
    }

    /// Replaces the buffer with the file bytes from `position`: at least
    /// `need` (checked against the limit by the caller), usually a chunk.
    fn fill(&mut self, need: u64) -> Result<(), StorageError> {
        let len = need.max(self.chunk as u64).min(self.limit - self.position);
        // `len <= need.max(chunk)`: `need` is at most HEADER_LEN +
        // MAX_PAYLOAD_LEN and `chunk` is a usize, so this cannot truncate.
        let mut buf = vec![0; len as usize];
        self.file
            .read_exact_at(&mut buf, self.position)
            .map_err(|e| {
                StorageError::io(
                    format!(
                        "read {len} bytes at {} of {}",
                        self.position,
                        self.path.display()
                    ),
                    e,
                )
            })?;
        self.buf = Bytes::from(buf);
        self.buf_start = self.position;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/x");
        let path = log_path(dir, 42);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap();
        assert_eq!(name, "00000000000000000042.log");
        assert_eq!(parse_log_name(name), Some(42));
        assert_eq!(parse_log_name("42.log"), None);
        assert_eq!(parse_log_name("0000000000000000004x.log"), None);
        assert_eq!(parse_log_name("00000000000000000042.idx"), None);
    }

    #[test]
    fn reader_walks_records_across_small_chunks_and_reports_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let seg = create(dir.path(), 0).unwrap();
        let mut bytes = Vec::new();
        for i in 0..10u64 {
            let event = Event {
                data: Bytes::from(vec![i as u8; 100 + i as usize]),
                ..Event::default()
            };
            codec::encode_record(&mut bytes, i, 1, &event);
        }
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(&[1, 2, 3]);
        seg.file.write_all_at(&bytes, 0).unwrap();
        // A 16-byte chunk forces a refill for almost every record.
        let mut reader = seg.reader(0, bytes.len() as u64, 16);
        for i in 0..10u64 {
            let Next::Record { payload, .. } = reader.next_record().unwrap() else {
                panic!("record {i} expected");
            };
            assert_eq!(codec::peek_header(&payload).unwrap().0, i);
        }
        assert_eq!(reader.position(), whole);
        match reader.next_record().unwrap() {
            Next::Damaged { position, damage } => {
                assert_eq!(position, whole);
                assert_eq!(damage, Damage::ShortHeader { available: 3 });
            }
            other => panic!("expected damage, got {other:?}"),
        }
        let mut bounded = seg.reader(0, whole, 1 << 20);
        for _ in 0..10 {
            assert!(matches!(
                bounded.next_record().unwrap(),
                Next::Record { .. }
            ));
        }
        assert!(matches!(bounded.next_record().unwrap(), Next::End));
    }
}
