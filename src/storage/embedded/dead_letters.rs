//! Dead letters of the embedded backend: pages read by range scan from the
//! metadata store (never a group's whole queue), replay and purge through
//! the group's task.
//!
//! Storage layer (embedded backend).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::group::GroupCmd;
use super::meta::PageRequest;
use super::{EmbeddedBackend, blocking};
use crate::model::Error;
use crate::model::results::{DeadLetterCounts, DeadLetterFilter, Selection};
use crate::storage::backend::{DeadLetterQuery, DeadLetterRows};

impl EmbeddedBackend {
    pub(super) async fn list_dead_letters_impl(
        &self,
        topic: &str,
        group: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterRows, Error> {
        let g = self.find_group(topic, group)?;
        let (hidden, queued) = g.ask(|reply| GroupCmd::DeadLetterView { reply }).await??;
        let hidden = Arc::new(hidden);
        let page = PageRequest {
            after: query.after,
            oldest_first: query.oldest_first,
            max_entries: query.max_entries,
            max_bytes: query.max_bytes,
        };
        let meta = self.inner.meta.clone();
        let (t, gn, f, h) = (
            topic.to_string(),
            group.to_string(),
            query.filter.clone(),
            hidden.clone(),
        );
        let (entries, more) = blocking(move || {
            meta.dead_letter_page(&t, &gn, page, &|s| {
                !h.contains(&s.id) && f.matches(&s.event_type, s.dead_letter_us)
            })
        })
        .await?;
        let total = if query.filter == DeadLetterFilter::default() {
            queued
        } else {
            self.matching_ids(topic, group, &query.filter, hidden)
                .await?
                .len() as u64
        };
        Ok(DeadLetterRows {
            entries,
            more,
            total,
        })
    }

    /// Ids of a group's dead letters that match `filter`, leaving out those
    /// in `hidden`, read from the summaries (events are not decoded).
    async fn matching_ids(
        &self,
        topic: &str,
        group: &str,
        filter: &DeadLetterFilter,
        hidden: Arc<BTreeSet<u64>>,
    ) -> Result<Vec<u64>, Error> {
        let meta = self.inner.meta.clone();
        let (t, g, f) = (topic.to_string(), group.to_string(), filter.clone());
        blocking(move || {
            Ok(meta
                .dead_letter_summaries(&t, &g)?
                .into_iter()
                .filter(|s| !hidden.contains(&s.id) && f.matches(&s.event_type, s.dead_letter_us))
                .map(|s| s.id)
                .collect())
        })
        .await
    }

    /// A selection the group task can resolve on its own: a filter by type
    /// becomes the ids it matches.
    async fn resolve_selection(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<Selection, Error> {
        Ok(match selection {
            Selection::All(filter) if !filter.types.is_empty() => Selection::Matching(
                self.matching_ids(topic, group, &filter, Default::default())
                    .await?,
            ),
            other => other,
        })
    }

    pub(super) async fn replay_dead_letters_impl(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, Error> {
        let g = self.find_group(topic, group)?;
        let selection = self.resolve_selection(topic, group, selection).await?;
        g.ask(|reply| GroupCmd::Replay { selection, reply }).await?
    }

    pub(super) async fn purge_dead_letters_impl(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, Error> {
        let g = self.find_group(topic, group)?;
        let selection = self.resolve_selection(topic, group, selection).await?;
        g.ask(|reply| GroupCmd::Purge { selection, reply }).await?
    }
}
