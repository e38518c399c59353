//! A topic: its log, its settings and its running groups.
//!
//! Storage layer (embedded backend).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use super::group::GroupHandle;
use super::log::TopicLog;
use crate::model::results::{TopicInfo, TopicStats};
use crate::model::settings::TopicRecord;

/// A live topic.
pub struct Topic {
    /// Stored record, kept current by updates.
    pub(crate) record: Mutex<TopicRecord>,
    /// The event log.
    pub(crate) log: TopicLog,
    /// Running groups by name.
    pub(crate) groups: Mutex<BTreeMap<String, GroupHandle>>,
    /// Events published since start.
    pub(crate) published: AtomicU64,
    /// Cancelled when the topic is deleted: its readers end.
    pub(crate) deleted: CancellationToken,
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it
/// (every critical section here leaves the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Topic {
    pub(crate) fn new(record: TopicRecord, log: TopicLog) -> Topic {
        Topic {
            record: Mutex::new(record),
            log,
            groups: Mutex::new(BTreeMap::new()),
            published: AtomicU64::new(0),
            deleted: CancellationToken::new(),
        }
    }

    /// Name and settings with current counters.
    pub fn info(&self) -> TopicInfo {
        let log = self.log.stats();
        TopicInfo {
            record: lock(&self.record).clone(),
            stats: TopicStats {
                end_offset: log.end_offset,
                start_offset: log.start_offset,
                published: self.published.load(Ordering::Relaxed),
                bytes: log.bytes,
                segments: u32::try_from(log.segments).unwrap_or(u32::MAX),
                groups: u32::try_from(lock(&self.groups).len()).unwrap_or(u32::MAX),
            },
        }
    }

    pub(crate) fn group(&self, name: &str) -> Option<GroupHandle> {
        lock(&self.groups).get(name).cloned()
    }
}
