//! Durable metadata and consumer-group state, in an embedded `redb` database
//! (`<data_dir>/meta.redb`).
//!
//! Storage layer. Values are opaque bytes chosen by the broker (it owns the
//! formats); this module only keeps them crash-safe: every call is one redb
//! write transaction with immediate durability (two-phase commit on fsync),
//! so a `kill -9` leaves either the old or the new value, never a torn one.
//! Group state is written in batches by the broker's state writer, so the
//! number of commits does not grow with the ack rate.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::StorageError;

const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
const GROUPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("groups");
const GROUP_STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("group_state");
const DEAD_LETTERS: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("dead_letters");
const SERVER: TableDefinition<&str, &[u8]> = TableDefinition::new("server");

/// Changes to one group's dead letters, written with the group's state.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterOps {
    /// Records to create or replace, by id.
    pub put: Vec<(u64, Vec<u8>)>,
    /// Records to delete, by id.
    pub delete: Vec<u64>,
}

/// A `(topic, group)` pair naming a consumer group.
pub type GroupKey = (String, String);

/// The metadata database. Methods block on disk I/O: call them from
/// `spawn_blocking` (or at start-up) rather than on a busy async task.
pub struct MetaStore {
    db: Database,
}

fn meta_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Meta(e.to_string())
}

impl MetaStore {
    /// Opens or creates the database file at `path`.
    ///
    /// # Errors
    /// `StorageError::Meta` when the file cannot be opened, is locked by
    /// another process, or is not a redb database.
    pub fn open(path: &Path) -> Result<MetaStore, StorageError> {
        let db = Database::create(path)
            .map_err(|e| StorageError::Meta(format!("opening {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(meta_err)?;
        {
            txn.open_table(TOPICS).map_err(meta_err)?;
            txn.open_table(GROUPS).map_err(meta_err)?;
            txn.open_table(GROUP_STATE).map_err(meta_err)?;
            txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
            txn.open_table(SERVER).map_err(meta_err)?;
        }
        txn.commit().map_err(meta_err)?;
        Ok(MetaStore { db })
    }

    /// A random value created with the database and kept with it (used to
    /// sign page tokens so they stay valid across restarts).
    ///
    /// # Errors
    /// `StorageError::Meta` when the read or first write fails.
    pub fn secret(&self, fresh: u64) -> Result<u64, StorageError> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        let value = {
            let mut table = txn.open_table(SERVER).map_err(meta_err)?;
            let existing = table
                .get("secret")
                .map_err(meta_err)?
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok());
            match existing {
                Some(bytes) => u64::from_le_bytes(bytes),
                None => {
                    table
                        .insert("secret", fresh.to_le_bytes().as_slice())
                        .map_err(meta_err)?;
                    fresh
                }
            }
        };
        txn.commit().map_err(meta_err)?;
        Ok(value)
    }

    /// All dead-letter records of a group, by ascending id.
    ///
    /// # Errors
    /// `StorageError::Meta` when the read fails.
    pub fn dead_letters(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let table = txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
        let mut out = Vec::new();
        for entry in table
            .range((topic, group, 0u64)..=(topic, group, u64::MAX))
            .map_err(meta_err)?
        {
            let (k, v) = entry.map_err(meta_err)?;
            out.push((k.value().2, v.value().to_vec()));
        }
        Ok(out)
    }

    /// Stores (creates or replaces) a topic record.
    ///
    /// # Errors
    /// `StorageError::Meta` when the commit fails.
    pub fn put_topic(&self, name: &str, record: &[u8]) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        txn.open_table(TOPICS)
            .map_err(meta_err)?
            .insert(name, record)
            .map_err(meta_err)?;
        txn.commit().map_err(meta_err)
    }

    /// Deletes a topic record together with all its groups and their state.
    ///
    /// # Errors
    /// `StorageError::Meta` when the commit fails.
    pub fn delete_topic(&self, name: &str) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            txn.open_table(TOPICS)
                .map_err(meta_err)?
                .remove(name)
                .map_err(meta_err)?;
            delete_dead_letters(&txn, name, None)?;
            for def in [GROUPS, GROUP_STATE] {
                let mut table = txn.open_table(def).map_err(meta_err)?;
                let keys: Vec<String> = table
                    .range((name, "")..)
                    .map_err(meta_err)?
                    .map_while(|entry| {
                        let (key, _) = entry.ok()?;
                        let (topic, group) = key.value();
                        (topic == name).then(|| group.to_string())
                    })
                    .collect();
                for group in keys {
                    table.remove((name, group.as_str())).map_err(meta_err)?;
                }
            }
        }
        txn.commit().map_err(meta_err)
    }

    /// All topic records, in name order.
    ///
    /// # Errors
    /// `StorageError::Meta` when the read fails.
    pub fn topics(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let table = txn.open_table(TOPICS).map_err(meta_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(meta_err)? {
            let (k, v) = entry.map_err(meta_err)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Replaces the record of an existing group.
    ///
    /// # Errors
    /// `StorageError::NotFound` when the group has no record;
    /// `StorageError::Meta` when the commit fails.
    pub fn put_group(&self, topic: &str, group: &str, record: &[u8]) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            let mut groups = txn.open_table(GROUPS).map_err(meta_err)?;
            // Checked in the writing transaction: an update never re-creates
            // a group that a concurrent delete removed.
            if groups.get((topic, group)).map_err(meta_err)?.is_none() {
                return Err(StorageError::NotFound(format!(
                    "group {group:?} of topic {topic:?} does not exist"
                )));
            }
            groups.insert((topic, group), record).map_err(meta_err)?;
        }
        txn.commit().map_err(meta_err)
    }

    /// Stores a group record and its initial state in one transaction, so a
    /// group never exists without a starting position, and only while its
    /// topic's record exists (checked in the same transaction).
    ///
    /// # Errors
    /// `StorageError::NotFound` when the topic has no record;
    /// `StorageError::Meta` when the commit fails.
    pub fn create_group(
        &self,
        topic: &str,
        group: &str,
        record: &[u8],
        state: &[u8],
    ) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
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
            txn.open_table(GROUPS)
                .map_err(meta_err)?
                .insert((topic, group), record)
                .map_err(meta_err)?;
            txn.open_table(GROUP_STATE)
                .map_err(meta_err)?
                .insert((topic, group), state)
                .map_err(meta_err)?;
        }
        txn.commit().map_err(meta_err)
    }

    /// Deletes a group record and its state.
    ///
    /// # Errors
    /// `StorageError::Meta` when the commit fails.
    pub fn delete_group(&self, topic: &str, group: &str) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            txn.open_table(GROUPS)
                .map_err(meta_err)?
                .remove((topic, group))
                .map_err(meta_err)?;
            txn.open_table(GROUP_STATE)
                .map_err(meta_err)?
                .remove((topic, group))
                .map_err(meta_err)?;
            delete_dead_letters(&txn, topic, Some(group))?;
        }
        txn.commit().map_err(meta_err)
    }

    /// All group records with their state (if any), in (topic, group) order.
    ///
    /// # Errors
    /// `StorageError::Meta` when the read fails.
    #[allow(clippy::type_complexity)]
    pub fn groups(&self) -> Result<Vec<(GroupKey, Vec<u8>, Option<Vec<u8>>)>, StorageError> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let groups = txn.open_table(GROUPS).map_err(meta_err)?;
        let states = txn.open_table(GROUP_STATE).map_err(meta_err)?;
        let mut out = Vec::new();
        for entry in groups.iter().map_err(meta_err)? {
            let (k, v) = entry.map_err(meta_err)?;
            let (topic, group) = k.value();
            let state = states
                .get((topic, group))
                .map_err(meta_err)?
                .map(|s| s.value().to_vec());
            out.push((
                (topic.to_string(), group.to_string()),
                v.value().to_vec(),
                state,
            ));
        }
        Ok(out)
    }

    /// Writes the state of many groups, and their dead-letter changes, in one
    /// durable transaction (group commit for acks). Groups that no longer
    /// exist are skipped, so a late flush cannot resurrect a deleted group.
    ///
    /// # Errors
    /// `StorageError::Meta` when the commit fails; then none was written.
    pub fn put_group_states(
        &self,
        states: &[(GroupKey, Vec<u8>)],
        dead_letters: &[(GroupKey, DeadLetterOps)],
    ) -> Result<(), StorageError> {
        if states.is_empty() && dead_letters.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            let groups = txn.open_table(GROUPS).map_err(meta_err)?;
            let mut dls = txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
            for ((topic, group), ops) in dead_letters {
                if groups
                    .get((topic.as_str(), group.as_str()))
                    .map_err(meta_err)?
                    .is_none()
                {
                    continue;
                }
                for (id, bytes) in &ops.put {
                    dls.insert((topic.as_str(), group.as_str(), *id), bytes.as_slice())
                        .map_err(meta_err)?;
                }
                for id in &ops.delete {
                    dls.remove((topic.as_str(), group.as_str(), *id))
                        .map_err(meta_err)?;
                }
            }
            let mut table = txn.open_table(GROUP_STATE).map_err(meta_err)?;
            for ((topic, group), state) in states {
                let key = (topic.as_str(), group.as_str());
                if groups.get(key).map_err(meta_err)?.is_some() {
                    table.insert(key, state.as_slice()).map_err(meta_err)?;
                }
            }
        }
        txn.commit().map_err(meta_err)
    }
}

/// Deletes the dead letters of one group, or of every group of a topic.
fn delete_dead_letters(
    txn: &redb::WriteTransaction,
    topic: &str,
    group: Option<&str>,
) -> Result<(), StorageError> {
    let mut table = txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
    let keys: Vec<(String, u64)> = table
        .range((topic, group.unwrap_or(""), 0u64)..)
        .map_err(meta_err)?
        .map_while(|entry| {
            let (key, _) = entry.ok()?;
            let (t, g, id) = key.value();
            (t == topic && group.is_none_or(|want| want == g)).then(|| (g.to_string(), id))
        })
        .collect();
    for (g, id) in keys {
        table.remove((topic, g.as_str(), id)).map_err(meta_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_topic_delete_cascades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let store = MetaStore::open(&path).unwrap();
            store.put_topic("orders", b"t1").unwrap();
            store.put_topic("users", b"t2").unwrap();
            store
                .create_group("orders", "billing", b"g1", b"s1")
                .unwrap();
            store.create_group("orders", "audit", b"g2", b"s2").unwrap();
            store.create_group("users", "audit", b"g3", b"s3").unwrap();
            let ops = DeadLetterOps {
                put: vec![(1, b"dl1".to_vec()), (2, b"dl2".to_vec())],
                delete: vec![],
            };
            store
                .put_group_states(
                    &[
                        (("orders".into(), "billing".into()), b"s1b".to_vec()),
                        (("orders".into(), "ghost".into()), b"zz".to_vec()),
                    ],
                    &[
                        (("orders".into(), "billing".into()), ops.clone()),
                        (("orders".into(), "ghost".into()), ops),
                    ],
                )
                .unwrap();
        }
        let store = MetaStore::open(&path).unwrap();
        assert_eq!(store.topics().unwrap().len(), 2);
        let groups = store.groups().unwrap();
        assert_eq!(
            groups.len(),
            3,
            "the ghost group's state must not create a group"
        );
        let billing = groups.iter().find(|g| g.0.1 == "billing").unwrap();
        assert_eq!(billing.2.as_deref(), Some(&b"s1b"[..]));
        assert_eq!(store.dead_letters("orders", "billing").unwrap().len(), 2);
        assert!(store.dead_letters("orders", "ghost").unwrap().is_empty());
        let secret = store.secret(7).unwrap();
        assert_eq!(store.secret(8).unwrap(), secret, "kept once created");

        store.delete_topic("orders").unwrap();
        assert!(store.dead_letters("orders", "billing").unwrap().is_empty());
        let groups = store.groups().unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0, ("users".to_string(), "audit".to_string()));
        assert_eq!(
            store.topics().unwrap(),
            vec![("users".to_string(), b"t2".to_vec())]
        );
    }

    /// Regression (issue 8, finding 2): the existence checks happen in the
    /// writing transaction, so a racing delete cannot be undone.
    #[test]
    fn writes_never_resurrect_deleted_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
        store.put_topic("orders", b"t").unwrap();
        store.create_group("orders", "billing", b"g", b"s").unwrap();
        store.delete_group("orders", "billing").unwrap();
        let err = store.put_group("orders", "billing", b"g2").unwrap_err();
        assert!(matches!(err, StorageError::NotFound(_)), "{err}");
        store.delete_topic("orders").unwrap();
        let err = store
            .create_group("orders", "audit", b"g", b"s")
            .unwrap_err();
        assert!(matches!(err, StorageError::NotFound(_)), "{err}");
        assert!(store.groups().unwrap().is_empty());
    }
}
