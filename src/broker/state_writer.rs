//! Persists group progress in batches: every group task hands its latest
//! snapshot here, and one named task writes all that arrived meanwhile in a
//! single metadata transaction (group commit for acks).
//!
//! Broker layer over `storage::meta`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::dispatch::Snapshot;
use crate::storage::meta::{GroupKey, MetaStore};

enum Msg {
    Save(GroupKey, Vec<u8>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the state writer task.
#[derive(Clone)]
pub struct StateWriter {
    tx: mpsc::UnboundedSender<Msg>,
}

impl StateWriter {
    /// Starts the writer; it ends when every handle is dropped, after writing
    /// what it was given.
    pub fn start(meta: Arc<MetaStore>, tracker: &tokio_util::task::TaskTracker) -> StateWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tracker.spawn(run(meta, rx));
        StateWriter { tx }
    }

    /// Queues a group's snapshot; a later one for the same group replaces it.
    pub fn save(&self, key: GroupKey, snapshot: &Snapshot) {
        match serde_json::to_vec(snapshot) {
            Ok(bytes) => {
                let _ = self.tx.send(Msg::Save(key, bytes));
            }
            Err(e) => tracing::error!(error = %e, "encoding group state failed"),
        }
    }

    /// Waits until everything queued before this call is on disk.
    pub async fn flush(&self) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(reply)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The named task `group-state-writer`.
async fn run(meta: Arc<MetaStore>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    while let Some(first) = rx.recv().await {
        let mut latest: HashMap<GroupKey, Vec<u8>> = HashMap::new();
        let mut waiters = Vec::new();
        let mut take = |msg: Msg| match msg {
            Msg::Save(key, bytes) => {
                latest.insert(key, bytes);
            }
            Msg::Flush(reply) => waiters.push(reply),
        };
        take(first);
        while let Ok(msg) = rx.try_recv() {
            take(msg);
        }
        let batch: Vec<(GroupKey, Vec<u8>)> = latest.into_iter().collect();
        let meta = meta.clone();
        let result = tokio::task::spawn_blocking(move || meta.put_group_states(&batch)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "group-state-writer: persisting group progress failed")
            }
            Err(e) => tracing::error!(error = %e, "group-state-writer: task failed"),
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}
