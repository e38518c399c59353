//! Brings a database written by an earlier release to the current formats,
//! in the transaction that opens it.
//!
//! Storage layer. The `server` table's `format` value says which format a
//! database is in: absent (release 0.1), or a number. Release 0.1 kept each
//! group's progress as one JSON value and flagged replayed dead letters in
//! their records; format 2 keeps a header plus one row per pending entry,
//! and a replay is an entry row keyed `REPLAY_BIT | id`. A database of a
//! format newer than this release knows is refused, untouched.
//!
//! The number versions the whole data directory: format 2 also means log
//! segments in record format 1 (`log/codec.rs`); a change to the segment
//! format bumps it too, so one check at open covers every file.

use redb::{ReadableTable, WriteTransaction};

use super::dead_letters::DeadLetterSummary;
use super::state::{self, StateHeader, StoredEntry};
use super::{DEAD_LETTERS, GROUP_ENTRIES, GROUP_STATE, GROUPS, REPLAY_BIT, SERVER, meta_err};
use crate::storage::StorageError;

/// The format this release writes.
pub const FORMAT: u8 = 2;

/// Migrates what is older; refuses what is newer.
///
/// # Errors
/// A newer format, unreadable release 0.1 values, or a failed write.
pub fn to_current(txn: &WriteTransaction) -> Result<(), StorageError> {
    let mut server = txn.open_table(SERVER).map_err(meta_err)?;
    let format = server
        .get("format")
        .map_err(meta_err)?
        .map(|v| v.value().first().copied().unwrap_or(0));
    match format {
        Some(f) if f == FORMAT => return Ok(()),
        Some(f) if f > FORMAT => {
            return Err(StorageError::Corrupt {
                path: std::path::PathBuf::from("meta.redb"),
                reason: format!(
                    "format {f}, written by a newer Herald; this release reads format {FORMAT} and older"
                ),
            });
        }
        _ => {}
    }
    let migrated = from_release_0_1(txn)?;
    server
        .insert("format", [FORMAT].as_slice())
        .map_err(meta_err)?;
    if migrated > 0 {
        tracing::info!(
            groups = migrated,
            "migrated group progress to format {FORMAT}"
        );
    }
    Ok(())
}

/// Converts JSON snapshots into headers and entry rows, and replay flags
/// into entry rows. Returns how many groups were converted.
fn from_release_0_1(txn: &WriteTransaction) -> Result<usize, StorageError> {
    let keys: Vec<(String, String)> = {
        let groups = txn.open_table(GROUPS).map_err(meta_err)?;
        let mut keys = Vec::new();
        for row in groups.iter().map_err(meta_err)? {
            let (k, _) = row.map_err(meta_err)?;
            let (t, g) = k.value();
            keys.push((t.to_string(), g.to_string()));
        }
        keys
    };
    let mut states = txn.open_table(GROUP_STATE).map_err(meta_err)?;
    let mut entries = txn.open_table(GROUP_ENTRIES).map_err(meta_err)?;
    let dls = txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
    let mut converted = 0;
    for (topic, group) in &keys {
        let key = (topic.as_str(), group.as_str());
        let value = states
            .get(key)
            .map_err(meta_err)?
            .map(|v| v.value().to_vec());
        let generation = fresh_generation();
        let loaded = match value {
            Some(bytes) if state::is_legacy(&bytes) => state::legacy(&bytes, generation)?,
            Some(_) => continue,
            None => state::GroupState {
                header: StateHeader {
                    generation,
                    ..StateHeader::default()
                },
                entries: Vec::new(),
            },
        };
        let mut rows: std::collections::BTreeMap<u64, StoredEntry> =
            loaded.entries.into_iter().map(|e| (e.key, e)).collect();
        for row in dls
            .range((key.0, key.1, 0u64)..=(key.0, key.1, u64::MAX))
            .map_err(meta_err)?
        {
            let (k, v) = row.map_err(meta_err)?;
            let id = k.value().2;
            if DeadLetterSummary::decode(id, v.value())?.legacy_replaying {
                rows.entry(REPLAY_BIT | id).or_insert(StoredEntry {
                    key: REPLAY_BIT | id,
                    ..StoredEntry::default()
                });
            }
        }
        for (k, e) in rows {
            entries
                .insert((key.0, key.1, k), e.encode().as_slice())
                .map_err(meta_err)?;
        }
        states
            .insert(key, loaded.header.encode().as_slice())
            .map_err(meta_err)?;
        converted += 1;
    }
    Ok(converted)
}

/// A new group generation: random, never zero.
pub fn fresh_generation() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 | 1
}
