//! Dead letters: events a group gave up on, kept (with a copy of the event,
//! so they outlive retention) until they are replayed into that group or
//! purged. The list / replay / purge operations of the broker.
//!
//! Broker layer. Records are stored per group by `storage::meta` (the
//! format is there); listing reads one page by range scan, never a group's
//! whole queue.

use super::error::{BrokerError, echo};
use super::group::GroupCmd;
use super::{Broker, admin::blocking};
use crate::storage::meta::{DeadLetterSummary, PageRequest};

pub use crate::storage::meta::DeadLetter;

/// Selects dead letters by event type and dead-letter time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DeadLetterFilter {
    /// Event types; all when empty.
    pub types: Vec<String>,
    /// Dead-lettered at or after (µs since the epoch).
    pub start_us: Option<i64>,
    /// Dead-lettered before (µs since the epoch).
    pub end_us: Option<i64>,
}

impl DeadLetterFilter {
    /// True when the dead letter summarised by `s` is selected.
    pub fn matches(&self, s: &DeadLetterSummary) -> bool {
        (self.types.is_empty() || self.types.contains(&s.event_type))
            && self.start_us.is_none_or(|start| s.dead_letter_us >= start)
            && self.end_us.is_none_or(|end| s.dead_letter_us < end)
    }
}

/// A page of dead letters.
#[derive(Debug, Clone)]
pub struct DeadLetterPage {
    /// The entries.
    pub entries: Vec<DeadLetter>,
    /// Token for the next page, if there is one.
    pub next_token: Option<String>,
    /// Entries matching the filter, all pages.
    pub total: u64,
}

/// Counts after a replay or purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterCounts {
    /// Entries replayed or purged now.
    pub changed: u64,
    /// Entries left in the queue.
    pub remaining: u64,
}

/// Which dead letters a replay or purge is about.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These ids; each must be in the queue.
    Ids(Vec<u64>),
    /// Everything matching the filter.
    All(DeadLetterFilter),
    /// Those of these ids still in the queue (a filter resolved by type).
    Matching(Vec<u64>),
}

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

/// What a dead-letter page token is bound to.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct PageQuery<'a> {
    pub topic: &'a str,
    pub group: &'a str,
    pub oldest_first: bool,
    pub filter: &'a DeadLetterFilter,
}

/// The last id of the previous page, from a page token issued for `query`
/// with `secret`; `None` for the empty token (the first page). Pure, for
/// fuzzing.
///
/// # Errors
/// `InvalidArgument` on `page_token` for anything else.
#[doc(hidden)]
pub fn parse_page_token(
    secret: u64,
    query: &PageQuery<'_>,
    page_token: &str,
) -> Result<Option<u64>, BrokerError> {
    if page_token.is_empty() {
        return Ok(None);
    }
    let bad = || BrokerError::invalid("page_token", "is not a token issued for this query");
    let (last, check) = page_token.split_once('.').ok_or_else(bad)?;
    let last = u64::from_str_radix(last, 16).map_err(|_| bad())?;
    let check = u64::from_str_radix(check, 16).map_err(|_| bad())?;
    let q = query;
    if check != token_check(secret, q.topic, q.group, q.oldest_first, q.filter, last) {
        return Err(bad());
    }
    Ok(Some(last))
}

/// The page token of the page ending with `last` (the inverse of
/// [`parse_page_token`]).
#[doc(hidden)]
pub fn make_page_token(secret: u64, query: &PageQuery<'_>, last: u64) -> String {
    let q = query;
    format!(
        "{last:x}.{:x}",
        token_check(secret, q.topic, q.group, q.oldest_first, q.filter, last)
    )
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
        let query = PageQuery {
            topic,
            group,
            oldest_first,
            filter,
        };
        let after = parse_page_token(secret, &query, page_token)?;
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
            meta.dead_letter_page(&t, &gn, page, &|s| !h.contains(&s.id) && f.matches(s))
        })
        .await?;
        let total = if *filter == DeadLetterFilter::default() {
            queued
        } else {
            self.matching_ids(topic, group, filter, hidden).await?.len() as u64
        };
        let next_token = more
            .then(|| entries.last())
            .flatten()
            .map(|dl| make_page_token(secret, &query, dl.id));
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
                .filter(|s| !hidden.contains(&s.id) && f.matches(s))
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
