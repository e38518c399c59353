//! Recovery from a failed metadata store without a restart.
//!
//! Storage layer (embedded backend). When a commit of `meta.redb` fails (a full or failing
//! disk), the store refuses every call. This named task ("storage-doctor")
//! then reports the server unhealthy, stops every group (their streams end
//! with UNAVAILABLE and calls on them answer UNAVAILABLE, so nothing is
//! acknowledged that cannot be saved), and tries every second to reopen the
//! store, which rolls back to the last synced commit. Once that works it
//! reloads every group from disk, as a restart after a crash would (acks of
//! the last flush interval may be redelivered, attempt counts never go
//! backwards), and reports the server healthy again.

use std::time::Duration;

use super::EmbeddedBackend as Broker;
use super::blocking;
use super::group::{Gone, GroupHandle};
use super::topic::lock;

/// How long to wait between attempts to reopen the store.
const RETRY: Duration = Duration::from_secs(1);

/// The task: runs until shutdown.
pub(super) async fn run(broker: Broker) {
    let stop = broker.inner.groups_stop.clone();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = broker.inner.meta.failed() => {}
        }
        if broker.inner.meta.healthy() {
            continue;
        }
        broker.inner.health.send_replace(false);
        let stopped = broker.stop_all_groups().await;
        tracing::error!(
            groups = stopped,
            "metadata store failed: groups stopped until it can be reopened"
        );
        let mut attempts = 0u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
            let meta = broker.inner.meta.clone();
            match blocking(move || meta.reopen()).await {
                Ok(()) => break,
                Err(e) => {
                    attempts += 1;
                    if attempts.is_power_of_two() {
                        tracing::warn!(error = %e, attempts, "metadata store still cannot be reopened");
                    }
                }
            }
        }
        match broker.reload_groups().await {
            Ok(()) => {
                broker.inner.health.send_replace(true);
                tracing::info!("metadata store recovered; groups reloaded");
            }
            Err(e) => {
                // The store failed again while loading; the next failure
                // notice starts over.
                tracing::error!(error = %e, "reloading groups after a metadata failure failed");
            }
        }
    }
}

impl Broker {
    /// Stops every group task without a last flush, leaving its handle in
    /// place so calls on it answer UNAVAILABLE; waits until they have
    /// exited. Returns how many there were.
    async fn stop_all_groups(&self) -> usize {
        let _admin = self.inner.admin.lock().await;
        let handles: Vec<GroupHandle> = self
            .inner
            .groups_by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for g in &handles {
            let _ = g.gone.set(Gone::StorageFailed);
            g.stop.cancel();
        }
        for g in &handles {
            g.exited.cancelled().await;
        }
        handles.len()
    }

    /// Replaces every stopped group with one loaded from the reopened store.
    async fn reload_groups(&self) -> Result<(), crate::model::Error> {
        let _admin = self.inner.admin.lock().await;
        for t in &self.all_topics() {
            lock(&t.groups).clear();
        }
        self.inner
            .groups_by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.load_groups(false).await
    }
}
