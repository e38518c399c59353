//! The embedded, segmented, append-only event log of one topic.
//!
//! Storage layer, below the broker. A log is a directory of segment files
//! `{base_offset:020}.log`, each with a sparse index `{base_offset:020}.idx`.
//! Records are framed `[u32 len][u32 crc32c][payload]` (`codec.rs`).
//!
//! - **Writes** go through one writer thread per log (`writer.rs`) that group
//!   commits: every batch queued while it was busy shares one write and one
//!   `fdatasync`. What an acknowledged append survives is set by
//!   [`FsyncPolicy`]. The thread exits when the log is idle and is started
//!   again by the next append, its state parked meanwhile (`slot.rs`).
//! - **Reads** are synchronous: recent events come from an in-memory tail
//!   cache (`cache.rs`, bounded per log and server-wide in bytes, released
//!   when the log is idle: `idle.rs`), older ones from the files through the sparse index
//!   (`reader.rs`). Events become visible (end offset, watch, reads) only once
//!   written and synced per policy.
//! - **Recovery** on open truncates a torn or garbage tail of the last segment
//!   and logs what it dropped (`recovery.rs`), including the zeros of the
//!   space the writer allocates ahead of its writes (`writer/runway.rs`),
//!   which it cuts itself when a segment is sealed, the writer parks idle or
//!   the log closes.
//! - **Idempotent appends**: with a dedup window set
//!   ([`TopicLog::set_dedup_window`]), the writer skips events whose id it
//!   stored within the window and reports the original offset (`dedup.rs`).
//! - **Retention** deletes whole sealed segments by age or total size, from a
//!   named periodic task or on demand (`retention.rs`); reads before the new
//!   start offset fail with [`StorageError::OutOfRange`].
//! - **Failures**: after a failed write or sync the log is poisoned and
//!   refuses appends rather than pretend they are durable (`poison.rs`),
//!   until the writer has repaired its active segment in place
//!   (`writer/recover.rs`), which the first append after a back-off asks
//!   for.

mod append;
mod cache;
mod codec;
mod dedup;
mod flusher;
#[doc(hidden)]
pub mod fuzzing;
mod idle;
mod index;
mod options;
mod poison;
mod reader;
mod recovery;
mod retention;
mod segment;
mod slot;
mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use append::Appended;
pub use codec::MAX_PAYLOAD_LEN;
pub use options::{FsyncPolicy, LogOptions, ParseFsyncPolicyError, TailCacheMemory};
pub use retention::RetentionReport;

use crate::event::StoredEvent;
use crate::storage::StorageError;
use cache::{Budget, TailCache};
use poison::{Faults, PoisonState};
use retention::RetentionPolicy;
use segment::Segment;
use slot::{Closing, WriterSlot};
use writer::{Command, Writer};

/// A snapshot of a log's extent.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    /// First retained offset.
    pub start_offset: u64,
    /// Offset the next event will get.
    pub end_offset: u64,
    /// Number of segment files.
    pub segments: usize,
    /// Bytes of committed records across all segments.
    pub bytes: u64,
}

/// Handle to one topic's log: cheap to clone (an `Arc` inside), `Send` and
/// `Sync`. The writer stops when [`close`](TopicLog::close) is called or the
/// last handle is dropped (then it still commits and syncs what was queued).
#[derive(Clone)]
pub struct TopicLog {
    inner: Arc<Handle>,
}

/// What the handles share; dropping it stops the writer.
struct Handle {
    shared: Arc<Shared>,
    /// The writer: its thread and the channel to it, or its parked state.
    writer: Arc<WriterSlot>,
    /// Serializes `close()` calls; true once closed.
    close_lock: tokio::sync::Mutex<bool>,
    /// Stops the background tasks: the interval flusher and retention.
    background_stop: CancellationToken,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.background_stop.cancel();
        self.writer.detach();
    }
}

/// State shared by the handles, the writer thread and readers.
struct Shared {
    dir: PathBuf,
    opts: LogOptions,
    /// All segments, oldest first; the writer pushes on roll, retention
    /// removes from the front.
    segments: RwLock<Vec<Arc<Segment>>>,
    /// First retained offset: the first segment's base. Moved only by
    /// retention, under the `segments` write lock.
    start: AtomicU64,
    /// Limits applied by retention passes.
    retention: Mutex<RetentionPolicy>,
    /// Serializes retention passes.
    retention_pass: Mutex<()>,
    /// Recently committed events, filled before `end` moves.
    cache: RwLock<TailCache>,
    /// Offset the next event will get; what readers may see.
    end: AtomicU64,
    end_tx: watch::Sender<u64>,
    /// Whether and why the log refuses writes.
    poison: PoisonState,
    /// Fault-injection hooks.
    faults: Faults,
    /// Set by `close()`; appends fail with `Closed`.
    closed: AtomicBool,
    /// Successful syncs, for diagnostics and tests.
    syncs: AtomicU64,
}

impl Shared {
    fn publish_end(&self, end: u64) {
        self.end.store(end, Ordering::Release);
        self.end_tx.send_replace(end);
    }
}

/// Reads a lock, ignoring poisoning: every critical section of this module
/// leaves its data consistent at each point a panic could occur.
fn read_guard<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes a lock, ignoring poisoning (see [`read_guard`]).
fn write_guard<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Locks a mutex, ignoring poisoning (see [`read_guard`]).
fn lock_guard<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A duration in whole microseconds, the unit of publish times; saturating.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl TopicLog {
    /// Opens the log in `dir` (creating the directory and an empty log if
    /// needed), repairs a damaged tail, and starts the writer thread. Under
    /// [`FsyncPolicy::Interval`] the periodic flusher is spawned on `tracker`.
    ///
    /// # Errors
    /// I/O errors while listing, opening, scanning, truncating or creating
    /// files, or when the writer thread cannot be started.
    pub async fn open(
        dir: PathBuf,
        opts: LogOptions,
        tracker: &TaskTracker,
    ) -> Result<TopicLog, StorageError> {
        let recovered = {
            let (dir, opts) = (dir.clone(), opts.clone());
            tokio::task::spawn_blocking(move || recovery::recover(&dir, &opts))
        }
        .await
        .map_err(|e| {
            StorageError::io(
                format!("recover log {}", dir.display()),
                io::Error::other(e),
            )
        })??;
        let next_offset = recovered.next_offset;
        // recover() always returns at least the active segment.
        let Some(active) = recovered.segments.last().cloned() else {
            return Err(StorageError::Corrupt {
                path: dir,
                reason: "recovery produced no active segment".into(),
            });
        };
        let start = recovered.segments.first().map_or(0, |s| s.base_offset);
        let (end_tx, _) = watch::channel(next_offset);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            cache: RwLock::new(TailCache::new(
                opts.tail_cache_events,
                opts.tail_cache_bytes,
                opts.tail_cache_memory.clone(),
                next_offset,
            )),
            segments: RwLock::new(recovered.segments),
            start: AtomicU64::new(start),
            retention: Mutex::new(RetentionPolicy::default()),
            retention_pass: Mutex::new(()),
            end: AtomicU64::new(next_offset),
            end_tx,
            poison: PoisonState::default(),
            faults: Faults::default(),
            closed: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            opts,
        });
        let writer = Writer::new(
            Arc::clone(&shared),
            active,
            next_offset,
            recovered.last_publish_time_us,
            recovered.last_index_position,
        );
        let writer = WriterSlot::start(writer, shared.opts.writer_idle)?;
        let handle = Arc::new(Handle {
            shared,
            writer,
            close_lock: tokio::sync::Mutex::new(false),
            background_stop: CancellationToken::new(),
        });
        if let FsyncPolicy::Interval(every) = handle.shared.opts.fsync {
            flusher::spawn(
                tracker,
                Arc::downgrade(&handle),
                every,
                handle.background_stop.clone(),
                dir.display().to_string(),
            );
        }
        let idle = handle.shared.opts.tail_cache_idle;
        if !idle.is_zero() && read_guard(&handle.shared.cache).enabled() {
            idle::spawn(
                tracker,
                Arc::downgrade(&handle),
                idle,
                handle.background_stop.clone(),
                dir.display().to_string(),
            );
        }
        let every = handle.shared.opts.retention_interval;
        if !every.is_zero() {
            retention::spawn(
                tracker,
                Arc::downgrade(&handle),
                every,
                handle.background_stop.clone(),
                dir.display().to_string(),
            );
        }
        Ok(TopicLog { inner: handle })
    }

    /// Offset the next event will get: the end of the readable log.
    pub fn end_offset(&self) -> u64 {
        self.inner.shared.end.load(Ordering::Acquire)
    }

    /// First retained offset: the base of the oldest segment retention has
    /// kept (0 until retention removes anything).
    pub fn start_offset(&self) -> u64 {
        self.inner.shared.start.load(Ordering::Acquire)
    }

    /// Turns idempotent appends on (`window > 0`) or off (zero, the default
    /// when a log is opened): while on, [`append`](Self::append) does not
    /// store an event whose id the log stored within `window` by publish
    /// time (an original published at `p` counts for a batch published at
    /// `t` when `p >= t - window`), and whose original is still retained.
    ///
    /// Returns at once; the writer applies the change before any append
    /// issued after this call. When the window is turned on or widened, the
    /// writer first rebuilds the index from the log (the events published
    /// within the new window before now, found through the sparse time index
    /// and read forward), so ids stored before a restart, or while dedup was
    /// off, are known. A narrower window keeps the index and drops what falls
    /// out of it; zero frees it. A rebuild that fails on an I/O error or
    /// corrupt data is logged and leaves the index with what it read.
    pub fn set_dedup_window(&self, window: Duration) {
        // A closed or stopped writer takes no appends either.
        let _ = self.inner.writer.send(Command::SetDedupWindow(window));
    }

    /// Sets the retention limits (`None`: unlimited, the default). They are
    /// applied by the background task "retention" every
    /// [`LogOptions::retention_interval`], or at once by
    /// [`enforce_retention`](Self::enforce_retention).
    pub fn set_retention(&self, max_age: Option<Duration>, max_bytes: Option<u64>) {
        self.inner
            .shared
            .set_retention_policy(RetentionPolicy { max_age, max_bytes });
    }

    /// One retention pass, now (blocking file I/O: call it from a blocking
    /// context in async code). Deletes, oldest first, whole sealed segments
    /// (never the active one) whose newest event is older than now − max
    /// age, then more while the log is larger than max bytes; moves the
    /// start offset to the first remaining segment. Readers already inside a
    /// deleted segment finish reading it; later reads before the new start
    /// fail with [`StorageError::OutOfRange`].
    ///
    /// # Errors
    /// [`StorageError::Closed`] after [`close`](Self::close); I/O errors
    /// deleting a file (segments up to it are removed, the rest are kept) or
    /// syncing the directory.
    pub fn enforce_retention(&self) -> Result<RetentionReport, StorageError> {
        let shared = &self.inner.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        shared.enforce_retention()
    }

    /// Notified whenever the end offset moves.
    pub fn watch_end(&self) -> watch::Receiver<u64> {
        self.inner.shared.end_tx.subscribe()
    }

    /// Events with offsets in `[from, end_offset)`: at most `max_events`, and
    /// stopping after the event that brings the total [`Event::size`] to
    /// `max_bytes` or more (so at least one event when any is available).
    /// Served from the tail cache when `from` is recent enough, else from
    /// the files with one large `pread` per stretch of records.
    ///
    /// # Errors
    /// [`StorageError::OutOfRange`] when `from` is before
    /// [`start_offset`](Self::start_offset), with the start offset as
    /// `first`; I/O errors and [`StorageError::Corrupt`] from the files.
    pub fn read(
        &self,
        from: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, StorageError> {
        let shared = &self.inner.shared;
        let out_of_range = |first| StorageError::OutOfRange {
            requested: from,
            first,
        };
        let first = self.start_offset();
        if from < first {
            return Err(out_of_range(first));
        }
        let end = self.end_offset();
        if from >= end || max_events == 0 {
            return Ok(Vec::new());
        }
        let room = usize::try_from(end - from).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(max_events.min(room).min(4096));
        let mut budget = Budget::new(max_events, max_bytes);
        if read_guard(&shared.cache).read(from, end, &mut budget, &mut out) {
            return Ok(out);
        }
        let segments = read_guard(&shared.segments).clone();
        // Retention may have moved the start since it was checked above.
        let first = segments.first().map_or(first, |s| s.base_offset);
        if from < first {
            return Err(out_of_range(first));
        }
        reader::read(&segments, from, end, &mut budget, &mut out)?;
        Ok(out)
    }

    /// [`read`](Self::read) when it can be answered from memory (the tail
    /// cache, or nothing to read); `None` when it needs the files, which
    /// callers on an async task do with [`read`](Self::read) off the
    /// workers.
    pub fn try_read_cached(
        &self,
        from: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Option<Result<Vec<Arc<StoredEvent>>, StorageError>> {
        let first = self.start_offset();
        if from < first {
            return Some(Err(StorageError::OutOfRange {
                requested: from,
                first,
            }));
        }
        let end = self.end_offset();
        if from >= end || max_events == 0 {
            return Some(Ok(Vec::new()));
        }
        let room = usize::try_from(end - from).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(max_events.min(room).min(4096));
        let mut budget = Budget::new(max_events, max_bytes);
        read_guard(&self.inner.shared.cache)
            .read(from, end, &mut budget, &mut out)
            .then_some(Ok(out))
    }

    /// The publish time of the record at or shortly before `offset`, from
    /// the sparse index (no I/O): a lower bound of `offset`'s publish time,
    /// good for ages.
    pub fn publish_time_near(&self, offset: u64) -> Option<i64> {
        let segments = read_guard(&self.inner.shared.segments);
        let i = segments
            .partition_point(|s| s.base_offset <= offset)
            .checked_sub(1)?;
        segments[i]
            .entry_for_offset(offset)
            .map(|e| e.publish_time_us)
    }

    /// The first retained offset whose publish time is `>= t_us` (the start
    /// offset for a time before it), or the end offset when there is none.
    /// Seeks with the sparse index, then scans.
    ///
    /// # Errors
    /// I/O errors and [`StorageError::Corrupt`] from the files.
    pub fn offset_for_time(&self, t_us: i64) -> Result<u64, StorageError> {
        let end = self.end_offset();
        let segments = read_guard(&self.inner.shared.segments).clone();
        reader::offset_for_time(&segments, t_us, end)
    }

    /// Commits what is queued, syncs, and stops the writer (joining its
    /// thread) and the background tasks (flusher, retention). Later appends fail with
    /// [`StorageError::Closed`]; reads keep working. Idempotent.
    ///
    /// # Errors
    /// The final sync's failure, or [`StorageError::Poisoned`] if the log
    /// was poisoned.
    pub async fn close(&self) -> Result<(), StorageError> {
        let inner = &self.inner;
        let mut closed = inner.close_lock.lock().await;
        if *closed {
            return Ok(());
        }
        *closed = true;
        inner.shared.closed.store(true, Ordering::Release);
        inner.background_stop.cancel();
        let panicked = || {
            StorageError::io(
                format!("stop writer of {}", inner.shared.dir.display()),
                io::Error::other("log writer thread panicked"),
            )
        };
        match inner.writer.close() {
            Closing::Running(tx, thread) => {
                let (reply, answer) = oneshot::channel();
                let result = match tx.send(Command::Close { reply }) {
                    Ok(()) => answer.await.unwrap_or(Ok(())),
                    // The writer is already gone; nothing is left to flush.
                    Err(_) => Ok(()),
                };
                drop(tx);
                if let Some(thread) = thread {
                    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
                    if !matches!(joined, Ok(Ok(()))) {
                        return Err(panicked());
                    }
                }
                result
            }
            Closing::Parked(mut writer) => tokio::task::spawn_blocking(move || writer.finish())
                .await
                .unwrap_or_else(|_| Err(panicked())),
            Closing::Done => Ok(()),
        }
    }

    /// Extent of the log right now.
    pub fn stats(&self) -> LogStats {
        let segments = read_guard(&self.inner.shared.segments);
        LogStats {
            start_offset: segments.first().map_or(0, |s| s.base_offset),
            end_offset: self.end_offset(),
            segments: segments.len(),
            bytes: segments.iter().map(|s| s.len()).sum(),
        }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Diagnostics for tests: whether a writer thread runs now (it exits
    /// after [`LogOptions::writer_idle`] without commands).
    #[doc(hidden)]
    pub fn writer_running(&self) -> bool {
        self.inner.writer.running()
    }

    /// Diagnostics for tests: writer threads started since open, the first
    /// included.
    #[doc(hidden)]
    pub fn writer_starts(&self) -> u64 {
        self.inner.writer.starts()
    }

    /// Diagnostics for tests: bytes held by this log's tail cache.
    #[doc(hidden)]
    pub fn tail_cache_bytes(&self) -> usize {
        read_guard(&self.inner.shared.cache).bytes()
    }

    /// Diagnostics for tests and benches: how many syncs succeeded since
    /// open (group commit makes this much smaller than the append count).
    #[doc(hidden)]
    pub fn sync_count(&self) -> u64 {
        self.inner.shared.syncs.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for TopicLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicLog")
            .field("dir", &self.inner.shared.dir)
            .field("end_offset", &self.end_offset())
            .finish_non_exhaustive()
    }
}

/// Encodes one stored event as a self-checking record (the log's own framing
/// and CRC), for keeping copies outside the log, e.g. in dead letters.
pub fn encode_event(event: &StoredEvent) -> Vec<u8> {
    let mut buf = Vec::new();
    codec::encode_record(&mut buf, event.offset, event.publish_time_us, &event.event);
    buf
}

/// Decodes a record made by [`encode_event`].
///
/// # Errors
/// `StorageError::Corrupt` when the bytes are not one whole, intact record.
pub fn decode_event(bytes: &[u8]) -> Result<StoredEvent, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: PathBuf::from("<event copy>"),
        reason,
    };
    match codec::parse_frame(bytes).map_err(|e| corrupt(e.to_string()))? {
        codec::Frame::Complete { total_len } if total_len == bytes.len() => {
            let payload = bytes::Bytes::copy_from_slice(&bytes[codec::HEADER_LEN..]);
            codec::decode_payload(&payload).map_err(|e| corrupt(e.to_string()))
        }
        _ => Err(corrupt("not exactly one whole record".into())),
    }
}
