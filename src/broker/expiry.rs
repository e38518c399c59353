//! Temporary groups: a group whose settings carry `expire_after` is
//! deleted once it has had no consumer for that long (zero: as soon as its
//! last consumer leaves), so one-group-per-handler users leave nothing
//! behind. The Pub/Sub front door maps `expiration_policy` onto this.
//!
//! Broker layer. One task per node. It learns of temporary groups (and of
//! groups that forward dead letters, for `forward.rs`) when
//! they are created or changed through this node, and from a listing of
//! every group: once at start on the embedded backend (every later change
//! goes through this node), each `REFRESH` over Redis (so a node also
//! reaps groups that other nodes created). A failed listing is retried
//! after `REFRESH`. Each `TICK` it reads each one's settings and
//! consumer count from the backend (over Redis, consumers on every node
//! count). The idle clock starts at the last tick that saw a consumer;
//! for a group the node never saw with one, at the later of its first
//! sight and the group's creation plus `GRACE` (time for its creator to
//! subscribe). Deleting is the
//! ordinary delete: its streams end NOT_FOUND, and a group another node
//! deleted first counts as done. Idle time is the node's own observation,
//! so a restart starts it again: a group may outlive its TTL by that much,
//! never the other way round.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Broker, BrokerError, GroupSettings, Inner};
use crate::event::now_us;

/// How often temporary groups are looked at.
const TICK: Duration = Duration::from_secs(1);
/// How often every group is listed to find temporary ones.
const REFRESH: Duration = Duration::from_secs(30);
/// A new group is not idle before this: its creator has time to subscribe.
const GRACE: Duration = Duration::from_secs(10);
/// Groups per listing page.
const PAGE: usize = 500;

type Key = (String, String);

/// What this node saw of a group without consumers.
#[derive(Clone, Copy)]
struct Idle {
    /// Since when (µs since the epoch) it has had no consumer.
    since: i64,
    /// It had one then: no grace after its creation applies.
    had_consumer: bool,
}

/// The groups that need this node's attention: temporary ones (reaped
/// here) and those forwarding dead letters to a topic (`forward.rs`).
#[derive(Default)]
pub(super) struct Watched {
    expiring: Mutex<HashSet<Key>>,
    forwarding: Mutex<HashSet<Key>>,
}

impl Watched {
    /// Records a group's settings as created, changed or listed.
    pub(super) fn note(&self, topic: &str, group: &str, settings: &GroupSettings) {
        let key = (topic.to_string(), group.to_string());
        set_if(&self.expiring, key.clone(), settings.expire_after.is_some());
        set_if(
            &self.forwarding,
            key,
            !settings.dead_letter_topic.is_empty(),
        );
    }

    /// Forgets a group that is no longer temporary or is gone.
    fn forget(&self, key: &Key) {
        lock(&self.expiring).remove(key);
    }

    /// Forgets a group that no longer forwards or is gone.
    pub(super) fn forget_forwarding(&self, key: &Key) {
        lock(&self.forwarding).remove(key);
    }

    fn keys(&self) -> Vec<Key> {
        lock(&self.expiring).iter().cloned().collect()
    }

    /// The groups known to forward dead letters.
    pub(super) fn forwarding(&self) -> Vec<Key> {
        lock(&self.forwarding).iter().cloned().collect()
    }
}

fn lock(set: &Mutex<HashSet<Key>>) -> std::sync::MutexGuard<'_, HashSet<Key>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

fn set_if(set: &Mutex<HashSet<Key>>, key: Key, member: bool) {
    if member {
        lock(set).insert(key);
    } else {
        lock(set).remove(&key);
    }
}

/// The reaper: runs until shutdown, or until the broker is dropped.
pub(super) async fn run(inner: Weak<Inner>, stopping: CancellationToken) {
    let mut idle: HashMap<Key, Idle> = HashMap::new();
    let mut refreshed: Option<tokio::time::Instant> = None;
    // Whether listing again can find groups this node did not create.
    let mut relist = true;
    while let Some(broker) = next_tick(&inner, &stopping, TICK).await {
        if relist && refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            refreshed = Some(tokio::time::Instant::now());
            match broker.find_watched_groups().await {
                // Only nodes sharing a backend create groups behind our back.
                Ok(()) => relist = broker.inner.backend.kind() != "embedded",
                Err(e) => {
                    tracing::warn!(error = %e, "temporary groups: listing groups failed; retrying later");
                }
            }
        }
        broker.reap(&mut idle).await;
    }
}

/// Waits `period`; the broker then, or `None` at shutdown or once the
/// broker is dropped (the end of a node's periodic task).
pub(super) async fn next_tick(
    inner: &Weak<Inner>,
    stopping: &CancellationToken,
    period: Duration,
) -> Option<Broker> {
    tokio::select! {
        _ = stopping.cancelled() => return None,
        _ = tokio::time::sleep(period) => {}
    }
    inner.upgrade().map(|inner| Broker { inner })
}

impl Broker {
    /// Notes every temporary or forwarding group of the backend.
    async fn find_watched_groups(&self) -> Result<(), BrokerError> {
        let mut after = None;
        loop {
            let page = self.inner.backend.list_groups(None, after, PAGE).await?;
            for g in &page {
                let r = &g.record;
                self.inner.watched.note(&r.topic, &r.name, &r.settings);
            }
            if page.len() < PAGE {
                return Ok(());
            }
            after = page
                .last()
                .map(|g| (g.record.topic.clone(), g.record.name.clone()));
        }
    }

    /// Deletes the known temporary groups whose idle time is up.
    async fn reap(&self, idle: &mut HashMap<Key, Idle>) {
        let expiring = &self.inner.watched;
        let keys = expiring.keys();
        let known: HashSet<&Key> = keys.iter().collect();
        idle.retain(|k, _| known.contains(k));
        for key in keys {
            let (topic, group) = (&key.0, &key.1);
            let info = match self.inner.backend.get_group(topic, group).await {
                Ok(info) => info,
                Err(BrokerError::NotFound(_)) => {
                    expiring.forget(&key);
                    continue;
                }
                // Storage trouble: look again next tick.
                Err(_) => continue,
            };
            let Some(ttl) = info.record.settings.expire_after else {
                expiring.forget(&key);
                continue;
            };
            let now = now_us();
            if info.stats.connected_consumers > 0 {
                idle.insert(
                    key,
                    Idle {
                        since: now,
                        had_consumer: true,
                    },
                );
                continue;
            }
            let seen = *idle.entry(key.clone()).or_insert(Idle {
                since: now,
                had_consumer: false,
            });
            let since = if seen.had_consumer {
                seen.since
            } else {
                seen.since
                    .max(info.record.created_us.saturating_add(micros(GRACE)))
            };
            if now < since.saturating_add(micros(ttl)) {
                continue;
            }
            match self.inner.backend.delete_group(topic, group).await {
                Ok(()) | Err(BrokerError::NotFound(_)) => {
                    tracing::info!(
                        target: "herald::audit",
                        principal = "herald",
                        action = "expire_group",
                        topic = %topic,
                        group = %group,
                        expire_after = ?ttl,
                        outcome = "ok",
                        "temporary group deleted: no consumer for its expire_after"
                    );
                    expiring.forget(&key);
                    idle.remove(&key);
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, group = %group, error = %e, "temporary group: deleting failed; retrying");
                }
            }
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
