//! Persists group progress in batches: every group task hands its latest
//! snapshot here, and one named task writes all that arrived meanwhile in a
//! single metadata transaction (group commit for acks). Dead-letter changes
//! travel with the snapshot taken at the same moment, so an event is never
//! both gone from the group and missing from its dead-letter queue.
//!
//! Broker layer over `storage::meta`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::dispatch::Snapshot;
use crate::storage::meta::{DeadLetterOps, GroupKey, MetaStore};

enum Msg {
    Save(GroupKey, Vec<u8>),
    DeadLetters {
        key: GroupKey,
        state: Vec<u8>,
        ops: DeadLetterOps,
        done: oneshot::Sender<()>,
    },
    Flush(oneshot::Sender<()>),
}

/// Handle to the state writer task.
#[derive(Clone)]
pub struct StateWriter {
    tx: mpsc::UnboundedSender<Msg>,
}

fn encode(snapshot: &Snapshot) -> Vec<u8> {
    // A struct of integers and strings always serialises.
    serde_json::to_vec(snapshot).unwrap_or_default()
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
        let _ = self.tx.send(Msg::Save(key, encode(snapshot)));
    }

    /// Queues dead-letter changes with the group's snapshot of the same
    /// moment; the returned receiver fires once both are durable (or the
    /// writer has stopped).
    pub fn save_dead_letters(
        &self,
        key: GroupKey,
        snapshot: &Snapshot,
        ops: DeadLetterOps,
    ) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::DeadLetters {
            key,
            state: encode(snapshot),
            ops,
            done,
        });
        rx
    }

    /// Waits until everything queued before this call is on disk.
    pub async fn flush(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(reply)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The named task `group-state-writer`.
async fn run(meta: Arc<MetaStore>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    while let Some(first) = rx.recv().await {
        let mut latest: HashMap<GroupKey, Vec<u8>> = HashMap::new();
        let mut dead: Vec<(GroupKey, DeadLetterOps)> = Vec::new();
        let mut waiters = Vec::new();
        let mut take = |msg: Msg| match msg {
            Msg::Save(key, bytes) => {
                latest.insert(key, bytes);
            }
            Msg::DeadLetters {
                key,
                state,
                ops,
                done,
            } => {
                latest.insert(key.clone(), state);
                dead.push((key, ops));
                waiters.push(done);
            }
            Msg::Flush(reply) => waiters.push(reply),
        };
        take(first);
        while let Ok(msg) = rx.try_recv() {
            take(msg);
        }
        let states: Vec<(GroupKey, Vec<u8>)> = latest.into_iter().collect();
        let meta = meta.clone();
        let result =
            tokio::task::spawn_blocking(move || meta.put_group_states(&states, &dead)).await;
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
