//! Which nodes watch a topic: a node whose consumers or followers wait for a
//! topic's appends is listed in the topic's watchers (`P:{T}:w`,
//! `lua/watch.lua`), and an append wakes only the other nodes listed
//! (`lua/append.lua`); the node that appended wakes its own waiters. So a
//! publishing node without waiters gets no wake-up per append.
//!
//! Storage layer (Redis backend). A registration holds for [`HOLD`] of
//! Redis time; this node renews it every [`RENEW`] while it has waiters and
//! lets it lapse after. When a registration finds the node was not listed
//! (Redis was unreachable for longer, lost the write, or a new master took
//! over without it), the topic's waiters here look again: appends in
//! between did not wake them. Besides, consumers poll every second, and
//! every second ([`POKE`]) this node reads the end of each topic it has
//! followers of, so a lost wake-up only delays.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use crate::model::Error;

use super::{RedisBackend, lock};

/// How ids of nodes that list themselves as watchers begin (the heartbeat
/// script in `conn.rs` is given it). While a live node's id lacks it (a
/// node of an older release during a rolling upgrade), every append
/// announces its events to every node, as before watchers.
pub(super) const NODE_MARK: &str = "w-";

/// How long a registration holds (Redis time).
const HOLD: Duration = Duration::from_secs(60);
/// How often registrations of watched topics are renewed.
const RENEW: Duration = Duration::from_secs(15);
/// A registration sent this recently still holds long enough for a new
/// waiter (it is renewed before it lapses).
const FRESH: Duration = Duration::from_secs(30);
/// How often the ends of followed topics are read, woken or not.
const POKE: Duration = Duration::from_secs(1);
/// Registrations or end reads in flight at once (a shard that does not
/// answer holds up only its own topics).
const AT_ONCE: usize = 32;

/// Topics this node watches.
pub(super) type Watched = HashMap<String, Watch>;

/// This node's watch of one topic.
#[derive(Default)]
pub(super) struct Watch {
    waiters: usize,
    /// When the last registration that Redis took was sent; `None`: none
    /// yet, or it must be sent again.
    sent: Option<Instant>,
}

/// Keeps this node listed as watching a topic while held.
pub(super) struct Watching {
    backend: RedisBackend,
    topic: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(w) = lock(&self.backend.inner.watched).get_mut(&self.topic) {
            w.waiters = w.waiters.saturating_sub(1);
        }
    }
}

impl RedisBackend {
    /// Lists this node as watching `topic` before returning (unless a recent
    /// registration still holds); it stays listed while the result is held.
    pub(super) async fn watch_topic(&self, topic: &str) -> Watching {
        let stale = {
            let mut watched = lock(&self.inner.watched);
            let w = watched.entry(topic.to_string()).or_default();
            w.waiters += 1;
            w.sent.is_none_or(|at| at.elapsed() > FRESH)
        };
        let held = Watching {
            backend: self.clone(),
            topic: topic.to_string(),
        };
        if stale && let Err(e) = self.register(topic).await {
            tracing::debug!(topic, error = %e, "could not list this node as watching a topic");
        }
        held
    }

    /// Sends a registration; when the node was not listed, the topic's
    /// waiters here look again.
    async fn register(&self, topic: &str) -> Result<(), Error> {
        let sent = Instant::now();
        let hold = HOLD.as_millis().to_string();
        let mut r = self
            .run(
                |s| &s.watch,
                topic,
                &[self.inner.node.as_bytes(), hold.as_bytes()],
            )
            .await?;
        if let Some(w) = lock(&self.inner.watched).get_mut(topic) {
            w.sent = Some(sent);
        }
        if r.int()? == 1 {
            self.wake_topic(topic);
        }
        Ok(())
    }

    /// Renews the registrations of the topics with waiters here (several
    /// at once, each on its own) and forgets the others.
    async fn renew_watches(&self) {
        let topics: Vec<String> = {
            let mut watched = lock(&self.inner.watched);
            watched.retain(|_, w| w.waiters > 0);
            watched.keys().cloned().collect()
        };
        stream::iter(topics)
            .for_each_concurrent(AT_ONCE, |topic| async move {
                if let Err(e) = self.register(&topic).await {
                    tracing::debug!(topic, error = %e, "could not renew this node's watch of a topic");
                }
            })
            .await;
    }

    /// Redis may have lost the registrations (it was unreachable, or its
    /// master changed): the watch task sends them all again, then every
    /// consumer and follower here looks again.
    pub(super) fn rewatch(&self) {
        for w in lock(&self.inner.watched).values_mut() {
            w.sent = None;
        }
        self.inner.rewatch.notify_one();
    }

    /// Renews registrations and sends them again when asked.
    pub(super) async fn watch_loop(&self) {
        let mut renew = tokio::time::interval(RENEW);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = renew.tick() => self.renew_watches().await,
                () = self.inner.rewatch.notified() => {
                    self.renew_watches().await;
                    self.wake_all();
                }
                () = self.inner.stop.cancelled() => return,
            }
        }
    }

    /// Every [`POKE`], reads the end of each topic with followers here
    /// (their safety net: a wake-up may be lost; consumers poll instead).
    pub(super) async fn follow_loop(&self) {
        let mut poke = tokio::time::interval(POKE);
        poke.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poke.tick() => {}
                () = self.inner.stop.cancelled() => return,
            }
            let followed: Vec<String> = lock(&self.inner.topics)
                .iter()
                .filter(|(_, t)| t.end.receiver_count() > 0)
                .map(|(name, _)| name.clone())
                .collect();
            stream::iter(followed)
                .for_each_concurrent(AT_ONCE, |topic| async move {
                    if let Ok(Some(end)) = self.stored_end(&topic).await {
                        self.follow_end(&topic, end);
                    }
                })
                .await;
        }
    }

    /// Followers here read again.
    pub(super) fn poke_followers(&self) {
        for t in lock(&self.inner.topics).values() {
            t.end.send_modify(|_| {});
        }
    }

    /// The topic's consumers and followers here look again.
    fn wake_topic(&self, topic: &str) {
        if let Some(t) = lock(&self.inner.topics).get(topic) {
            t.end.send_modify(|_| {});
        }
        self.topic_wake(topic).notify_waiters();
    }
}
