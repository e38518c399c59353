//! Retention: deleting whole sealed segments that are too old, or that put
//! the log over its size limit, oldest first, and the named periodic task
//! "retention" that does so every [`LogOptions::retention_interval`].
//!
//! Storage layer. The active segment is never deleted, so a log can stay
//! above its byte limit by up to one segment and keep events older than its
//! age limit until their segment is sealed. Limits count records; the
//! active segment's file also holds up to `runway_bytes` allocated ahead
//! while it is written to (`writer/runway.rs`). A pass deletes the files first
//! (the index, then the log) and then drops the segments from the log's
//! list, moving the start offset; readers that already hold a segment keep
//! reading it through its open file handle, later ones get `OutOfRange`.
//! Passes are serialized; they are the only thing that removes segments, and
//! the writer only adds at the other end, so a pass can decide on a snapshot.
//!
//! [`LogOptions::retention_interval`]: super::LogOptions::retention_interval

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::segment::{self, Segment};
use super::{Handle, Shared, lock_guard, micros, read_guard, write_guard};
use crate::event::now_us;
use crate::storage::StorageError;

/// The limits of one log; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Delete sealed segments whose newest event is older than this.
    pub max_age: Option<Duration>,
    /// Delete the oldest sealed segments while the log is larger than this.
    pub max_bytes: Option<u64>,
}

impl RetentionPolicy {
    fn is_unlimited(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }

    /// How many segments from the front (never the last, active one) this
    /// policy deletes at `now_us`.
    fn doomed(&self, segments: &[Arc<Segment>], now_us: i64) -> usize {
        let sealed = segments.len().saturating_sub(1);
        let cutoff = self.max_age.map(|age| now_us.saturating_sub(micros(age)));
        let mut total: u64 = segments.iter().map(|s| s.len()).sum();
        let mut count = 0;
        for segment in segments.iter().take(sealed) {
            // A segment without records holds nothing worth keeping.
            let too_old = cutoff.is_some_and(|cutoff| {
                segment
                    .last_publish_time()
                    .is_none_or(|newest| newest < cutoff)
            });
            let too_big = self.max_bytes.is_some_and(|max| total > max);
            if !too_old && !too_big {
                break;
            }
            total = total.saturating_sub(segment.len());
            count += 1;
        }
        count
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segment files deleted.
    pub segments_removed: usize,
    /// Events in them.
    pub events_removed: u64,
    /// Bytes of records in them.
    pub bytes_removed: u64,
    /// First retained offset after the pass.
    pub start_offset: u64,
}

impl Shared {
    pub(super) fn retention_policy(&self) -> RetentionPolicy {
        *lock_guard(&self.retention)
    }

    pub(super) fn set_retention_policy(&self, policy: RetentionPolicy) {
        *lock_guard(&self.retention) = policy;
    }

    /// One retention pass (blocking file I/O).
    pub(super) fn enforce_retention(&self) -> Result<RetentionReport, StorageError> {
        let _pass = lock_guard(&self.retention_pass);
        let policy = self.retention_policy();
        let old_start = self.start.load(Ordering::Acquire);
        let mut report = RetentionReport {
            start_offset: old_start,
            ..RetentionReport::default()
        };
        if policy.is_unlimited() {
            return Ok(report);
        }
        let snapshot = read_guard(&self.segments).clone();
        let doomed = policy.doomed(&snapshot, now_us());
        if doomed == 0 {
            debug!(dir = %self.dir.display(), "retention: nothing to remove");
            return Ok(report);
        }
        // Oldest first, stopping at the first failure, so what remains on
        // disk is always a contiguous run of segments.
        let mut removed = 0;
        let mut failure = None;
        for segment in snapshot.iter().take(doomed) {
            match segment::remove_files(&self.dir, segment.base_offset) {
                Ok(()) => removed += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if removed > 0 {
            let mut segments = write_guard(&self.segments);
            // Only retention removes segments and passes are serialized,
            // so the snapshot's first `removed` are still the list's first.
            let gone: Vec<Arc<Segment>> = segments.drain(..removed).collect();
            if let Some(first) = segments.first() {
                self.start.store(first.base_offset, Ordering::Release);
                report.start_offset = first.base_offset;
            }
            drop(segments);
            report.segments_removed = gone.len();
            report.bytes_removed = gone.iter().map(|s| s.len()).sum();
            report.events_removed = report.start_offset.saturating_sub(old_start);
            let synced = segment::sync_dir(&self.dir);
            info!(
                dir = %self.dir.display(),
                segments = report.segments_removed,
                events = report.events_removed,
                bytes = report.bytes_removed,
                start_offset = report.start_offset,
                "retention removed old segments"
            );
            synced?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// Starts the retention task of the log behind `handle`; it ends on
/// `close()` or when the last handle is dropped.
pub fn spawn(
    tracker: &TaskTracker,
    handle: Weak<Handle>,
    every: Duration,
    stop: CancellationToken,
    dir: String,
) {
    let span = info_span!("retention", dir, interval_ms = every.as_millis() as u64);
    tracker.spawn(run(handle, every, stop).instrument(span));
}

async fn run(handle: Weak<Handle>, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick completes at once; the log was just opened.
    ticks.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let Some(handle) = handle.upgrade() else {
            break;
        };
        let shared = Arc::clone(&handle.shared);
        drop(handle);
        if shared.retention_policy().is_unlimited() {
            continue;
        }
        match tokio::task::spawn_blocking(move || shared.enforce_retention()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "retention pass failed; retrying next interval"),
            Err(e) => error!(error = %e, "retention pass panicked"),
        }
    }
    debug!("retention task stopped");
}
