//! Dead letters: events a group gave up on, kept (with a copy of the event,
//! so they outlive retention) until they are replayed into that group or
//! purged. The list / replay / purge operations of the broker.
//!
//! Broker layer. Records are stored per group by `storage::embedded::meta` (the
//! format is there); listing reads one page by range scan, never a group's
//! whole queue.

use super::error::{BrokerError, echo};
use super::group::GroupCmd;
use super::{Broker, admin::blocking};
use crate::storage::embedded::meta::PageRequest;

use crate::model::results::{DeadLetterCounts, DeadLetterFilter, DeadLetterPage, Selection};

/// Parses a dead-letter id (decimal).
fn parse_id(i: usize, text: &str) -> Result<u64, BrokerError> {
    text.parse::<u64>()
        .ok()
        .filter(|id| *id > 0 && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            BrokerError::invalid(
                format!("ids[{i}]"),
                format!("{} is not a dead-letter id", echo(text)),
            )
        })
}

/// Builds the selection of a replay/purge request.
///
/// # Errors
/// `InvalidArgument` when both or neither of ids and `all` are given, or an
/// id is malformed.
pub fn selection(
    ids: &[String],
    all: bool,
    filter: DeadLetterFilter,
) -> Result<Selection, BrokerError> {
    match (ids.is_empty(), all) {
        (false, true) => Err(BrokerError::invalid(
            "all",
            "give either ids or all = true, not both",
        )),
        (true, false) => Err(BrokerError::invalid(
            "ids",
            "give the ids to act on, or all = true",
        )),
        (true, true) => Ok(Selection::All(filter)),
        (false, false) => {
            if filter != DeadLetterFilter::default() {
                return Err(BrokerError::invalid(
                    "filter",
                    "applies only with all = true",
                ));
            }
            let mut parsed: Vec<u64> = ids
                .iter()
                .enumerate()
                .map(|(i, t)| parse_id(i, t))
                .collect::<Result<_, _>>()?;
            parsed.sort_unstable();
            parsed.dedup();
            Ok(Selection::Ids(parsed))
        }
    }
}

/// Page tokens carry the last id of the page plus a keyed checksum over the
/// query, so a token that was never issued (or belongs to another query) is
/// refused instead of silently returning a wrong page.
fn token_check(
    secret: u64,
    topic: &str,
    group: &str,
    oldest_first: bool,
    filter: &DeadLetterFilter,
    last: u64,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (secret, topic, group, oldest_first, filter, last).hash(&mut h);
    h.finish()
}

impl Broker {
    /// A page of a group's dead letters, newest first unless `oldest_first`.
    /// The page holds at most `page_size` entries and about
    /// `limits.max_batch_bytes` of events (at least one entry).
    ///
    /// # Errors
    /// `NotFound` for an unknown group, `InvalidArgument` for a page token
    /// that was not issued for this query.
    pub async fn list_dead_letters(
        &self,
        topic: &str,
        group: &str,
        page_size: usize,
        page_token: &str,
        oldest_first: bool,
        filter: &DeadLetterFilter,
    ) -> Result<DeadLetterPage, BrokerError> {
        let g = self.find_group(topic, group)?;
        let secret = self.inner.token_secret;
        let after = if page_token.is_empty() {
            None
        } else {
            let bad = || BrokerError::invalid("page_token", "is not a token issued for this query");
            let (last, check) = page_token.split_once('.').ok_or_else(bad)?;
            let last = u64::from_str_radix(last, 16).map_err(|_| bad())?;
            let check = u64::from_str_radix(check, 16).map_err(|_| bad())?;
            if check != token_check(secret, topic, group, oldest_first, filter, last) {
                return Err(bad());
            }
            Some(last)
        };
        let (hidden, queued) = g.ask(|reply| GroupCmd::DeadLetterView { reply }).await?;
        let hidden = std::sync::Arc::new(hidden);
        let page = PageRequest {
            after,
            oldest_first,
            max_entries: page_size,
            max_bytes: self.inner.config.group_limits.max_batch_bytes,
        };
        let meta = self.inner.meta.clone();
        let (t, gn, f, h) = (
            topic.to_string(),
            group.to_string(),
            filter.clone(),
            hidden.clone(),
        );
        let (entries, more) = blocking(move || {
            meta.dead_letter_page(&t, &gn, page, &|s| {
                !h.contains(&s.id) && f.matches(&s.event_type, s.dead_letter_us)
            })
        })
        .await?;
        let total = if *filter == DeadLetterFilter::default() {
            queued
        } else {
            self.matching_ids(topic, group, filter, hidden).await?.len() as u64
        };
        let next_token = more.then(|| entries.last()).flatten().map(|dl| {
            format!(
                "{:x}.{:x}",
                dl.id,
                token_check(secret, topic, group, oldest_first, filter, dl.id)
            )
        });
        Ok(DeadLetterPage {
            entries,
            next_token,
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
        hidden: std::sync::Arc<std::collections::BTreeSet<u64>>,
    ) -> Result<Vec<u64>, BrokerError> {
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
    async fn resolve(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<Selection, BrokerError> {
        Ok(match selection {
            Selection::All(filter) if !filter.types.is_empty() => Selection::Matching(
                self.matching_ids(topic, group, &filter, Default::default())
                    .await?,
            ),
            other => other,
        })
    }

    /// Puts dead letters back into the same group's queue with attempts
    /// reset. Other groups are not touched. A dead letter whose replay is
    /// still pending is not replayed twice. Returns once the replay is
    /// durable; the events flow as the group's memory budget allows.
    ///
    /// # Errors
    /// `NotFound` for an unknown group or id (then nothing is replayed).
    pub async fn replay_dead_letters(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, BrokerError> {
        let g = self.find_group(topic, group)?;
        let selection = self.resolve(topic, group, selection).await?;
        g.ask(|reply| GroupCmd::Replay { selection, reply }).await?
    }

    /// Deletes dead letters.
    ///
    /// # Errors
    /// `NotFound` for an unknown group or id (then nothing is deleted).
    pub async fn purge_dead_letters(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, BrokerError> {
        let g = self.find_group(topic, group)?;
        let selection = self.resolve(topic, group, selection).await?;
        g.ask(|reply| GroupCmd::Purge { selection, reply }).await?
    }
}
