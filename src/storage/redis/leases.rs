//! Acks, nacks and deadline extensions of the Redis backend: the leases of
//! one call are grouped by group, and each group's share is one script.
//!
//! Storage layer (Redis backend).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::Error;
use crate::model::results::LeaseOutcome;
use crate::storage::backend::{LeaseRef, Nack};
use crate::telemetry::metrics::GroupMetrics;

use super::chunk_cache::Hints;
use super::conn::Reply;
use super::consume::{Local, script_key};
use super::{GroupRef, RedisBackend};
use crate::storage::embedded::dispatch::REPLAY_BIT;

/// A script's answer for one lease.
fn outcome(code: &str) -> LeaseOutcome {
    match code {
        "O" => LeaseOutcome::Ok,
        "A" => LeaseOutcome::AlreadyDone,
        "S" => LeaseOutcome::Stale,
        _ => LeaseOutcome::Unknown,
    }
}

/// The (entry key, lease) pairs of an ack script for the leases at `idx`,
/// and those indices in the order of the keys the script answers for:
/// first deliveries of one batch lease at consecutive offsets go as one
/// range `first-last` (the whole batch is then one step in Redis).
fn ack_pairs(leases: &[LeaseRef], mut idx: Vec<usize>) -> (Vec<usize>, Vec<String>) {
    idx.sort_by_key(|&i| (leases[i].lease, leases[i].key));
    let mut pairs = Vec::new();
    let mut at = 0;
    while at < idx.len() {
        let l = &leases[idx[at]];
        let mut end = at + 1;
        if l.lease % 2 == 1 && l.key & REPLAY_BIT == 0 {
            while end < idx.len() {
                let n = &leases[idx[end]];
                if n.lease != l.lease || Some(n.key) != l.key.checked_add((end - at) as u64) {
                    break;
                }
                end += 1;
            }
        }
        pairs.push(if end - at > 1 {
            format!("{}-{}", l.key, leases[idx[end - 1]].key)
        } else {
            script_key(l.key)
        });
        pairs.push(l.lease.to_string());
        at = end;
    }
    (idx, pairs)
}

/// What one lease operation does to one group's leases.
enum Op<'a> {
    Ack,
    Nack(&'a Nack),
    Extend(Duration),
}

impl RedisBackend {
    pub(super) async fn ack_impl(&self, leases: &[LeaseRef]) -> Result<Vec<LeaseOutcome>, Error> {
        Ok(self
            .lease_op(leases, &Op::Ack)
            .await?
            .into_iter()
            .map(|(o, _)| o)
            .collect())
    }

    pub(super) async fn nack_impl(
        &self,
        leases: &[LeaseRef],
        nack: &Nack,
    ) -> Result<Vec<LeaseOutcome>, Error> {
        Ok(self
            .lease_op(leases, &Op::Nack(nack))
            .await?
            .into_iter()
            .map(|(o, _)| o)
            .collect())
    }

    pub(super) async fn extend_impl(
        &self,
        leases: &[LeaseRef],
        extension: Duration,
    ) -> Result<Vec<(LeaseOutcome, Option<i64>)>, Error> {
        self.lease_op(leases, &Op::Extend(extension)).await
    }

    async fn lease_op(
        &self,
        leases: &[LeaseRef],
        op: &Op<'_>,
    ) -> Result<Vec<(LeaseOutcome, Option<i64>)>, Error> {
        let mut out = vec![(LeaseOutcome::Unknown, None); leases.len()];
        let mut by_group: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, l) in leases.iter().enumerate() {
            by_group.entry(l.group).or_default().push(i);
        }
        for (gid, idx) in by_group {
            let Some(g) = self.group_by_id(gid).await? else {
                continue;
            };
            let (idx, pairs) = match op {
                Op::Ack => ack_pairs(leases, idx),
                _ => {
                    let pairs = idx
                        .iter()
                        .flat_map(|&i| [script_key(leases[i].key), leases[i].lease.to_string()])
                        .collect();
                    (idx, pairs)
                }
            };
            // An ack claims the next batch of a consumer here in the same
            // script when it gives that consumer credit back.
            let next = match op {
                Op::Ack => self.claim_candidate(gid),
                _ => None,
            };
            let claimer = next.as_ref().map(|n| n.local.as_ref());
            let hints = match claimer {
                Some(l) => self.claim_hints(&g, l.most.parse().unwrap_or(0)),
                None => Hints::default(),
            };
            let Some(mut r) = self.lease_script(&g, op, claimer, &hints, &pairs).await? else {
                self.group_gone(gid);
                continue;
            };
            let metrics = GroupMetrics::new(&g.topic, &g.name);
            let (mut dead, mut wake) = (0, true);
            match op {
                Op::Nack(_) => dead = usize::try_from(r.int()?).unwrap_or(0),
                Op::Ack => wake = r.int()? == 1,
                Op::Extend(_) => {}
            }
            let mut done = 0;
            // An ack answers with one letter per lease, the others with one
            // value (and an extend's deadline) each.
            let letters = match op {
                Op::Ack => r.text()?,
                _ => String::new(),
            };
            for (j, &i) in idx.iter().enumerate() {
                let read;
                let code = match op {
                    Op::Ack => letters.get(j..=j).unwrap_or_default(),
                    _ => {
                        read = r.text()?;
                        read.as_str()
                    }
                };
                done += usize::from(code == "O");
                let deadline = if matches!(op, Op::Extend(_)) {
                    Some(r.int()?).filter(|d| *d > 0)
                } else {
                    None
                };
                out[i] = (outcome(code), deadline);
            }
            match op {
                Op::Ack => metrics.acked(done),
                Op::Nack(_) => {
                    metrics.nacked(done);
                    metrics.dead_lettered(dead);
                }
                Op::Extend(_) => {}
            }
            if let Some(next) = next
                && r.left() > 0
            {
                r.text()?; // OK
                let batch = self
                    .take_claim(&mut r, gid, &next.local.metrics, &hints)?
                    .batch;
                if !batch.is_empty() {
                    next.local.metrics.delivered(batch.len());
                    next.slot.send(Ok(batch));
                }
            }
            self.touch(gid);
            if wake && !matches!(op, Op::Extend(_)) {
                // Credit came back: a consumer here may take more.
                self.group_wake(gid).notify_waiters();
            }
        }
        Ok(out)
    }

    /// Runs the script of `op` on `pairs` (entry key, lease); `None` when
    /// the group is gone. The reply is positioned at the first outcome.
    async fn lease_script(
        &self,
        g: &GroupRef,
        op: &Op<'_>,
        claimer: Option<&Local>,
        hints: &Hints,
        pairs: &[String],
    ) -> Result<Option<Reply>, Error> {
        let gid = g.gid.to_string();
        let node = self.inner.node.as_bytes();
        let mut args: Vec<&[u8]> = vec![gid.as_bytes(), g.generation.as_bytes()];
        let (delay, extension, reason);
        let bytes_limit = self.inner.batch_bytes.to_string();
        let script: fn(&super::conn::Scripts) -> &redis::Script = match op {
            Op::Ack => {
                args.push(node);
                match claimer {
                    Some(l) => {
                        args.extend([l.id.as_bytes(), l.most.as_bytes(), bytes_limit.as_bytes()])
                    }
                    None => args.extend([&b""[..], b"0", b"0"]),
                }
                args.push(hints.arg.as_bytes());
                |s| &s.ack
            }
            Op::Nack(n) => {
                delay = n
                    .delay
                    .map_or(-1, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
                    .to_string();
                reason = n.reason.clone();
                args.extend([
                    node,
                    delay.as_bytes(),
                    if n.dead_letter { b"1" } else { b"0" },
                    reason.as_bytes(),
                ]);
                |s| &s.nack
            }
            Op::Extend(d) => {
                extension = i64::try_from(d.as_micros()).unwrap_or(i64::MAX).to_string();
                args.push(extension.as_bytes());
                |s| &s.extend
            }
        };
        args.extend(pairs.iter().map(|p| p.as_bytes()));
        let mut r = self.run(script, &g.topic, &args).await?;
        if r.text()? != "OK" {
            return Ok(None);
        }
        if matches!(op, Op::Nack(_)) {
            // A dead letter is on the replicas before the nack returns.
            self.wait_replicas(&g.topic).await?;
        }
        Ok(Some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(key: u64, lease: u64) -> LeaseRef {
        LeaseRef {
            group: 1,
            key,
            lease,
        }
    }

    #[test]
    fn ack_pairs_send_consecutive_first_deliveries_of_a_batch_as_ranges() {
        let leases = [
            lease(12, 7),
            lease(10, 7),
            lease(11, 7),
            lease(11, 7), // acked twice: the range ends there
            lease(13, 8), // an entry lease (even)
            lease(14, 8),
            lease(REPLAY_BIT | 3, 9), // a replay
            lease(REPLAY_BIT | 4, 9),
            lease(20, 9),
            lease(22, 9), // a gap
        ];
        let (order, pairs) = ack_pairs(&leases, (0..leases.len()).collect());
        assert_eq!(
            pairs,
            [
                "10-11", "7", "11-12", "7", "13", "8", "14", "8", "20", "9", "22", "9", "r3", "9",
                "r4", "9"
            ]
        );
        // One index per key the script answers for, ranges expanded.
        assert_eq!(order, [1, 2, 3, 0, 4, 5, 8, 9, 6, 7]);
    }
}
