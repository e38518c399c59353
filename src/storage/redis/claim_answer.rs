//! A claim script's answer (claiming.lua): deliveries whose records come
//! either with them ('E') or as slices of a stream chunk carried once ('C',
//! then 'G' and 'R' items referring to it), or from a chunk this node
//! holds and named in the claim's hints ('H', see `chunk_cache.rs`).
//!
//! Storage layer (Redis backend). Record sizes are checked against the
//! records they describe (`record_bounds`, fuzzed).

use std::sync::Arc;
use std::time::Duration;

use crate::event::StoredEvent;
use crate::model::Error;
use crate::storage::backend::{LeaseRef, RawDelivery};
use crate::storage::chunk::record_bounds;
use crate::telemetry::metrics::GroupMetrics;

use super::chunk_cache::{CachedChunk, Hints};
use super::conn::Reply;
use super::consume::{POLL, entry_key};
use super::events::{event_from_record, stored_event};

/// A claim's answer: the deliveries, whether more are ready, how long
/// until something falls due, and where the group's next first
/// deliveries start when this claim handed out some.
pub(super) struct Claim {
    pub(super) batch: Vec<RawDelivery>,
    pub(super) more: bool,
    pub(super) wait: Duration,
    pub(super) cursor: Option<u64>,
}

/// Reads a claim's answer after its 'OK'; `hints` are the chunks the claim
/// was offered.
pub(super) fn read_claim(
    r: &mut Reply,
    gid: u64,
    metrics: &GroupMetrics,
    hints: &Hints,
) -> Result<Claim, Error> {
    let now = r.int()?;
    let next = r.int()?;
    let more = r.int()? == 1;
    let deadline_us = r.int()?;
    metrics.dead_lettered(usize::try_from(r.int()?).unwrap_or(0));
    let mut batch = Vec::new();
    let mut chunk: Option<ClaimChunk> = None;
    let mut cursor = None;
    while r.left() > 0 {
        let tag = r.bytes()?;
        let (key, lease, attempt, event) = match &tag[..] {
            b"C" => {
                let first = r.uint()?;
                let publish_time_us = r.int()?;
                let sizes = r.bytes()?;
                let records = r.bytes()?;
                chunk = Some(ClaimChunk::new(first, publish_time_us, &sizes, records)?);
                continue;
            }
            b"H" => {
                let first = r.uint()?;
                let held = hints.chunk(first).ok_or_else(|| {
                    Error::Internal(format!(
                        "claim names chunk {first}, not offered, from Redis"
                    ))
                })?;
                chunk = Some(ClaimChunk::Held(Arc::clone(held)));
                continue;
            }
            b"E" | b"R" => {
                let key = entry_key(&r.text()?);
                let lease = r.uint()?;
                let attempt = r.uint()?;
                let event = if tag == b"E" {
                    Arc::new(stored_event(r)?)
                } else {
                    chunk_event(&chunk, r.uint()?)?
                };
                (key, lease, attempt, event)
            }
            b"G" => {
                let lease = r.uint()?;
                let first = r.uint()?;
                let count = r.uint()?;
                if matches!(chunk, Some(ClaimChunk::Held(_))) {
                    metrics.from_cache(usize::try_from(count).unwrap_or(0));
                }
                for offset in first..first.saturating_add(count) {
                    batch.push(RawDelivery {
                        lease: LeaseRef {
                            group: gid,
                            key: offset,
                            lease,
                        },
                        event: chunk_event(&chunk, offset)?,
                        attempt: 1,
                        deadline_us,
                    });
                }
                cursor = Some(first.saturating_add(count));
                continue;
            }
            _ => return Err(Error::Internal("bad claim item from Redis".into())),
        };
        let Some(key) = key else {
            return Err(Error::Internal("bad entry key from Redis".into()));
        };
        batch.push(RawDelivery {
            lease: LeaseRef {
                group: gid,
                key,
                lease,
            },
            event,
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            deadline_us,
        });
    }
    let wait = if next < 0 {
        POLL
    } else {
        Duration::from_micros(u64::try_from(next - now).unwrap_or(0)).min(POLL)
    };
    Ok(Claim {
        batch,
        more,
        wait,
        cursor,
    })
}

/// The chunk the items of a claim answer refer to: carried by the answer
/// (its events' records by offset), or held here.
enum ClaimChunk {
    Carried {
        first: u64,
        publish_time_us: i64,
        bounds: Vec<usize>,
        records: Vec<u8>,
    },
    Held(Arc<CachedChunk>),
}

impl ClaimChunk {
    fn new(
        first: u64,
        publish_time_us: i64,
        sizes: &[u8],
        records: Vec<u8>,
    ) -> Result<Self, Error> {
        let bounds = record_bounds(sizes, records.len()).ok_or_else(|| {
            Error::Internal(format!("corrupt stream chunk at offset {first} in Redis"))
        })?;
        Ok(ClaimChunk::Carried {
            first,
            publish_time_us,
            bounds,
            records,
        })
    }
}

/// The event at `offset` of the last chunk of a claim answer.
fn chunk_event(chunk: &Option<ClaimChunk>, offset: u64) -> Result<Arc<StoredEvent>, Error> {
    let bad = || Error::Internal("claim item outside its chunk from Redis".into());
    match chunk.as_ref().ok_or_else(bad)? {
        ClaimChunk::Held(c) => c.event(offset).ok_or_else(bad)?.map(Arc::new),
        ClaimChunk::Carried {
            first,
            publish_time_us,
            bounds,
            records,
        } => {
            let i =
                usize::try_from(offset.checked_sub(*first).ok_or_else(bad)?).map_err(|_| bad())?;
            let (Some(&start), Some(&end)) = (bounds.get(i), bounds.get(i + 1)) else {
                return Err(bad());
            };
            event_from_record(offset, *publish_time_us, &records[start..end]).map(Arc::new)
        }
    }
}
