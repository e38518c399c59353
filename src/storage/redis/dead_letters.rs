//! Dead letters of the Redis backend: pages, replay and purge, each one
//! script on the group's keys.
//!
//! Storage layer (Redis backend).

use std::sync::Arc;

use crate::model::Error;
use crate::model::results::{DeadLetter, DeadLetterCounts, DeadLetterFilter, Selection};
use crate::storage::backend::{DeadLetterQuery, DeadLetterRows, Forwarded};
use crate::storage::not_found_group;

use super::conn::Reply;
use super::events::event_from_record;
use super::{GroupRef, RedisBackend};

/// Ids one replay or purge call changes at most.
const CHANGE_IDS: usize = 1000;

impl RedisBackend {
    /// One dl_page call; `None` when the group is gone.
    async fn dead_letter_page(
        &self,
        g: &GroupRef,
        query: &DeadLetterQuery,
    ) -> Result<Option<Reply>, Error> {
        let opt = |v: Option<i64>| v.map_or("-1".to_string(), |v| v.to_string());
        let args = [
            g.gid.to_string(),
            g.generation.clone(),
            query.after.map_or("-1".to_string(), |a| a.to_string()),
            if query.oldest_first { "1" } else { "0" }.to_string(),
            query.max_entries.max(1).to_string(),
            query.max_bytes.max(1).to_string(),
            query.filter.types.join("\n"),
            opt(query.filter.start_us),
            opt(query.filter.end_us),
        ];
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut r = self.run(|s| &s.dl_page, &g.topic, &args).await?;
        if r.text()? != "OK" {
            self.group_gone(g.gid);
            return Ok(None);
        }
        Ok(Some(r))
    }

    pub(super) async fn list_dead_letters_impl(
        &self,
        topic: &str,
        group: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterRows, Error> {
        let g = self.group_ref(topic, group).await?;
        let mut r = self
            .dead_letter_page(&g, query)
            .await?
            .ok_or_else(|| not_found_group(topic, group))?;
        let total = r.uint()?;
        let more = r.int()? == 1;
        let mut entries = Vec::new();
        while r.left() >= 3 {
            entries.push(parse_dead_letter(&mut r)?);
        }
        Ok(DeadLetterRows {
            entries,
            more,
            total,
        })
    }

    /// Every queued id matching `filter`, in id order.
    async fn matching_ids(
        &self,
        g: &GroupRef,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<u64>, Error> {
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let query = DeadLetterQuery {
                after,
                oldest_first: true,
                filter: filter.clone(),
                max_entries: 512,
                max_bytes: usize::MAX >> 1,
            };
            let Some(mut r) = self.dead_letter_page(g, &query).await? else {
                return Err(not_found_group(&g.topic, &g.name));
            };
            let _total = r.uint()?;
            let more = r.int()? == 1;
            while r.left() >= 3 {
                let id = r.uint()?;
                let (_, _) = (r.bytes()?, r.bytes()?);
                ids.push(id);
                after = Some(id);
            }
            if !more {
                return Ok(ids);
            }
        }
    }

    async fn change_dead_letters(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
        replay: bool,
    ) -> Result<DeadLetterCounts, Error> {
        let g = self.group_ref(topic, group).await?;
        let (ids, strict) = match selection {
            Selection::Ids(ids) => (ids, true),
            Selection::Matching(ids) => (ids, false),
            Selection::All(filter) => (self.matching_ids(&g, &filter).await?, false),
        };
        let what = if replay { "replay" } else { "purge" };
        let mut counts = DeadLetterCounts {
            changed: 0,
            remaining: 0,
        };
        let chunks: Vec<&[u64]> = if ids.is_empty() {
            vec![&[]]
        } else if strict && ids.len() <= CHANGE_IDS * 10 {
            // All or nothing: one call checks every id.
            vec![&ids[..]]
        } else {
            ids.chunks(CHANGE_IDS).collect()
        };
        for chunk in chunks {
            let mut args = vec![
                g.gid.to_string(),
                g.generation.clone(),
                what.to_string(),
                if strict { "1" } else { "0" }.to_string(),
            ];
            args.extend(chunk.iter().map(u64::to_string));
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            let mut r = self.run(|s| &s.dl_change, topic, &args).await?;
            match r.text()?.as_str() {
                "OK" => {
                    counts.changed += r.uint()?;
                    counts.remaining = r.uint()?;
                }
                "MISSING" => {
                    let id = r.text()?;
                    return Err(Error::NotFound(format!(
                        "dead letter {id} of group {group:?} does not exist (or is being replayed)"
                    )));
                }
                _ => {
                    self.group_gone(g.gid);
                    return Err(not_found_group(topic, group));
                }
            }
        }
        self.wait_replicas(topic).await?;
        if replay && counts.changed > 0 {
            self.group_wake(g.gid).notify_waiters();
        }
        tracing::info!(
            topic,
            group,
            what,
            changed = counts.changed,
            "dead letters changed"
        );
        Ok(counts)
    }

    pub(super) async fn replay_dead_letters_impl(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, Error> {
        self.change_dead_letters(topic, group, selection, true)
            .await
    }

    pub(super) async fn purge_dead_letters_impl(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, Error> {
        self.change_dead_letters(topic, group, selection, false)
            .await
    }
}

impl RedisBackend {
    /// Reads (`upto` -1) or advances how far the group's dead letters are
    /// forwarded. Not followed by WAIT: a position lost in a failover only
    /// repeats forwards, which the target's dedup window absorbs.
    pub(super) async fn forward_impl(
        &self,
        topic: &str,
        group: &str,
        upto: Option<Forwarded>,
    ) -> Result<Forwarded, Error> {
        let g = self.group_ref(topic, group).await?;
        let upto = match upto {
            Some(to) if to.uid != g.gid => {
                return Ok(Forwarded {
                    uid: g.gid,
                    upto: 0,
                    newest: None,
                });
            }
            Some(to) => to.upto.to_string(),
            None => "-1".to_string(),
        };
        let args = [g.gid.to_string(), g.generation.clone(), upto];
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut r = self.run(|s| &s.forward, topic, &args).await?;
        if r.text()? != "OK" {
            self.group_gone(g.gid);
            return Err(not_found_group(topic, group));
        }
        let upto = r.uint()?;
        let newest = r.text()?.parse().ok();
        Ok(Forwarded {
            uid: g.gid,
            upto,
            newest,
        })
    }
}

/// Reads one dead letter (id, metadata, event) from a dl_page reply.
fn parse_dead_letter(r: &mut Reply) -> Result<DeadLetter, Error> {
    let id = r.uint()?;
    let meta = r.text()?;
    let event = r.bytes()?;
    let bad = || Error::Internal(format!("dead letter {id} is malformed in Redis"));
    let mut m = meta.splitn(5, '|');
    let mut num =
        || -> Result<i64, Error> { m.next().and_then(|v| v.parse().ok()).ok_or_else(bad) };
    let attempts = u32::try_from(num()?).unwrap_or(u32::MAX);
    let (first, last, at) = (num()?, num()?, num()?);
    let reason = meta.splitn(5, '|').nth(4).unwrap_or_default().to_string();
    let mut e = event.splitn(3, |b| *b == b'|');
    let (Some(offset), Some(time), Some(record)) = (e.next(), e.next(), e.next()) else {
        return Err(bad());
    };
    let parse = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
    };
    let (Some(offset), Some(time)) = (parse(offset), parse(time)) else {
        return Err(bad());
    };
    Ok(DeadLetter {
        id,
        event: Arc::new(event_from_record(
            u64::try_from(offset).unwrap_or(0),
            time,
            record,
        )?),
        attempts,
        last_reason: reason,
        first_failure_us: first,
        last_failure_us: last,
        dead_letter_us: at,
    })
}
