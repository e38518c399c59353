//! The single writer of a topic log: a dedicated OS thread that owns the
//! active segment and turns queued appends into group commits.
//!
//! Each loop takes every command queued while it was busy, encodes all the
//! batches into one buffer, writes it with one `pwrite`, syncs once (under
//! [`FsyncPolicy::Always`]), then fills the tail cache, publishes the new end
//! offset and answers every batch. A failed write or sync poisons the log:
//! the failed batches and all later ones are refused, none of them visible.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use tokio::sync::oneshot;
use tracing::error;

use super::codec;
use super::index::{self, IndexBuilder, IndexEntry};
use super::options::FsyncPolicy;
use super::segment::{self, Segment};
use super::{Appended, Shared, write_guard};
use crate::event::{Event, StoredEvent, now_us};
use crate::storage::StorageError;

/// Stop draining the queue into one group commit past this many bytes, to
/// bound the commit buffer and the latency of the first batch in it.
const MAX_GROUP_BYTES: u64 = 16 << 20;

/// Keep at most this much commit-buffer capacity between commits.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

pub type AppendReply = oneshot::Sender<Result<Appended, StorageError>>;

/// What the rest of the log asks of the writer.
pub enum Command {
    /// Append one batch; `bytes` is its encoded size.
    Append {
        events: Vec<Event>,
        bytes: u64,
        reply: AppendReply,
    },
    /// Sync written data now (from the interval flusher).
    Sync,
    /// Commit what is queued before this, sync, and stop.
    Close {
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
}

/// Everything encoded for the next commit.
#[derive(Default)]
struct Staged {
    buf: Vec<u8>,
    entries: Vec<IndexEntry>,
    events: Vec<Arc<StoredEvent>>,
    replies: Vec<(AppendReply, Appended)>,
}

/// State owned by the writer thread.
pub struct Writer {
    shared: Arc<Shared>,
    active: Arc<Segment>,
    next_offset: u64,
    /// Publish times never go back, even if the clock does, so that
    /// `offset_for_time` can binary-search them.
    last_publish_time_us: i64,
    index: IndexBuilder,
    /// Written but not yet synced.
    dirty: bool,
    cache_enabled: bool,
    staged: Staged,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        active: Arc<Segment>,
        next_offset: u64,
        last_publish_time_us: i64,
        last_index_position: Option<u64>,
    ) -> Self {
        let index = IndexBuilder::new(shared.opts.index_interval_bytes, last_index_position);
        let cache_enabled = shared.opts.tail_cache_events > 0;
        Writer {
            shared,
            active,
            next_offset,
            last_publish_time_us,
            index,
            dirty: false,
            cache_enabled,
            staged: Staged::default(),
        }
    }

    /// The writer thread's body: runs until `Close` or until every sender is
    /// gone (all handles dropped), committing and syncing on the way out.
    pub fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut queue = Vec::new();
        loop {
            let Ok(first) = rx.recv() else {
                // Every handle was dropped without close(); errors are
                // already logged by `poison`.
                let _ = self.finish();
                return;
            };
            queue.push(first);
            let mut bytes = 0;
            while bytes < MAX_GROUP_BYTES {
                let Ok(cmd) = rx.try_recv() else { break };
                if let Command::Append { bytes: b, .. } = &cmd {
                    bytes += b;
                }
                queue.push(cmd);
            }
            for cmd in queue.drain(..) {
                match cmd {
                    Command::Append {
                        events,
                        bytes,
                        reply,
                    } => self.stage(events, bytes, reply),
                    Command::Sync => self.sync_now(),
                    Command::Close { reply } => {
                        let _ = reply.send(self.finish());
                        // Commands queued after Close are dropped with the
                        // receiver; their callers see the log as closed.
                        return;
                    }
                }
            }
            self.commit();
        }
    }

    /// Encodes one batch into the pending commit, rolling first if the
    /// active segment would grow past `segment_bytes`.
    fn stage(&mut self, events: Vec<Event>, bytes: u64, reply: AppendReply) {
        if let Some(err) = self.shared.poisoned() {
            let _ = reply.send(Err(err));
            return;
        }
        let segment_len = self.active.len() + self.staged.buf.len() as u64;
        let rel_end = self.next_offset - self.active.base_offset + events.len() as u64;
        let too_big = segment_len.saturating_add(bytes) > self.shared.opts.segment_bytes;
        let too_many = rel_end > u64::from(u32::MAX) + 1;
        if segment_len > 0 && (too_big || too_many) {
            self.commit();
            if self.shared.poisoned().is_none()
                && let Err(e) = self.roll()
            {
                self.poison(e);
            }
            if let Some(err) = self.shared.poisoned() {
                let _ = reply.send(Err(err));
                return;
            }
        }
        let publish_time_us = now_us().max(self.last_publish_time_us);
        self.last_publish_time_us = publish_time_us;
        let first_offset = self.next_offset;
        let base_len = self.active.len();
        for event in events {
            let offset = self.next_offset;
            let position = base_len + self.staged.buf.len() as u64;
            // The roll check above keeps every relative offset of the
            // active segment within u32.
            let rel = (offset - self.active.base_offset) as u32;
            if let Some(entry) = self.index.observe(rel, position, publish_time_us) {
                self.staged.entries.push(entry);
            }
            codec::encode_record(&mut self.staged.buf, offset, publish_time_us, &event);
            if self.cache_enabled {
                self.staged.events.push(Arc::new(StoredEvent {
                    offset,
                    publish_time_us,
                    event,
                }));
            }
            self.next_offset += 1;
        }
        let appended = Appended {
            first_offset,
            publish_time_us,
        };
        self.staged.replies.push((reply, appended));
    }

    /// Writes, syncs per policy and publishes everything staged, then
    /// answers every staged batch.
    fn commit(&mut self) {
        if self.staged.replies.is_empty() {
            return;
        }
        let position = self.active.len();
        match self.write_staged(position) {
            Ok(()) => {
                self.active.set_len(position + self.staged.buf.len() as u64);
                self.active.extend_index(&self.staged.entries);
                let evicted = if self.staged.events.is_empty() {
                    Vec::new()
                } else {
                    write_guard(&self.shared.cache).extend(&mut self.staged.events)
                };
                self.shared.publish_end(self.next_offset);
                for (reply, appended) in self.staged.replies.drain(..) {
                    // The caller may have given up waiting (its future was
                    // dropped); the batch is appended all the same.
                    let _ = reply.send(Ok(appended));
                }
                // Freeing evicted events is the slowest part of a commit;
                // do it after the cache lock is released and the appenders
                // are answered.
                drop(evicted);
            }
            Err(e) => {
                // Best effort: keep the refused bytes out of the file so a
                // restart does not resurrect them.
                let _ = self.active.file.set_len(position);
                let reason = self.poison(e);
                for (reply, _) in self.staged.replies.drain(..) {
                    let _ = reply.send(Err(self.shared.poisoned_error(reason.clone())));
                }
            }
        }
        self.staged.buf.clear();
        self.staged.buf.shrink_to(KEEP_BUFFER_BYTES);
        self.staged.entries.clear();
        self.staged.events.clear();
    }

    fn write_staged(&mut self, position: u64) -> Result<(), StorageError> {
        let buf = &self.staged.buf;
        self.active.file.write_all_at(buf, position).map_err(|e| {
            StorageError::io(
                format!(
                    "write {} bytes at {position} of {}",
                    buf.len(),
                    self.active.path.display()
                ),
                e,
            )
        })?;
        self.dirty = true;
        if self.shared.opts.fsync == FsyncPolicy::Always {
            self.sync_active()?;
        }
        Ok(())
    }

    /// `fdatasync` of the active segment (or the injected failure).
    fn sync_active(&mut self) -> Result<(), StorageError> {
        let result = if self.shared.fail_next_sync.swap(false, Ordering::AcqRel) {
            Err(io::Error::other(
                "injected sync failure (fault-injection hook)",
            ))
        } else {
            self.active.file.sync_data()
        };
        result.map_err(|e| {
            StorageError::io(format!("fdatasync {}", self.active.path.display()), e)
        })?;
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.dirty = false;
        Ok(())
    }

    /// Seals the active segment (synced, index written) and starts a new one
    /// at the next offset.
    fn roll(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            self.sync_active()?;
        }
        let dir = &self.shared.dir;
        let idx = segment::index_path(dir, self.active.base_offset);
        index::write_file(&idx, &self.active.index_snapshot())?;
        let next = Arc::new(segment::create(dir, self.next_offset)?);
        write_guard(&self.shared.segments).push(Arc::clone(&next));
        self.active = next;
        self.index = IndexBuilder::new(self.shared.opts.index_interval_bytes, None);
        Ok(())
    }

    /// The interval flusher's tick.
    fn sync_now(&mut self) {
        self.commit();
        if self.dirty
            && self.shared.poisoned().is_none()
            && let Err(e) = self.sync_active()
        {
            self.poison(e);
        }
    }

    /// Commits what is staged and syncs; the result of `close()`.
    fn finish(&mut self) -> Result<(), StorageError> {
        self.commit();
        if let Some(err) = self.shared.poisoned() {
            return Err(err);
        }
        if self.dirty
            && let Err(e) = self.sync_active()
        {
            let reason = self.poison(e);
            return Err(self.shared.poisoned_error(reason));
        }
        Ok(())
    }

    /// Enters the poisoned state (once, logged) and returns the reason in
    /// effect: the first failure's, if this is not the first.
    fn poison(&self, cause: StorageError) -> String {
        let reason = cause.to_string();
        match self.shared.poison.set(reason.clone()) {
            Ok(()) => {
                error!(
                    dir = %self.shared.dir.display(),
                    %reason,
                    "event log poisoned: refusing all further appends"
                );
                reason
            }
            Err(_) => self.shared.poison.get().cloned().unwrap_or(reason),
        }
    }
}
