//! Reads of dead letters that never hold a group's whole queue in memory:
//! single records, pages by range scan, and summaries.
//!
//! Storage layer.

use super::dead_letters::DeadLetterSummary;
use super::{DEAD_LETTERS, MetaStore, meta_err};
use crate::model::results::DeadLetter;
use crate::storage::StorageError;

/// Where a page of dead letters starts and how much it may hold.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Start after this id (exclusive); from the first when `None`.
    pub after: Option<u64>,
    /// Ascending ids when true, descending otherwise.
    pub oldest_first: bool,
    /// Most records.
    pub max_entries: usize,
    /// Stop after the record that reaches this many bytes of events (at
    /// least one record is returned when one matches).
    pub max_bytes: usize,
}

impl MetaStore {
    /// One dead letter.
    ///
    /// # Errors
    /// When the read fails or the record is unreadable.
    pub fn dead_letter(
        &self,
        topic: &str,
        group: &str,
        id: u64,
    ) -> Result<Option<DeadLetter>, StorageError> {
        self.read(|txn| {
            let table = txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
            let value = table.get((topic, group, id)).map_err(meta_err)?;
            value.map(|v| DeadLetter::decode(id, v.value())).transpose()
        })
    }

    /// A page of a group's dead letters that `wanted` selects (judged on
    /// the summary, without decoding events), and whether more follow.
    ///
    /// # Errors
    /// When the read fails or a record is unreadable.
    pub fn dead_letter_page(
        &self,
        topic: &str,
        group: &str,
        page: PageRequest,
        wanted: &dyn Fn(&DeadLetterSummary) -> bool,
    ) -> Result<(Vec<DeadLetter>, bool), StorageError> {
        self.read(|txn| {
            let table = txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
            let (lo, hi) = match (page.after, page.oldest_first) {
                (None, _) => (0, u64::MAX),
                (Some(a), true) => (a.saturating_add(1), u64::MAX),
                (Some(0), false) => return Ok((Vec::new(), false)),
                (Some(a), false) => (0, a - 1),
            };
            if lo > hi {
                return Ok((Vec::new(), false));
            }
            let range = table
                .range((topic, group, lo)..=(topic, group, hi))
                .map_err(meta_err)?;
            let rows: Box<dyn Iterator<Item = _>> = if page.oldest_first {
                Box::new(range)
            } else {
                Box::new(range.rev())
            };
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for row in rows {
                let (k, v) = row.map_err(meta_err)?;
                let id = k.value().2;
                if !wanted(&DeadLetterSummary::decode(id, v.value())?) {
                    continue;
                }
                if out.len() >= page.max_entries || (bytes >= page.max_bytes && !out.is_empty()) {
                    return Ok((out, true));
                }
                let dl = DeadLetter::decode(id, v.value())?;
                bytes += dl.event.event.size();
                out.push(dl);
            }
            Ok((out, false))
        })
    }

    /// Summaries of every dead letter of a group, by ascending id.
    ///
    /// # Errors
    /// When the read fails or a record is unreadable.
    pub fn dead_letter_summaries(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Vec<DeadLetterSummary>, StorageError> {
        self.read(|txn| {
            let table = txn.open_table(DEAD_LETTERS).map_err(meta_err)?;
            let mut out = Vec::new();
            for row in table
                .range((topic, group, 0u64)..=(topic, group, u64::MAX))
                .map_err(meta_err)?
            {
                let (k, v) = row.map_err(meta_err)?;
                out.push(DeadLetterSummary::decode(k.value().2, v.value())?);
            }
            Ok(out)
        })
    }
}
