//! Repairing a poisoned log in place, without a restart.
//!
//! Storage layer, run by the writer thread for [`Command::Recover`], which
//! the first append after the back-off sends ahead of itself (`poison.rs`).
//!
//! After a failed `fdatasync` the state of the page cache is unknown
//! ("fsyncgate"): the kernel may have dropped the dirty pages or marked them
//! clean, so retrying the sync on the same file can succeed without the data
//! ever reaching the disk. Recovery therefore never retries a sync: it
//! reopens the active segment, cuts it back to the length of the last
//! successful sync, writes again from memory what readers were shown beyond
//! it, drops the rest (a failed batch, never acknowledged nor visible),
//! syncs the new file descriptor, and only then clears the poison.
//!
//! What is written again depends on the durability mode:
//! - `always`: the published end only ever covers synced data, so the last
//!   synced length is the committed length and nothing is written again;
//!   no acknowledged event is lost and the end offset does not move.
//! - `interval` and `never`: events written after the last successful sync
//!   were acknowledged and shown to readers. They are written again from the
//!   tail cache, byte for byte (the encoding is deterministic), so the end
//!   offset never moves backwards. When the cache no longer holds all of
//!   them (`never` syncs only when a segment is sealed), recovery cannot
//!   repair the log without taking back offsets readers saw: the log stays
//!   poisoned until a restart, which keeps whatever of them the disk holds.
//!   Those modes already allow losing acknowledged events on a crash.
//!
//! The bytes are written before the file is cut, rather than after, so a
//! reader never meets a shortened file; the result is the same.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{info, warn};

use super::super::cache::Budget;
use super::super::poison::Faults;
use super::super::segment::{self, Segment};
use super::super::{codec, read_guard, write_guard};
use super::{Extent, Writer};
use crate::event::StoredEvent;
use crate::storage::StorageError;

#[cfg(doc)]
use super::Command;

impl Writer {
    /// One recovery attempt; clears the poison on success, else leaves the
    /// log poisoned for a later attempt.
    pub(super) fn recover(&mut self) {
        if self.shared.poisoned().is_none() {
            return;
        }
        let started = Instant::now();
        match self.repair() {
            Ok(rewritten) => {
                self.shared.clear_poison();
                info!(
                    dir = %self.shared.dir.display(),
                    rewritten_events = rewritten,
                    next_offset = self.next_offset,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "event log repaired after a failed write or sync; accepting appends again"
                );
            }
            Err(e) => warn!(
                dir = %self.shared.dir.display(),
                error = %e,
                retry_after_ms = self.shared.opts.recovery_backoff.as_millis() as u64,
                "repairing the event log failed; it keeps refusing appends and tries again later"
            ),
        }
    }

    /// Rebuilds the active segment and the writer's state for it. Returns
    /// how many events were written again from memory.
    fn repair(&mut self) -> Result<u64, StorageError> {
        let shared = Arc::clone(&self.shared);
        // What readers may have seen: committed records, up to `end`.
        let end = shared.end.load(Ordering::Acquire);
        let committed_len = self.active.len();
        let synced = self.synced;
        let unsynced = unsynced_events(self, synced.next_offset, end)?;
        let mut bytes = Vec::new();
        for e in &unsynced {
            codec::encode_record(&mut bytes, e.offset, e.publish_time_us, &e.event);
        }
        if synced.len + bytes.len() as u64 != committed_len {
            return Err(StorageError::io(
                format!("repair {}", self.active.path.display()),
                io::Error::other(format!(
                    "{} bytes synced and {} re-encoded do not make the {committed_len} committed",
                    synced.len,
                    bytes.len()
                )),
            ));
        }
        remove_stale_segment(&shared.dir, self.active.base_offset, end)?;
        let segment = reopen(&self.active, synced.len, &bytes, &shared.faults)?;
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        {
            let mut segments = write_guard(&shared.segments);
            if let Some(last) = segments.last_mut()
                && last.base_offset == segment.base_offset
            {
                *last = Arc::clone(&segment);
            }
        }
        let last_index_position = segment.entry_for_offset(u64::MAX).map(|e| e.position);
        self.index =
            super::IndexBuilder::new(shared.opts.index_interval_bytes, last_index_position);
        self.active = segment;
        // A failed batch advanced these; it was never stored.
        self.next_offset = end;
        self.dedup.forget_from(end);
        self.written = Extent {
            len: committed_len,
            next_offset: end,
        };
        self.synced = self.written;
        self.runway.cut_to(committed_len);
        self.dirty = false;
        Ok(unsynced.len() as u64)
    }
}

/// The committed events `[from, end)` from the tail cache, or why they
/// cannot be had.
fn unsynced_events(
    writer: &Writer,
    from: u64,
    end: u64,
) -> Result<Vec<Arc<StoredEvent>>, StorageError> {
    let mut out = Vec::new();
    if from >= end {
        return Ok(out);
    }
    let cached = read_guard(&writer.shared.cache).read(
        from,
        end,
        &mut Budget::new(usize::MAX, usize::MAX),
        &mut out,
    );
    if cached && out.len() as u64 == end - from {
        return Ok(out);
    }
    Err(StorageError::io(
        format!("repair {}", writer.active.path.display()),
        io::Error::other(format!(
            "{} acknowledged events written after the last successful sync are no longer in memory; restart the server to recover what the disk holds",
            end - from
        )),
    ))
}

/// Removes the empty segment file a failed roll may have left at `end`
/// (created, but its directory entry not synced).
fn remove_stale_segment(dir: &Path, active_base: u64, end: u64) -> Result<(), StorageError> {
    if end == active_base {
        return Ok(());
    }
    let path = segment::log_path(dir, end);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() == 0 => {
            std::fs::remove_file(&path)
                .map_err(|e| StorageError::io(format!("remove {}", path.display()), e))?;
            segment::sync_dir(dir)
        }
        Ok(_) => Err(StorageError::io(
            format!("repair {}", dir.display()),
            io::Error::other(format!(
                "{} exists and is not empty",
                path.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            )),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("stat {}", path.display()), e)),
    }
}

/// Opens the active segment's file anew, writes `bytes` at `synced_len`,
/// cuts the file to their end and syncs it: the repaired active segment.
fn reopen(
    active: &Segment,
    synced_len: u64,
    bytes: &[u8],
    faults: &Faults,
) -> Result<Arc<Segment>, StorageError> {
    let path = &active.path;
    let context = |what: &str| format!("{what} {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(context("reopen"), e))?;
    if !bytes.is_empty() {
        faults
            .write()
            .and_then(|()| file.write_all_at(bytes, synced_len))
            .map_err(|e| StorageError::io(context("rewrite unsynced records of"), e))?;
    }
    let len = synced_len + bytes.len() as u64;
    file.set_len(len)
        .map_err(|e| StorageError::io(format!("truncate {} to {len} bytes", path.display()), e))?;
    faults
        .sync()
        .and_then(|()| file.sync_all())
        .map_err(|e| StorageError::io(context("fsync repaired"), e))?;
    let segment = Segment::new(
        active.base_offset,
        path.clone(),
        file,
        len,
        active.index_snapshot(),
    );
    if let Some(t) = active.last_publish_time() {
        segment.set_last_publish_time(t);
    }
    Ok(Arc::new(segment))
}
