//! The poisoned state of a log and the fault-injection hooks that lead to
//! it.
//!
//! Storage layer. After a failed write or sync the log is poisoned: appends
//! fail at once with [`StorageError::Poisoned`]. It is not poisoned for good:
//! the first append at least [`LogOptions::recovery_backoff`] after the
//! failure (or after the last recovery attempt) claims a recovery attempt,
//! which the writer runs before that append (`writer/recover.rs`); success
//! clears the poison.
//!
//! [`LogOptions::recovery_backoff`]: super::LogOptions::recovery_backoff

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::{Shared, TopicLog, lock_guard, micros};
use crate::storage::StorageError;

/// Whether, and why, a log refuses writes.
#[derive(Debug)]
pub struct PoisonState {
    /// Read on every append; the reason is only read when this is set.
    poisoned: AtomicBool,
    /// The first failure's public message, while poisoned.
    reason: Mutex<Option<String>>,
    /// Microseconds from `epoch` to the poisoning or the last recovery
    /// attempt claimed since, whichever is later.
    last_attempt_us: AtomicU64,
    epoch: Instant,
}

impl Default for PoisonState {
    fn default() -> Self {
        PoisonState {
            poisoned: AtomicBool::new(false),
            reason: Mutex::new(None),
            last_attempt_us: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl PoisonState {
    fn now_us(&self) -> u64 {
        u64::try_from(micros(self.epoch.elapsed())).unwrap_or(u64::MAX)
    }
}

/// Fault-injection switches for tests: each makes the next (or every) write
/// or sync of the active segment fail as if the OS had returned an error.
#[derive(Debug, Default)]
pub struct Faults {
    next_sync: AtomicBool,
    syncs: AtomicBool,
    writes: AtomicBool,
}

impl Faults {
    /// The injected sync failure, if one is due.
    pub fn sync(&self) -> io::Result<()> {
        if self.next_sync.swap(false, Ordering::AcqRel) || self.syncs.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "injected sync failure (fault-injection hook)",
            ));
        }
        Ok(())
    }

    /// The injected write failure, if writes are failing.
    pub fn write(&self) -> io::Result<()> {
        if self.writes.load(Ordering::Acquire) {
            // What a full disk answers.
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        Ok(())
    }
}

impl Shared {
    /// The error appends get while the log is poisoned.
    pub(super) fn poisoned(&self) -> Option<StorageError> {
        if !self.poison.poisoned.load(Ordering::Acquire) {
            return None;
        }
        let reason = lock_guard(&self.poison.reason).clone()?;
        Some(self.poisoned_error(reason))
    }

    pub(super) fn poisoned_error(&self, reason: String) -> StorageError {
        StorageError::Poisoned {
            path: self.dir.clone(),
            reason,
        }
    }

    /// Poisons the log with `reason` unless it already is. Returns the
    /// reason in effect (the first failure's) and whether this call
    /// poisoned it. Starts the back-off before the first recovery attempt.
    pub(super) fn set_poison(&self, reason: String) -> (String, bool) {
        let mut current = lock_guard(&self.poison.reason);
        if let Some(first) = current.as_ref() {
            return (first.clone(), false);
        }
        *current = Some(reason.clone());
        self.poison
            .last_attempt_us
            .store(self.poison.now_us(), Ordering::Release);
        self.poison.poisoned.store(true, Ordering::Release);
        (reason, true)
    }

    /// Writer only, after a successful recovery.
    pub(super) fn clear_poison(&self) {
        let mut current = lock_guard(&self.poison.reason);
        self.poison.poisoned.store(false, Ordering::Release);
        *current = None;
    }

    /// Claims the next recovery attempt if the back-off has passed since
    /// the poisoning or the last attempt; one caller wins.
    pub(super) fn claim_recovery(&self) -> bool {
        let backoff = u64::try_from(micros(self.opts.recovery_backoff)).unwrap_or(u64::MAX);
        let now = self.poison.now_us();
        let last = self.poison.last_attempt_us.load(Ordering::Acquire);
        now.saturating_sub(last) >= backoff
            && self
                .poison
                .last_attempt_us
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

impl TopicLog {
    /// Fault-injection hook for tests: the next sync of the active segment
    /// fails as if `fdatasync` had returned an error, which poisons the log.
    /// Not for production use.
    #[doc(hidden)]
    pub fn inject_sync_failure(&self) {
        self.inner
            .shared
            .faults
            .next_sync
            .store(true, Ordering::Release);
    }

    /// Fault-injection hook for tests: while `writes` is set every write of
    /// the active segment fails with "no space left" (`StorageFull`); while
    /// `syncs` is set every sync fails. Recovery attempts meet the same
    /// faults. Not for production use.
    #[doc(hidden)]
    pub fn set_io_faults(&self, writes: bool, syncs: bool) {
        let faults = &self.inner.shared.faults;
        faults.writes.store(writes, Ordering::Release);
        faults.syncs.store(syncs, Ordering::Release);
    }
}
