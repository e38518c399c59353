//! Persists group progress in batches: every group task hands its flush
//! here, and one named task writes all that arrived meanwhile in a single
//! metadata transaction (group commit for acks), then tells each group
//! whether its flush is durable.
//!
//! Broker layer over `storage::embedded::meta`. A failed commit fails every flush it
//! carried with UNAVAILABLE (and the store marks itself unhealthy; the
//! broker reloads groups once it is reopened).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::meta::{MetaStore, StateWrite};
use crate::model::Error as BrokerError;

type Done = oneshot::Sender<Result<(), BrokerError>>;

enum Msg {
    Write(StateWrite, Done),
    Flush(oneshot::Sender<()>),
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

    /// Queues one group's flush; the receiver says when it is durable, or
    /// why it failed.
    pub fn write(&self, write: StateWrite) -> oneshot::Receiver<Result<(), BrokerError>> {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Msg::Write(_, done))) =
            self.tx.send(Msg::Write(write, done))
        {
            let _ = done.send(Err(BrokerError::shutting_down()));
        }
        rx
    }

    /// Waits until everything queued before this call is written.
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
        let mut writes = Vec::new();
        let mut done = Vec::new();
        let mut flushes = Vec::new();
        let mut take = |msg: Msg| match msg {
            Msg::Write(w, d) => {
                writes.push(w);
                done.push(d);
            }
            Msg::Flush(reply) => flushes.push(reply),
        };
        take(first);
        while let Ok(msg) = rx.try_recv() {
            take(msg);
        }
        let outcome = if writes.is_empty() {
            Ok(())
        } else {
            let meta = meta.clone();
            match tokio::task::spawn_blocking(move || meta.put_group_states(&writes)).await {
                Ok(result) => result.map_err(BrokerError::from),
                Err(e) => Err(BrokerError::Internal(format!(
                    "group-state-writer: task failed: {e}"
                ))),
            }
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "group-state-writer: persisting group progress failed");
        }
        for d in done {
            let _ = d.send(outcome.clone());
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}
