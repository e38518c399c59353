//! The server-wide budget for events held by consumer groups: what they
//! have read from the log and not yet seen acknowledged, including what
//! waits in consumers' streams.
//!
//! Storage layer (embedded backend). Each group also has a limit of its own
//! ([`super::dispatch::Limits::max_bytes`]); this budget bounds their sum, so
//! many groups over large events cannot add up past it. A group that holds
//! nothing may always read (one batch), so every group makes progress.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of events held by all groups, against a limit.
#[derive(Debug)]
pub struct MemoryBudget {
    used: AtomicUsize,
    limit: usize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes in use now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes left before the limit (0 when over it).
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    /// Moves a group's share from `before` to `after` bytes.
    pub fn update(&self, before: usize, after: usize) {
        if after > before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}
