//! Durable metadata, consumer-group progress and dead letters, in an
//! embedded `redb` database (`<data_dir>/meta.redb`).
//!
//! Storage layer. Records of topics and groups are opaque bytes chosen by
//! the broker; group progress (`state.rs`) and dead letters
//! (`dead_letters.rs`) are typed and encoded here. Every write is one redb
//! transaction with immediate durability (two-phase commit on fsync), so a
//! `kill -9` leaves either the old or the new value, never a torn one.
//! Group progress is written in batches by the broker's state writer, so the
//! number of commits does not grow with the ack rate.
//!
//! **Failures.** redb refuses every operation after an I/O error until the
//! database is reopened. The store then reports itself unhealthy
//! ([`MetaStore::healthy`]) and fails every call with
//! [`StorageError::Unavailable`]; [`MetaStore::reopen`] closes the file and
//! opens it again, which rolls back to the last commit that was synced. The
//! broker reloads group state from there.
//!
//! Tables: `topics` (name → record), `groups` ((topic, group) → record),
//! `group_state` ((topic, group) → header), `group_entries` ((topic, group,
//! key) → entry), `dead_letters` ((topic, group, id) → record),
//! `dead_letter_forwarded` ((topic, group) → progress, `forwarded.rs`),
//! `server` (`secret`, `clean`, `format`).

mod backend;
mod dead_letters;
mod forwarded;
mod migrate;
mod queries;
mod state;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

pub use crate::model::results::DeadLetter;
pub use dead_letters::DeadLetterSummary;
pub use migrate::fresh_generation;
pub use queries::PageRequest;
pub use state::{GroupState, StateDelta, StateHeader, StoredEntry};

use crate::storage::StorageError;
use backend::Backend;

const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
const GROUPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("groups");
const GROUP_STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("group_state");
const GROUP_ENTRIES: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("group_entries");
const DEAD_LETTERS: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("dead_letters");
const SERVER: TableDefinition<&str, &[u8]> = TableDefinition::new("server");
const FORWARDED: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("dead_letter_forwarded");

/// Page cache of the metadata database unless configured.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// Entry keys of replayed dead letters are `REPLAY_BIT | dead-letter id`;
/// offsets stay below it.
pub const REPLAY_BIT: u64 = 1 << 63;

/// Changes to one group's dead letters, written with the group's state.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterOps {
    /// Records to create or replace.
    pub put: Vec<DeadLetter>,
    /// Records to delete, by id.
    pub delete: Vec<u64>,
}

impl DeadLetterOps {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }
}

/// One group's share of a state-writer commit.
#[derive(Debug, Clone)]
pub struct StateWrite {
    /// Topic name.
    pub topic: String,
    /// Group name.
    pub group: String,
    /// The group's generation; the write is skipped for any other (the
    /// group was deleted, and maybe created anew, meanwhile).
    pub generation: u64,
    /// Progress changes, if any.
    pub delta: Option<StateDelta>,
    /// Dead-letter changes.
    pub dead_letters: DeadLetterOps,
}

/// A group as loaded at start-up.
#[derive(Debug, Clone)]
pub struct StoredGroup {
    /// Topic name.
    pub topic: String,
    /// Group name.
    pub group: String,
    /// The broker's record.
    pub record: Vec<u8>,
    /// Its progress.
    pub state: GroupState,
    /// Summaries of its dead letters, by ascending id.
    pub dead_letters: Vec<DeadLetterSummary>,
}

/// The metadata database. Methods block on disk I/O: call them from
/// `spawn_blocking` (or at start-up) rather than on a busy async task.
pub struct MetaStore {
    path: PathBuf,
    /// Size of redb's page cache.
    cache_bytes: usize,
    /// `None` while a failed database is closed and not yet reopened.
    db: RwLock<Option<Database>>,
    healthy: AtomicBool,
    /// Told when the store turns unhealthy.
    failure: tokio::sync::Notify,
    /// Fault injection: makes writes fail like a full disk.
    fail: Arc<AtomicBool>,
}

fn meta_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Meta(e.to_string())
}

impl MetaStore {
    /// Opens or creates the database file at `path` and migrates data of
    /// release 0.1 to the current formats.
    ///
    /// # Errors
    /// `StorageError::Meta` when the file cannot be opened, is locked by
    /// another process, is not a redb database, or was written by a newer
    /// release.
    pub fn open(path: &Path) -> Result<MetaStore, StorageError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`MetaStore::open`] with a page cache of `cache_bytes` (redb's own
    /// default is 1 GiB).
    ///
    /// # Errors
    /// As [`MetaStore::open`].
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<MetaStore, StorageError> {
        let fail = Arc::new(AtomicBool::new(false));
        let db = open_db(path, &fail, cache_bytes)?;
        let store = MetaStore {
            path: path.to_path_buf(),
            cache_bytes,
            db: RwLock::new(Some(db)),
            healthy: AtomicBool::new(true),
            failure: tokio::sync::Notify::new(),
            fail,
        };
        store.write(|txn| {
            txn.open_table(TOPICS).map_err(meta_err)?;
            txn.open_table(GROUPS).map_err(meta_err)?;
            txn.open_table(GROUP_STATE).map_err(meta_err)?;
            txn.open_table(GROUP_ENTRIES).map_err(meta_err)?;
            txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
            txn.open_table(SERVER).map_err(meta_err)?;
            txn.open_table(FORWARDED).map_err(meta_err)?;
            migrate::to_current(txn)
        })?;
        Ok(store)
    }

    /// False after a failed write, until [`reopen`](Self::reopen) succeeds.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Completes when the store turns unhealthy (at once if it did since the
    /// last call).
    pub async fn failed(&self) {
        self.failure.notified().await;
    }

    /// Closes the database and opens it again (rolling back to the last
    /// synced commit), then marks the store healthy.
    ///
    /// # Errors
    /// The file cannot be opened yet; the store stays unhealthy.
    pub fn reopen(&self) -> Result<(), StorageError> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        // Dropping the database closes the file and releases its lock.
        *db = None;
        let fresh = open_db(&self.path, &self.fail, self.cache_bytes)?;
        *db = Some(fresh);
        self.healthy.store(true, Ordering::Release);
        tracing::info!("metadata store reopened after a failure");
        Ok(())
    }

    /// Test hook: while on, writes fail as on a full disk. Not for
    /// production use.
    #[doc(hidden)]
    pub fn inject_write_failures(&self, on: bool) {
        self.fail.store(on, Ordering::Release);
    }

    /// Runs `f` in one write transaction and commits it; any failure but a
    /// missing record marks the store unhealthy.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = self.usable(&guard)?;
        let result = db.begin_write().map_err(meta_err).and_then(|txn| {
            let value = f(&txn)?;
            txn.commit().map_err(meta_err)?;
            Ok(value)
        });
        self.note(result)
    }

    /// Runs `f` in one read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = self.usable(&guard)?;
        let result = db.begin_read().map_err(meta_err).and_then(|txn| f(&txn));
        self.note(result)
    }

    fn usable<'a>(&self, guard: &'a Option<Database>) -> Result<&'a Database, StorageError> {
        match guard {
            Some(db) if self.healthy() => Ok(db),
            _ => Err(StorageError::Unavailable(
                "the metadata store failed and is being reopened".into(),
            )),
        }
    }

    /// A failure of the store (anything but a missing record) makes it
    /// unhealthy, and the caller sees UNAVAILABLE: retry later.
    fn note<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        match result {
            Err(StorageError::Meta(e)) => {
                if self.healthy.swap(false, Ordering::AcqRel) {
                    tracing::error!(error = %e, "metadata store failed; refusing writes until it is reopened");
                    self.failure.notify_one();
                }
                Err(StorageError::Unavailable(format!(
                    "the metadata store failed ({e}); retry later"
                )))
            }
            other => other,
        }
    }

    /// A random key created with the database and kept with it (it signs
    /// ack ids and page tokens, so they stay valid across restarts). A
    /// database of release 0.1 had an 8-byte value; it is replaced.
    ///
    /// # Errors
    /// When the read or first write fails.
    pub fn secret(&self, fresh: [u8; 16]) -> Result<[u8; 16], StorageError> {
        self.write(|txn| {
            let mut table = txn.open_table(SERVER).map_err(meta_err)?;
            let existing = table
                .get("secret")
                .map_err(meta_err)?
                .and_then(|v| <[u8; 16]>::try_from(v.value()).ok());
            Ok(match existing {
                Some(bytes) => bytes,
                None => {
                    table.insert("secret", fresh.as_slice()).map_err(meta_err)?;
                    fresh
                }
            })
        })
    }

    /// Whether the last run ended with [`mark_clean`](Self::mark_clean);
    /// marks this run as not (yet) clean. A database without the mark
    /// (new, or from release 0.1) counts as clean.
    ///
    /// # Errors
    /// When the write fails.
    pub fn take_clean_mark(&self) -> Result<bool, StorageError> {
        self.write(|txn| {
            let mut table = txn.open_table(SERVER).map_err(meta_err)?;
            let clean = table
                .get("clean")
                .map_err(meta_err)?
                .is_none_or(|v| v.value() == [1]);
            table.insert("clean", [0u8].as_slice()).map_err(meta_err)?;
            Ok(clean)
        })
    }

    /// Records that every group's progress was written exactly (graceful
    /// shutdown).
    ///
    /// # Errors
    /// When the write fails.
    pub fn mark_clean(&self) -> Result<(), StorageError> {
        self.write(|txn| {
            txn.open_table(SERVER)
                .map_err(meta_err)?
                .insert("clean", [1u8].as_slice())
                .map_err(meta_err)?;
            Ok(())
        })
    }

    /// Stores (creates or replaces) a topic record.
    ///
    /// # Errors
    /// When the commit fails.
    pub fn put_topic(&self, name: &str, record: &[u8]) -> Result<(), StorageError> {
        self.write(|txn| {
            txn.open_table(TOPICS)
                .map_err(meta_err)?
                .insert(name, record)
                .map_err(meta_err)?;
            Ok(())
        })
    }

    /// Deletes a topic record together with all its groups, their progress
    /// and their dead letters.
    ///
    /// # Errors
    /// When the commit fails.
    pub fn delete_topic(&self, name: &str) -> Result<(), StorageError> {
        self.write(|txn| {
            txn.open_table(TOPICS)
                .map_err(meta_err)?
                .remove(name)
                .map_err(meta_err)?;
            let groups: Vec<String> = {
                let table = txn.open_table(GROUPS).map_err(meta_err)?;
                let mut out = Vec::new();
                for entry in table.range((name, "")..).map_err(meta_err)? {
                    let (key, _) = entry.map_err(meta_err)?;
                    let (topic, group) = key.value();
                    if topic != name {
                        break;
                    }
                    out.push(group.to_string());
                }
                out
            };
            for group in groups {
                delete_group_rows(txn, name, &group)?;
            }
            Ok(())
        })
    }

    /// All topic records, in name order.
    ///
    /// # Errors
    /// When the read fails.
    pub fn topics(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.read(|txn| {
            let table = txn.open_table(TOPICS).map_err(meta_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(meta_err)? {
                let (k, v) = entry.map_err(meta_err)?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Replaces the record of an existing group.
    ///
    /// # Errors
    /// `NotFound` when the group has no record (checked in the writing
    /// transaction, so an update never re-creates a group that a concurrent
    /// delete removed); otherwise when the commit fails.
    pub fn put_group(&self, topic: &str, group: &str, record: &[u8]) -> Result<(), StorageError> {
        self.write(|txn| {
            let mut groups = txn.open_table(GROUPS).map_err(meta_err)?;
            if groups.get((topic, group)).map_err(meta_err)?.is_none() {
                return Err(StorageError::NotFound(format!(
                    "group {group:?} of topic {topic:?} does not exist"
                )));
            }
            groups.insert((topic, group), record).map_err(meta_err)?;
            Ok(())
        })
    }

    /// Stores a group record and its initial progress in one transaction,
    /// so a group never exists without a starting position, and only while
    /// its topic's record exists (checked in the same transaction).
    ///
    /// # Errors
    /// `NotFound` when the topic has no record; otherwise when the commit fails.
    pub fn create_group(
        &self,
        topic: &str,
        group: &str,
        record: &[u8],
        header: &StateHeader,
    ) -> Result<(), StorageError> {
        self.write(|txn| {
            if txn
                .open_table(TOPICS)
                .map_err(meta_err)?
                .get(topic)
                .map_err(meta_err)?
                .is_none()
            {
                return Err(StorageError::NotFound(format!(
                    "topic {topic:?} does not exist"
                )));
            }
            // Rows of an earlier group of this name cannot be left over
            // (deletes remove them), but make sure.
            delete_group_rows(txn, topic, group)?;
            txn.open_table(GROUPS)
                .map_err(meta_err)?
                .insert((topic, group), record)
                .map_err(meta_err)?;
            txn.open_table(GROUP_STATE)
                .map_err(meta_err)?
                .insert((topic, group), header.encode().as_slice())
                .map_err(meta_err)?;
            Ok(())
        })
    }

    /// Stores many topic records, and group records with their initial
    /// progress, in one transaction (bulk set-up by tools and tests; the
    /// broker creates one at a time).
    ///
    /// # Errors
    /// When the commit fails; then none was written.
    #[doc(hidden)]
    pub fn create_many(
        &self,
        topics: &[(String, Vec<u8>)],
        groups: &[(String, String, Vec<u8>, StateHeader)],
    ) -> Result<(), StorageError> {
        self.write(|txn| {
            let mut t = txn.open_table(TOPICS).map_err(meta_err)?;
            for (name, record) in topics {
                t.insert(name.as_str(), record.as_slice())
                    .map_err(meta_err)?;
            }
            let mut g = txn.open_table(GROUPS).map_err(meta_err)?;
            let mut h = txn.open_table(GROUP_STATE).map_err(meta_err)?;
            for (topic, group, record, header) in groups {
                let key = (topic.as_str(), group.as_str());
                g.insert(key, record.as_slice()).map_err(meta_err)?;
                h.insert(key, header.encode().as_slice())
                    .map_err(meta_err)?;
            }
            Ok(())
        })
    }

    /// Deletes a group record with its progress and dead letters.
    ///
    /// # Errors
    /// When the commit fails.
    pub fn delete_group(&self, topic: &str, group: &str) -> Result<(), StorageError> {
        self.write(|txn| delete_group_rows(txn, topic, group))
    }

    /// Every group with its record, progress and dead-letter summaries, in
    /// (topic, group) order, read in one transaction.
    ///
    /// # Errors
    /// When the read fails or a stored value is unreadable.
    pub fn groups(&self) -> Result<Vec<StoredGroup>, StorageError> {
        self.read(|txn| {
            let groups = txn.open_table(GROUPS).map_err(meta_err)?;
            let states = txn.open_table(GROUP_STATE).map_err(meta_err)?;
            let entries = txn.open_table(GROUP_ENTRIES).map_err(meta_err)?;
            let dls = txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
            let mut out = Vec::new();
            for entry in groups.iter().map_err(meta_err)? {
                let (k, v) = entry.map_err(meta_err)?;
                let (topic, group) = k.value();
                let header = match states.get((topic, group)).map_err(meta_err)? {
                    Some(h) => StateHeader::decode(h.value())?,
                    None => StateHeader::default(),
                };
                let mut rows = Vec::new();
                for row in entries
                    .range((topic, group, 0u64)..=(topic, group, u64::MAX))
                    .map_err(meta_err)?
                {
                    let (k, v) = row.map_err(meta_err)?;
                    rows.push(StoredEntry::decode(k.value().2, v.value())?);
                }
                let mut dead_letters = Vec::new();
                for row in dls
                    .range((topic, group, 0u64)..=(topic, group, u64::MAX))
                    .map_err(meta_err)?
                {
                    let (k, v) = row.map_err(meta_err)?;
                    dead_letters.push(DeadLetterSummary::decode(k.value().2, v.value())?);
                }
                out.push(StoredGroup {
                    topic: topic.to_string(),
                    group: group.to_string(),
                    record: v.value().to_vec(),
                    state: GroupState {
                        header,
                        entries: rows,
                    },
                    dead_letters,
                });
            }
            Ok(out)
        })
    }

    /// Writes the progress and dead-letter changes of many groups in one
    /// durable transaction (group commit for acks). A write whose group no
    /// longer exists, or exists with another generation, is skipped, so a
    /// late flush cannot resurrect a deleted group or overwrite a new one.
    ///
    /// # Errors
    /// When the commit fails; then none was written.
    pub fn put_group_states(&self, writes: &[StateWrite]) -> Result<(), StorageError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut states = txn.open_table(GROUP_STATE).map_err(meta_err)?;
            let mut entries = txn.open_table(GROUP_ENTRIES).map_err(meta_err)?;
            let mut dls = txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
            for w in writes {
                let key = (w.topic.as_str(), w.group.as_str());
                let current = match states.get(key).map_err(meta_err)? {
                    Some(h) => StateHeader::decode(h.value())?.generation,
                    None => continue,
                };
                if current != w.generation {
                    continue;
                }
                if let Some(delta) = &w.delta {
                    for k in &delta.deletes {
                        entries.remove((key.0, key.1, *k)).map_err(meta_err)?;
                    }
                    for e in &delta.upserts {
                        entries
                            .insert((key.0, key.1, e.key), e.encode().as_slice())
                            .map_err(meta_err)?;
                    }
                    states
                        .insert(key, delta.header.encode().as_slice())
                        .map_err(meta_err)?;
                }
                for dl in &w.dead_letters.put {
                    dls.insert((key.0, key.1, dl.id), dl.encode().as_slice())
                        .map_err(meta_err)?;
                }
                for id in &w.dead_letters.delete {
                    dls.remove((key.0, key.1, *id)).map_err(meta_err)?;
                }
            }
            Ok(())
        })
    }
}

fn open_db(
    path: &Path,
    fail: &Arc<AtomicBool>,
    cache_bytes: usize,
) -> Result<Database, StorageError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
    let backend = Backend::new(file, fail.clone())
        .map_err(|e| StorageError::Meta(format!("opening {}: {e}", path.display())))?;
    Database::builder()
        .set_cache_size(cache_bytes)
        .create_with_backend(backend)
        .map_err(|e| StorageError::Meta(format!("opening {}: {e}", path.display())))
}

/// Deletes a group's record, header, entry rows and dead letters.
fn delete_group_rows(txn: &WriteTransaction, topic: &str, group: &str) -> Result<(), StorageError> {
    txn.open_table(GROUPS)
        .map_err(meta_err)?
        .remove((topic, group))
        .map_err(meta_err)?;
    for def in [GROUP_STATE, FORWARDED] {
        txn.open_table(def)
            .map_err(meta_err)?
            .remove((topic, group))
            .map_err(meta_err)?;
    }
    for def in [GROUP_ENTRIES, DEAD_LETTERS] {
        let mut table = txn.open_table(def).map_err(meta_err)?;
        let keys: Vec<u64> = {
            let mut keys = Vec::new();
            for row in table
                .range((topic, group, 0u64)..=(topic, group, u64::MAX))
                .map_err(meta_err)?
            {
                keys.push(row.map_err(meta_err)?.0.value().2);
            }
            keys
        };
        for k in keys {
            table.remove((topic, group, k)).map_err(meta_err)?;
        }
    }
    Ok(())
}
