//! How far each group's dead letters have been forwarded to its
//! dead-letter topic: one small row per forwarding group, written by the
//! broker's forwarder after each forwarded batch.
//!
//! Storage layer. Row (`dead_letter_forwarded` table, (topic, group) →
//! value): `"HFW" 0x01 | generation u64 | highest forwarded id u64`, little
//! endian. A row of another generation than the group's (a deleted group
//! of the same name) reads as nothing forwarded.

use redb::ReadableTable;

use super::state::le_u64;
use super::{FORWARDED, MetaStore, meta_err};
use crate::storage::StorageError;

const MAGIC: &[u8; 4] = b"HFW\x01";
const LEN: usize = 4 + 8 + 8;

impl MetaStore {
    /// The highest dead-letter id of the group's `generation` forwarded so
    /// far; 0 when none.
    ///
    /// # Errors
    /// When the read fails or the row is not a format this release reads.
    pub fn forwarded(
        &self,
        topic: &str,
        group: &str,
        generation: u64,
    ) -> Result<u64, StorageError> {
        self.read(|txn| {
            let table = txn.open_table(FORWARDED).map_err(meta_err)?;
            let Some(row) = table.get((topic, group)).map_err(meta_err)? else {
                return Ok(0);
            };
            let (g, upto) = decode(row.value())?;
            Ok(if g == generation { upto } else { 0 })
        })
    }

    /// Records that the group's dead letters up to `upto` are forwarded;
    /// never moves back. Durable when it returns.
    ///
    /// # Errors
    /// When the commit fails.
    pub fn set_forwarded(
        &self,
        topic: &str,
        group: &str,
        generation: u64,
        upto: u64,
    ) -> Result<(), StorageError> {
        self.write(|txn| {
            let mut table = txn.open_table(FORWARDED).map_err(meta_err)?;
            let current = match table.get((topic, group)).map_err(meta_err)? {
                Some(row) => decode(row.value())?,
                None => (generation, 0),
            };
            if current.0 == generation && current.1 >= upto {
                return Ok(());
            }
            let mut value = Vec::with_capacity(LEN);
            value.extend_from_slice(MAGIC);
            value.extend_from_slice(&generation.to_le_bytes());
            value.extend_from_slice(&upto.to_le_bytes());
            table
                .insert((topic, group), value.as_slice())
                .map_err(meta_err)?;
            Ok(())
        })
    }
}

fn decode(bytes: &[u8]) -> Result<(u64, u64), StorageError> {
    if bytes.len() != LEN || &bytes[..4] != MAGIC {
        return Err(StorageError::Corrupt {
            path: std::path::PathBuf::from("meta.redb"),
            reason: format!(
                "dead-letter forwarding row of {} bytes with version tag {:?} is not a format this release reads",
                bytes.len(),
                bytes.get(..4).unwrap_or(bytes)
            ),
        });
    }
    Ok((le_u64(bytes, 4), le_u64(bytes, 12)))
}
