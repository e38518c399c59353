//! Dead letters: events a group gave up on, kept (with a copy of the event,
//! so they outlive retention) until they are replayed into that group or
//! purged. Also the list / replay / purge operations of the broker.
//!
//! Broker layer. Records are stored per group by `storage::meta`; their
//! format is `[u32 header length][header JSON][event record]`, where the
//! event record is the log's own CRC-checked framing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{BrokerError, echo};
use super::group::GroupCmd;
use super::{Broker, admin::blocking};
use crate::event::StoredEvent;
use crate::storage::log::{decode_event, encode_event};

/// An event a group gave up on.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Unique within the group, increasing in dead-letter order.
    pub id: u64,
    /// Copy of the event.
    pub event: Arc<StoredEvent>,
    /// Deliveries made.
    pub attempts: u32,
    /// The last nack reason, or "ack deadline exceeded" / "consumer disconnected".
    pub last_reason: String,
    /// First failed attempt, µs since the epoch.
    pub first_failure_us: i64,
    /// Last failed attempt, µs since the epoch.
    pub last_failure_us: i64,
    /// When it was dead-lettered, µs since the epoch.
    pub dead_letter_us: i64,
    /// Replayed into the group and not yet acknowledged there; not listed.
    pub replaying: bool,
}

#[derive(Serialize, Deserialize)]
struct Header {
    attempts: u32,
    last_reason: String,
    first_failure_us: i64,
    last_failure_us: i64,
    dead_letter_us: i64,
    replaying: bool,
}

impl DeadLetter {
    /// Stored form.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            attempts: self.attempts,
            last_reason: self.last_reason.clone(),
            first_failure_us: self.first_failure_us,
            last_failure_us: self.last_failure_us,
            dead_letter_us: self.dead_letter_us,
            replaying: self.replaying,
        };
        // Serialising a struct of plain fields cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let event = encode_event(&self.event);
        let mut out = Vec::with_capacity(4 + header.len() + event.len());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&event);
        out
    }

    /// Parses the stored form.
    ///
    /// # Errors
    /// `Internal` when the record is damaged.
    pub fn decode(id: u64, bytes: &[u8]) -> Result<DeadLetter, BrokerError> {
        let bad =
            |why: String| BrokerError::Internal(format!("dead letter {id} is unreadable: {why}"));
        let len = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| bad("too short".into()))?;
        let header = bytes
            .get(4..4 + len)
            .ok_or_else(|| bad("header cut".into()))?;
        let header: Header = serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
        let event = decode_event(&bytes[4 + len..]).map_err(|e| bad(e.to_string()))?;
        Ok(DeadLetter {
            id,
            event: Arc::new(event),
            attempts: header.attempts,
            last_reason: header.last_reason,
            first_failure_us: header.first_failure_us,
            last_failure_us: header.last_failure_us,
            dead_letter_us: header.dead_letter_us,
            replaying: header.replaying,
        })
    }
}

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
    /// True when `dl` is selected.
    pub fn matches(&self, dl: &DeadLetter) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| *t == dl.event.event.event_type))
            && self.start_us.is_none_or(|s| dl.dead_letter_us >= s)
            && self.end_us.is_none_or(|e| dl.dead_letter_us < e)
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
    /// These ids.
    Ids(Vec<u64>),
    /// Everything matching the filter.
    All(DeadLetterFilter),
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

impl Broker {
    pub(super) async fn dead_letters_of(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let meta = self.inner.meta.clone();
        let (t, g) = (topic.to_string(), group.to_string());
        let raw = blocking(move || meta.dead_letters(&t, &g)).await?;
        raw.iter()
            .map(|(id, bytes)| DeadLetter::decode(*id, bytes))
            .collect()
    }

    /// A page of a group's dead letters, newest first unless `oldest_first`.
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
        self.find_group(topic, group)?;
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
        let mut all: Vec<DeadLetter> = self
            .dead_letters_of(topic, group)
            .await?
            .into_iter()
            .filter(|dl| !dl.replaying && filter.matches(dl))
            .collect();
        if !oldest_first {
            all.reverse();
        }
        let total = all.len() as u64;
        let start = match after {
            None => 0,
            Some(last) => all
                .iter()
                .position(|dl| {
                    if oldest_first {
                        dl.id > last
                    } else {
                        dl.id < last
                    }
                })
                .unwrap_or(all.len()),
        };
        let entries: Vec<DeadLetter> = all.iter().skip(start).take(page_size).cloned().collect();
        let next_token = (start + entries.len() < all.len())
            .then(|| entries.last())
            .flatten()
            .map(|dl| {
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

    /// Puts dead letters back into the same group's queue with attempts
    /// reset. Other groups are not touched. A dead letter whose replay is
    /// still pending is not replayed twice.
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
        let all = self.dead_letters_of(topic, group).await?;
        let chosen: Vec<DeadLetter> = match &selection {
            Selection::Ids(ids) => {
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    match all.iter().find(|dl| dl.id == *id) {
                        Some(dl) => out.push(dl.clone()),
                        None => {
                            return Err(BrokerError::NotFound(format!(
                                "dead letter {id} of group {} does not exist",
                                echo(group)
                            )));
                        }
                    }
                }
                out
            }
            Selection::All(filter) => all
                .into_iter()
                .filter(|dl| !dl.replaying && filter.matches(dl))
                .collect(),
        };
        g.ask(|reply| GroupCmd::Replay {
            records: chosen,
            reply,
        })
        .await?
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
        let selection = match selection {
            Selection::All(filter) if filter != DeadLetterFilter::default() => {
                let ids = self
                    .dead_letters_of(topic, group)
                    .await?
                    .into_iter()
                    .filter(|dl| !dl.replaying && filter.matches(dl))
                    .map(|dl| dl.id)
                    .collect();
                Selection::Ids(ids)
            }
            other => other,
        };
        g.ask(|reply| GroupCmd::Purge { selection, reply }).await?
    }
}
