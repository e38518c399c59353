//! Dead letters: events a group gave up on, kept (with a copy of the event,
//! so they outlive retention) until they are replayed into that group or
//! purged. The list / replay / purge operations of the broker.
//!
//! Broker layer: selections, ids and page tokens; the backend keeps the
//! records and reads one page at a time, never a group's whole queue.

use super::Broker;
use super::error::{BrokerError, echo};
use super::names::check_name;
use crate::model::results::{DeadLetterCounts, DeadLetterFilter, DeadLetterPage, Selection};
use crate::storage::backend::DeadLetterQuery;

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
    secret: &[u8; 16],
    topic: &str,
    group: &str,
    oldest_first: bool,
    filter: &DeadLetterFilter,
    last: u64,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = siphasher::sip::SipHasher24::new_with_key(secret);
    (topic, group, oldest_first, filter, last).hash(&mut h);
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
    secret: &[u8; 16],
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
pub fn make_page_token(secret: &[u8; 16], query: &PageQuery<'_>, last: u64) -> String {
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
        check_name("topic", topic)?;
        check_name("group", group)?;
        let secret = self.inner.backend.secret();
        let page = PageQuery {
            topic,
            group,
            oldest_first,
            filter,
        };
        let after = parse_page_token(&secret, &page, page_token)?;
        let query = DeadLetterQuery {
            after,
            oldest_first,
            filter: filter.clone(),
            max_entries: page_size,
            max_bytes: self.inner.config.max_batch_bytes,
        };
        let rows = self
            .inner
            .backend
            .list_dead_letters(topic, group, &query)
            .await?;
        let next_token = rows
            .more
            .then(|| rows.entries.last())
            .flatten()
            .map(|dl| make_page_token(&secret, &page, dl.id));
        Ok(DeadLetterPage {
            entries: rows.entries,
            next_token,
            total: rows.total,
        })
    }

    /// Puts dead letters back into the same group's queue with attempts
    /// reset. Other groups are not touched. A dead letter whose replay is
    /// still pending is not replayed twice. Returns once the replay is
    /// durable.
    ///
    /// # Errors
    /// `NotFound` for an unknown group or id (then nothing is replayed).
    pub async fn replay_dead_letters(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, BrokerError> {
        check_name("topic", topic)?;
        check_name("group", group)?;
        self.inner
            .backend
            .replay_dead_letters(topic, group, selection)
            .await
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
        check_name("topic", topic)?;
        check_name("group", group)?;
        self.inner
            .backend
            .purge_dead_letters(topic, group, selection)
            .await
    }
}
