//! Which nodes watch a topic: a node whose consumers or readers wait for a
//! topic's appends is listed in the topic's watchers (`P:{T}:w`,
//! `lua/watch.lua`), and an append wakes only the other nodes listed
//! (`lua/append.lua`); the node that appended wakes its own waiters. So a
//! publishing node without waiters gets no wake-up per append.
//!
//! Storage layer (Redis backend). A registration holds for [`HOLD`] of
//! Redis time; this node renews it every [`RENEW`] while it has waiters and
//! lets it lapse after. A registration that cannot be made is retried at
//! the next renewal; meanwhile consumers still poll once a second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::Error;

use super::{RedisBackend, lock};

/// How long a registration holds (Redis time).
const HOLD: Duration = Duration::from_secs(60);
/// How often registrations of watched topics are renewed.
pub(super) const RENEW: Duration = Duration::from_secs(15);
/// A registration sent this recently still holds long enough for a new
/// waiter (it is renewed before it lapses).
const FRESH: Duration = Duration::from_secs(30);

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

    async fn register(&self, topic: &str) -> Result<(), Error> {
        let sent = Instant::now();
        let hold = HOLD.as_millis().to_string();
        self.run(
            |s| &s.watch,
            topic,
            &[self.inner.node.as_bytes(), hold.as_bytes()],
        )
        .await?;
        if let Some(w) = lock(&self.inner.watched).get_mut(topic) {
            w.sent = Some(sent);
        }
        Ok(())
    }

    /// Renews the registrations of the topics with waiters here and forgets
    /// the others.
    pub(super) async fn renew_watches(&self) -> Result<(), Error> {
        let topics: Vec<String> = {
            let mut watched = lock(&self.inner.watched);
            watched.retain(|_, w| w.waiters > 0);
            watched.keys().cloned().collect()
        };
        for topic in topics {
            self.register(&topic).await?;
        }
        Ok(())
    }

    /// Redis may have lost the registrations (it was unreachable, or its
    /// master changed): they are all sent again, then waiters look again.
    pub(super) async fn rewatch(&self) {
        for w in lock(&self.inner.watched).values_mut() {
            w.sent = None;
        }
        if let Err(e) = self.renew_watches().await {
            tracing::debug!(error = %e, "could not renew this node's watches");
        }
    }
}
