//! A claim script's answer (claiming.lua): deliveries whose records come
//! either with them ('E') or as slices of a stream chunk carried once ('C',
//! then 'G' and 'R' items referring to it).
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

use super::conn::Reply;
use super::consume::{POLL, entry_key};
use super::events::{event_from_record, stored_event};

/// Reads a claim's answer after its 'OK': the deliveries, whether more are
/// ready, and how long until something falls due.
pub(super) fn read_claim(
    r: &mut Reply,
    gid: u64,
    metrics: &GroupMetrics,
) -> Result<(Vec<RawDelivery>, bool, Duration), Error> {
    let now = r.int()?;
    let next = r.int()?;
    let more = r.int()? == 1;
    let deadline_us = r.int()?;
    metrics.dead_lettered(usize::try_from(r.int()?).unwrap_or(0));
    let mut batch = Vec::new();
    let mut chunk: Option<ClaimChunk> = None;
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
            b"E" | b"R" => {
                let key = entry_key(&r.text()?);
                let lease = r.uint()?;
                let attempt = r.uint()?;
                let event = if tag == b"E" {
                    stored_event(r)?
                } else {
                    chunk_event(&chunk, r.uint()?)?
                };
                (key, lease, attempt, event)
            }
            b"G" => {
                let lease = r.uint()?;
                let first = r.uint()?;
                let count = r.uint()?;
                for offset in first..first.saturating_add(count) {
                    batch.push(RawDelivery {
                        lease: LeaseRef {
                            group: gid,
                            key: offset,
                            lease,
                        },
                        event: Arc::new(chunk_event(&chunk, offset)?),
                        attempt: 1,
                        deadline_us,
                    });
                }
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
            event: Arc::new(event),
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            deadline_us,
        });
    }
    let wait = if next < 0 {
        POLL
    } else {
        Duration::from_micros(u64::try_from(next - now).unwrap_or(0)).min(POLL)
    };
    Ok((batch, more, wait))
}

/// A stream chunk a claim answer carries: its events' records by offset.
struct ClaimChunk {
    first: u64,
    publish_time_us: i64,
    bounds: Vec<usize>,
    records: Vec<u8>,
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
        Ok(ClaimChunk {
            first,
            publish_time_us,
            bounds,
            records,
        })
    }
}

/// The event at `offset` of the last chunk of a claim answer.
fn chunk_event(chunk: &Option<ClaimChunk>, offset: u64) -> Result<StoredEvent, Error> {
    let bad = || Error::Internal("claim item outside its chunk from Redis".into());
    let c = chunk.as_ref().ok_or_else(bad)?;
    let i = usize::try_from(offset.checked_sub(c.first).ok_or_else(bad)?).map_err(|_| bad())?;
    let (Some(&start), Some(&end)) = (c.bounds.get(i), c.bounds.get(i + 1)) else {
        return Err(bad());
    };
    event_from_record(offset, c.publish_time_us, &c.records[start..end])
}
