//! Entry points for the fuzz targets in `fuzz/`: segment recovery over
//! arbitrary bytes. Not part of Herald's API.
//!
//! Storage layer. [`recover_bytes`] lays out a log directory from the
//! bytes, runs the same recovery a topic runs when it opens, and reports
//! what a fuzz target checks: recovery never panics, what it keeps of the
//! active segment reads back as whole records with consecutive offsets, and
//! a second recovery finds nothing more to repair.

use std::path::Path;

use super::codec;
use super::index::IndexEntry;
use super::options::LogOptions;
use super::recovery;
use super::segment::{self, Next};
use crate::storage::StorageError;

/// What one recovery of a directory found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Offset the next appended event would get.
    pub next_offset: u64,
    /// Bytes kept in the active segment.
    pub active_len: u64,
    /// Offsets read back from the active segment after recovery, or why a
    /// record in it could not be read.
    pub active_offsets: Result<Vec<u64>, String>,
    /// The active segment's index entries.
    pub active_index: Vec<(u32, u64)>,
}

/// Writes a log directory in `dir` (empty before) and recovers it: a
/// sealed segment with base offset 0 and its index file when `sealed` is
/// given (then the active segment's base is `active_base`), and the active
/// segment holding `active`.
///
/// # Errors
/// I/O errors, as recovery reports them.
pub fn recover_bytes(
    dir: &Path,
    sealed: Option<(&[u8], &[u8])>,
    active_base: u64,
    active: &[u8],
) -> Result<Recovery, StorageError> {
    let io = |what: &str, e| StorageError::io(what.to_string(), e);
    let active_base = if let Some((log, index)) = sealed {
        std::fs::write(segment::log_path(dir, 0), log).map_err(|e| io("write sealed", e))?;
        std::fs::write(segment::index_path(dir, 0), index).map_err(|e| io("write index", e))?;
        active_base.max(1)
    } else {
        0
    };
    std::fs::write(segment::log_path(dir, active_base), active)
        .map_err(|e| io("write active", e))?;
    recover_dir(dir)
}

/// Recovers the log in `dir` as it is.
///
/// # Errors
/// I/O errors, as recovery reports them.
pub fn recover_dir(dir: &Path) -> Result<Recovery, StorageError> {
    let opts = LogOptions {
        index_interval_bytes: 64,
        ..LogOptions::default()
    };
    let recovered = recovery::recover(dir, &opts)?;
    let Some(active) = recovered.segments.last() else {
        return Err(StorageError::Corrupt {
            path: dir.to_path_buf(),
            reason: "no active segment".into(),
        });
    };
    let mut offsets = Vec::new();
    let mut reader = active.reader(0, active.len(), 4096);
    let active_offsets = loop {
        match reader.next_record()? {
            Next::Record { payload, .. } => match codec::decode_payload(&payload) {
                Ok(stored) => offsets.push(stored.offset),
                Err(e) => break Err(e.to_string()),
            },
            Next::End => break Ok(offsets),
            Next::Damaged { position, damage } => break Err(format!("{position}: {damage}")),
        }
    };
    Ok(Recovery {
        next_offset: recovered.next_offset,
        active_len: active.len(),
        active_offsets,
        active_index: active
            .index_snapshot()
            .iter()
            .map(|e: &IndexEntry| (e.rel_offset, e.position))
            .collect(),
    })
}
