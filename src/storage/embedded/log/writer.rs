//! The single writer of a topic log: the state a dedicated OS thread owns
//! (the active segment, the index builder, the dedup index, the staged
//! commit) and how it turns queued appends into group commits. The thread
//! itself, which exits when idle and leaves this state parked, is in
//! `slot.rs`.
//!
//! Each loop takes every command queued while it was busy, encodes all the
//! batches into one buffer, writes it with one `pwrite`, syncs once (under
//! [`FsyncPolicy::Always`]), then fills the tail cache, publishes the new end
//! offset and answers every batch. A failed write or sync poisons the log:
//! the failed batches and all later ones are refused, none of them visible.
//!
//! The writer also owns the dedup index (`dedup.rs`): with a window set, each
//! batch's events are checked against it (and against each other) before
//! anything is encoded, so checking and storing an id is one step.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::error;

use super::codec;
use super::dedup::{DedupIndex, IdHasher};
use super::index::{self, IndexBuilder, IndexEntry};
use super::options::FsyncPolicy;
use super::segment::{self, Segment};
use super::{Appended, Shared, read_guard, write_guard};
use crate::event::{Event, StoredEvent, now_us};
use crate::storage::StorageError;

/// Stop draining the queue into one group commit past this many bytes, to
/// bound the commit buffer and the latency of the first batch in it.
const MAX_GROUP_BYTES: u64 = 16 << 20;

/// The dedup-cap warning is logged at most this often per log.
const DEDUP_CAP_WARN_EVERY: Duration = Duration::from_secs(600);

/// Keep at most this much commit-buffer capacity between commits.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

mod idempotence;
mod recover;
mod runway;

use runway::Runway;

pub type AppendReply = oneshot::Sender<Result<Appended, StorageError>>;

/// What the rest of the log asks of the writer.
pub enum Command {
    /// Append one batch; `bytes` is its encoded size. `server_ids[i]`:
    /// event `i` has an id the server generated, unique by construction,
    /// which dedup neither checks nor indexes (empty: none has).
    Append {
        events: Vec<Event>,
        server_ids: Vec<bool>,
        bytes: u64,
        reply: AppendReply,
    },
    /// Sync written data now (from the interval flusher).
    Sync,
    /// Check later appends against ids stored within this window (zero:
    /// stop checking).
    SetDedupWindow(Duration),
    /// Repair the log after a failed write or sync (`writer/recover.rs`);
    /// sent before the append that claimed the attempt.
    Recover,
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
    /// Publish time of the newest record in `buf`.
    last_publish_time_us: Option<i64>,
}

/// A prefix of the active segment: its length and the offset after it.
#[derive(Debug, Clone, Copy)]
struct Extent {
    len: u64,
    next_offset: u64,
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
    /// Bytes written to the active segment, and the offset after them.
    written: Extent,
    /// What of the active segment was last synced successfully: recovery
    /// cuts the file back to it (never trusting what a failed sync left).
    synced: Extent,
    cache_enabled: bool,
    staged: Staged,
    /// Ids stored within the dedup window; off until the window is set.
    dedup: DedupIndex,
    /// Hashes ids for `dedup`, under this log's random key.
    id_hasher: IdHasher,
    /// When the dedup cap was last reported, to warn once in a while.
    dedup_cap_warned: Option<Instant>,
    /// A dedup window set while parked: applied (index rebuilt) when the
    /// writer next runs, so opening a log starts no thread.
    pub pending_window: Option<std::time::Duration>,
    /// Space allocated ahead of the active segment's writes.
    runway: Runway,
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
        let cache_enabled = read_guard(&shared.cache).enabled();
        let dedup = DedupIndex::new(shared.opts.dedup_max_ids);
        let at_open = Extent {
            len: active.len(),
            next_offset,
        };
        // Recovery cut the file to its records.
        let runway = Runway::new(shared.opts.runway_bytes, active.len());
        Writer {
            shared,
            active,
            next_offset,
            last_publish_time_us,
            index,
            dirty: false,
            // Whatever the active segment held at open counts as synced: a
            // failed sync now cannot tell what of it reached the disk, and
            // the process that wrote it acknowledged it.
            written: at_open,
            synced: at_open,
            cache_enabled,
            staged: Staged::default(),
            dedup,
            id_hasher: IdHasher::random(),
            dedup_cap_warned: None,
            pending_window: None,
            runway,
        }
    }

    /// Runs `first` and whatever else is queued (up to [`MAX_GROUP_BYTES`]
    /// of appends) as one group commit. Returns whether the group held
    /// anything but flusher syncs (which do not keep a writer from going
    /// idle), or `None` once the writer has closed (`Close`): commands
    /// queued after it are dropped with the receiver, and their callers see
    /// the log as closed.
    pub fn run_group(
        &mut self,
        first: Command,
        rx: &mpsc::Receiver<Command>,
        queue: &mut Vec<Command>,
    ) -> Option<bool> {
        queue.push(first);
        let mut bytes = 0;
        while bytes < MAX_GROUP_BYTES {
            let Ok(cmd) = rx.try_recv() else { break };
            if let Command::Append { bytes: b, .. } = &cmd {
                bytes += b;
            }
            queue.push(cmd);
        }
        let worked = queue.iter().any(|cmd| !matches!(cmd, Command::Sync));
        for cmd in queue.drain(..) {
            match cmd {
                Command::Append {
                    events,
                    server_ids,
                    bytes,
                    reply,
                } => self.stage(events, &server_ids, bytes, reply),
                Command::Sync => self.sync_now(),
                Command::SetDedupWindow(window) => self.set_dedup_window(window),
                Command::Recover => {
                    // Everything before it is answered (refused) first.
                    self.commit();
                    self.recover();
                }
                Command::Close { reply } => {
                    let _ = reply.send(self.finish());
                    return None;
                }
            }
        }
        self.commit();
        Some(worked)
    }

    /// The log's directory, for messages.
    pub fn dir(&self) -> &std::path::Path {
        &self.shared.dir
    }

    /// Gets ready to be parked without a thread: nothing staged, everything
    /// written synced (so a parked writer never needs the flusher), the
    /// runway cut off (an idle topic holds no disk space ahead), and the
    /// commit buffer's memory released.
    pub fn prepare_to_park(&mut self) {
        self.sync_now();
        if self.shared.poisoned().is_none()
            && let Err(e) = self.trim_runway()
        {
            tracing::warn!(error = %e, "an idle log kept its allocated tail; the next seal or open cuts it");
        }
        self.staged = Staged::default();
    }

    /// Encodes one batch into the pending commit, rolling first if the
    /// active segment would grow past `segment_bytes`. Duplicates (with
    /// dedup on) are left out; a batch of duplicates only is answered with
    /// the next commit, once everything staged before it is durable.
    fn stage(&mut self, events: Vec<Event>, server_ids: &[bool], bytes: u64, reply: AppendReply) {
        if let Some(err) = self.shared.poisoned() {
            let _ = reply.send(Err(err));
            return;
        }
        let publish_time_us = now_us().max(self.last_publish_time_us);
        self.last_publish_time_us = publish_time_us;
        let (appended, stored, bytes) = if self.dedup.enabled() {
            self.check_duplicates(&events, server_ids, publish_time_us)
        } else {
            let appended = Appended::dense(self.next_offset, events.len(), publish_time_us);
            (appended, events.len(), bytes)
        };
        if stored == 0 {
            self.staged.replies.push((reply, appended));
            return;
        }
        let segment_len = self.active.len() + self.staged.buf.len() as u64;
        let rel_end = self.next_offset - self.active.base_offset + stored as u64;
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
        let base_len = self.active.len();
        for (event, duplicate) in events.into_iter().zip(&appended.duplicate) {
            if *duplicate {
                continue;
            }
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
        self.staged.last_publish_time_us = Some(publish_time_us);
        self.staged.replies.push((reply, appended));
    }

    /// Writes, syncs per policy and publishes everything staged, then
    /// answers every staged batch.
    fn commit(&mut self) {
        if self.staged.replies.is_empty() {
            return;
        }
        let position = self.active.len();
        // Only duplicates staged: nothing to write, but answer in order.
        let written = if self.staged.buf.is_empty() {
            Ok(())
        } else {
            self.write_staged(position)
        };
        match written {
            Ok(()) => {
                self.active.set_len(position + self.staged.buf.len() as u64);
                self.active.extend_index(&self.staged.entries);
                if let Some(t) = self.staged.last_publish_time_us.take() {
                    self.active.set_last_publish_time(t);
                }
                let evicted = if self.staged.events.is_empty() {
                    Vec::new()
                } else {
                    write_guard(&self.shared.cache).extend(&mut self.staged.events)
                };
                if !self.staged.buf.is_empty() {
                    self.shared.publish_end(self.next_offset);
                }
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
                if self.active.file.set_len(position).is_ok() {
                    self.runway.cut_to(position);
                }
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
        self.staged.last_publish_time_us = None;
    }

    fn write_staged(&mut self, position: u64) -> Result<(), StorageError> {
        let buf = &self.staged.buf;
        let end = position + buf.len() as u64;
        self.runway
            .extend(&self.active.file, end, self.shared.opts.segment_bytes);
        let written = self.shared.faults.write();
        written
            .and_then(|()| self.active.file.write_all_at(buf, position))
            .map_err(|e| {
                StorageError::io(
                    format!(
                        "write {} bytes at {position} of {}",
                        buf.len(),
                        self.active.path.display()
                    ),
                    e,
                )
            })?;
        self.runway.wrote(end);
        self.dirty = true;
        self.written = Extent {
            len: end,
            next_offset: self.next_offset,
        };
        if self.shared.opts.fsync == FsyncPolicy::Always {
            self.sync_active()?;
        }
        Ok(())
    }

    /// `fdatasync` of the active segment (or the injected failure).
    fn sync_active(&mut self) -> Result<(), StorageError> {
        let result = self.shared.faults.sync();
        result
            .and_then(|()| self.active.file.sync_data())
            .map_err(|e| {
                StorageError::io(format!("fdatasync {}", self.active.path.display()), e)
            })?;
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.dirty = false;
        self.synced = self.written;
        Ok(())
    }

    /// Seals the active segment (synced, its runway cut off, index written)
    /// and starts a new one at the next offset.
    fn roll(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            self.sync_active()?;
        }
        self.trim_runway()?;
        let dir = &self.shared.dir;
        let idx = segment::index_path(dir, self.active.base_offset);
        index::write_file(&idx, &self.active.index_snapshot())?;
        let next = Arc::new(segment::create(dir, self.next_offset)?);
        write_guard(&self.shared.segments).push(Arc::clone(&next));
        self.active = next;
        // The new file and its name are synced by `create`.
        self.written = Extent {
            len: 0,
            next_offset: self.next_offset,
        };
        self.synced = self.written;
        self.runway.cut_to(0);
        self.index = IndexBuilder::new(self.shared.opts.index_interval_bytes, None);
        Ok(())
    }

    /// Cuts the active segment's file back to its records, durably.
    fn trim_runway(&mut self) -> Result<(), StorageError> {
        self.runway
            .trim(&self.active.file, self.active.len())
            .map_err(|e| {
                StorageError::io(
                    format!("cut the allocated tail of {}", self.active.path.display()),
                    e,
                )
            })
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
    pub fn finish(&mut self) -> Result<(), StorageError> {
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
        // Everything is synced: a runway left by a failure here is cut by
        // the next open.
        if let Err(e) = self.trim_runway() {
            tracing::warn!(error = %e, "closing the log left its allocated tail; the next open cuts it");
        }
        Ok(())
    }

    /// Enters the poisoned state (logged once per episode) and returns the
    /// reason in effect: the first failure's, if this is not the first.
    fn poison(&self, cause: StorageError) -> String {
        // What clients see; the full error (with paths) goes to the log.
        let (reason, first) = self.shared.set_poison(cause.public_message());
        if first {
            error!(
                dir = %self.shared.dir.display(),
                error = %cause,
                retry_after_ms = self.shared.opts.recovery_backoff.as_millis() as u64,
                "event log poisoned: refusing appends until the active segment is repaired"
            );
        }
        reason
    }
}
