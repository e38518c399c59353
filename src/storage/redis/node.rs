//! What a Redis-backed node does in the background: heartbeats, releasing
//! the consumers of dead nodes, wake-ups from other nodes (Pub/Sub),
//! retention by age, totals and health.
//!
//! Storage layer (Redis backend).

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use crate::model::Error;

use super::{RedisBackend, lock, watchers};

impl RedisBackend {
    /// Tells Redis this node is alive; Redis's time in ms.
    pub(super) async fn heartbeat(&self) -> Result<i64, Error> {
        let key = self.inner.keys.registry("nodes");
        let live = self.cfg().node_timeout.as_millis().to_string();
        let r = self
            .inner
            .link
            .eval_value(
                self.cfg(),
                &self.inner.scripts.heartbeat,
                &key,
                &[
                    self.inner.node.as_bytes(),
                    live.as_bytes(),
                    watchers::NODE_MARK.as_bytes(),
                ],
            )
            .await;
        self.note_health(&r);
        if let Value::Array(v) = r?
            && let [Value::Int(ms), Value::Int(older)] = v.as_slice()
        {
            self.inner.older_nodes.store(*older == 1, Ordering::Relaxed);
            return Ok(*ms);
        }
        Err(Error::Internal("unexpected heartbeat reply".into()))
    }

    pub(super) async fn start_tasks(&self) -> Result<(), Error> {
        self.listen().await?;
        let me = self.clone();
        self.inner
            .tasks
            .spawn(async move { me.liveness_loop().await });
        let me = self.clone();
        self.inner
            .tasks
            .spawn(async move { me.housekeeping_loop().await });
        let me = self.clone();
        self.inner.tasks.spawn(async move { me.watch_loop().await });
        let me = self.clone();
        self.inner
            .tasks
            .spawn(async move { me.follow_loop().await });
        Ok(())
    }

    /// Heartbeats, health, and releasing dead nodes' consumers.
    async fn liveness_loop(&self) {
        let mut tick = tokio::time::interval(self.cfg().node_heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.inner.stop.cancelled() => return,
            }
            match self.heartbeat().await {
                Ok(now_ms) => {
                    if self
                        .inner
                        .healthy
                        .send_if_modified(|h| !std::mem::replace(h, true))
                    {
                        tracing::info!("Redis reachable again");
                        // Wake-ups may have been missed, and registrations
                        // lapsed: list this node again, then every
                        // consumer and follower looks again.
                        self.rewatch();
                    }
                    if let Err(e) = self.reap(now_ms).await {
                        tracing::warn!(error = %e, "could not release dead nodes' consumers");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
            }
        }
    }

    /// Releases the consumers of nodes silent for `redis.node_timeout`.
    async fn reap(&self, now_ms: i64) -> Result<(), Error> {
        let nodes = self.inner.keys.registry("nodes");
        let limit = now_ms - i64::try_from(self.cfg().node_timeout.as_millis()).unwrap_or(0);
        let dead: Vec<String> = self
            .cmd(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&nodes)
                    .arg("-inf")
                    .arg(limit)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(16),
            )
            .await?;
        for node in dead {
            let set = self.inner.keys.node_consumers(&node);
            let members: Vec<String> = self.cmd(redis::cmd("SMEMBERS").arg(&set)).await?;
            tracing::warn!(node = %node, consumers = members.len(),
                "node stopped heartbeating; releasing its consumers' leases");
            for m in &members {
                self.release_member(&node, m, &[]).await?;
            }
            let _: i64 = self.cmd(redis::cmd("ZREM").arg(&nodes).arg(&node)).await?;
        }
        Ok(())
    }

    /// Retention by age, totals and gauges.
    async fn housekeeping_loop(&self) {
        let mut totals = tokio::time::interval(Duration::from_secs(2));
        let mut retention = tokio::time::interval(self.cfg().retention_interval);
        let mut gauges = tokio::time::interval(Duration::from_millis(100));
        for t in [&mut totals, &mut retention, &mut gauges] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            let r = tokio::select! {
                _ = totals.tick() => match self.refresh_totals().await {
                    Ok(()) => self.refresh_gauges().await,
                    Err(e) => Err(e),
                },
                _ = retention.tick() => self.apply_retention().await,
                _ = gauges.tick() => self.refresh_dirty().await,
                () = self.inner.stop.cancelled() => return,
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "housekeeping failed");
            }
        }
    }

    pub(super) async fn refresh_totals(&self) -> Result<(), Error> {
        let topics: u64 = self
            .cmd(redis::cmd("ZCARD").arg(self.inner.keys.registry("topics")))
            .await?;
        let groups: u64 = self
            .cmd(redis::cmd("ZCARD").arg(self.inner.keys.registry("groups")))
            .await?;
        self.inner.topic_count.store(topics, Ordering::Relaxed);
        self.inner.group_count.store(groups, Ordering::Relaxed);
        Ok(())
    }

    /// Gauges of the groups that changed.
    async fn refresh_dirty(&self) -> Result<(), Error> {
        let dirty: Vec<u64> = lock(&self.inner.dirty).drain().collect();
        self.refresh_stats(dirty).await
    }

    /// Gauges of the groups with consumers here.
    async fn refresh_gauges(&self) -> Result<(), Error> {
        let local: Vec<u64> = lock(&self.inner.gauges).keys().copied().collect();
        self.refresh_stats(local).await
    }

    /// Reads the stats (and so the gauges) of these groups.
    async fn refresh_stats(&self, gids: Vec<u64>) -> Result<(), Error> {
        for gid in gids {
            let g = lock(&self.inner.groups).get(&gid).cloned();
            if let Some(g) = g {
                self.group_stats(&g).await?;
            }
        }
        Ok(())
    }

    async fn apply_retention(&self) -> Result<(), Error> {
        let names: Vec<String> = self
            .cmd(
                redis::cmd("ZRANGE")
                    .arg(self.inner.keys.registry("topics"))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        for name in names {
            self.run(|s| &s.trim, &name, &[]).await?;
        }
        Ok(())
    }

    /// Subscribes to the wake-up channel (again on the new master after a
    /// Sentinel failover).
    async fn listen(&self) -> Result<(), Error> {
        let (tx, mut rx) = mpsc::unbounded_channel::<PushInfo>();
        let channel = self.inner.keys.channel();
        let conn = self
            .inner
            .link
            .subscribe(self.cfg(), &channel, tx.clone())
            .await?;
        let mut moves = self.inner.link.master_changes();
        let me = self.clone();
        self.inner.tasks.spawn(async move {
            // Held, never read: dropping it would unsubscribe.
            let mut held = Some(conn);
            loop {
                let moved = async {
                    match moves.as_mut() {
                        Some(m) => m.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                let push = tokio::select! {
                    p = rx.recv() => match p { Some(p) => p, None => return },
                    true = moved => {
                        match me.inner.link.subscribe(me.cfg(), &channel, tx.clone()).await {
                            Ok(c) => {
                                drop(held.replace(c));
                            }
                            Err(e) => tracing::warn!(error = %e, "wake-ups: subscribing on the new master failed; consumers poll until the next move"),
                        }
                        // The new master may lack this node's registrations,
                        // and events may have come meanwhile.
                        me.rewatch();
                        continue;
                    }
                    () = me.inner.stop.cancelled() => return,
                };
                me.on_push(push);
            }
        });
        Ok(())
    }

    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message => {
                let Some(Value::BulkString(msg)) = push.data.get(1) else {
                    return;
                };
                let msg = String::from_utf8_lossy(msg);
                let mut parts = msg.split('\n');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("t"), Some(topic), Some(end)) => {
                        self.topic_end(topic, end.parse().unwrap_or(0));
                    }
                    (Some("g"), Some(_), Some(gid)) => {
                        self.group_wake(gid.parse().unwrap_or(0)).notify_waiters();
                    }
                    (Some("d"), Some(topic), None) => self.topic_gone(topic),
                    _ => {}
                }
            }
            PushKind::Disconnection => self.wake_all(),
            _ => {}
        }
    }

    /// Every local consumer claims again and every follower reads again
    /// (after missed wake-ups).
    pub(super) fn wake_all(&self) {
        self.poke_followers();
        for n in lock(&self.inner.topic_wakes).values() {
            n.notify_waiters();
        }
        for n in lock(&self.inner.group_wakes).values() {
            n.notify_waiters();
        }
    }

    pub(super) async fn stop_consumers_impl(&self) {
        self.inner.consumers_stop.cancel();
        self.inner.consumers.close();
        self.inner.consumers.wait().await;
    }

    pub(super) async fn close_impl(&self) {
        self.stop_consumers_impl().await;
        // Let queued appends finish before refusing calls.
        for _ in 0..100 {
            if self.inner.queued_bytes.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _: Result<i64, _> = self
            .cmd(
                redis::cmd("ZREM")
                    .arg(self.inner.keys.registry("nodes"))
                    .arg(&self.inner.node),
            )
            .await;
        self.inner.closed.store(true, Ordering::Release);
        self.inner.stop.cancel();
        self.inner.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.tasks.wait()).await;
        self.inner.healthy.send_replace(false);
    }
}
