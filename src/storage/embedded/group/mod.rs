//! One consumer group at run time: its owner task and the handle everyone
//! else uses to talk to it.
//!
//! Storage layer (embedded backend). The task (`task.rs`) alone touches the group's
//! [`Dispatcher`], reads the topic's log for it, hands deliveries to the
//! consumers' streams and runs the lease timer; `store.rs` writes its
//! progress and dead letters. Everyone else talks to it through a
//! [`GroupHandle`] (mpsc of commands, oneshot replies), so the state machine
//! needs no lock.

mod store;
mod task;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::dispatch::{ConsumerId, Limits};
use super::log::TopicLog;
use super::memory::MemoryBudget;
use super::meta::{DeadLetterSummary, GroupState, MetaStore};
use super::state_writer::StateWriter;
use crate::model::Error as BrokerError;
use crate::model::echo;
use crate::model::filter::Matcher;
use crate::model::results::{DeadLetterCounts, GroupGauges, GroupStats, LeaseOutcome, Selection};
use crate::model::settings::{GroupRecord, GroupSettings};
use crate::storage::backend::RawDelivery;

/// One ack id of a request, routed to its group: (index in request, offset, lease).
pub(crate) type LeaseItem = (usize, u64, u64);

/// A reply that says what happened to each ack id, or why nothing did.
pub(crate) type Outcomes = Result<Vec<(usize, LeaseOutcome)>, BrokerError>;

/// What a listing of dead letters needs of the group: the ids not to list,
/// and how many are queued.
pub(crate) type DeadLetterView = (std::collections::BTreeSet<u64>, u64);

/// Commands to the group task.
pub(crate) enum GroupCmd {
    Subscribe {
        consumer: ConsumerId,
        max_in_flight: usize,
        deliveries: mpsc::Sender<Vec<RawDelivery>>,
        /// A unary pull's consumer: it leaves with the leases it took.
        keeps_leases: bool,
    },
    Unsubscribe {
        consumer: ConsumerId,
        /// Entries whose leases stay to their deadlines (those a unary
        /// pull took); the consumer's other leases are released.
        keep: std::collections::HashSet<u64>,
    },
    Ack {
        items: Vec<LeaseItem>,
        reply: oneshot::Sender<Outcomes>,
    },
    Nack {
        items: Vec<LeaseItem>,
        delay: Option<Duration>,
        reason: String,
        dead_letter: bool,
        reply: oneshot::Sender<Outcomes>,
    },
    Extend {
        items: Vec<LeaseItem>,
        extension: Duration,
        #[allow(clippy::type_complexity)]
        reply: oneshot::Sender<Result<Vec<(usize, LeaseOutcome, Option<i64>)>, BrokerError>>,
    },
    Stats {
        reply: oneshot::Sender<GroupStats>,
    },
    Settings {
        settings: Box<GroupSettings>,
        matcher: Matcher,
    },
    Replay {
        selection: Selection,
        reply: oneshot::Sender<Result<DeadLetterCounts, BrokerError>>,
    },
    Purge {
        selection: Selection,
        reply: oneshot::Sender<Result<DeadLetterCounts, BrokerError>>,
    },
    Seek {
        offset: u64,
        reply: oneshot::Sender<Result<u64, BrokerError>>,
    },
    /// For listing: the dead letters not to list (being replayed, or
    /// deleted), and how many are queued; answered once every dead letter
    /// the group counts is on disk.
    DeadLetterView {
        reply: oneshot::Sender<Result<DeadLetterView, BrokerError>>,
    },
}

/// Why a group stopped while the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// DeleteGroup.
    GroupDeleted,
    /// DeleteTopic took its groups with it.
    TopicDeleted,
    /// The metadata store failed; the group is reloaded from disk once it
    /// works again.
    StorageFailed,
}

/// Cheap handle to a running group task.
#[derive(Clone)]
pub struct GroupHandle {
    /// Gauges kept fresh by the task.
    pub gauges: Arc<GroupGauges>,
    /// The group's id (its generation: unique per creation, kept on disk).
    pub uid: u64,
    /// The stored record, kept current by updates.
    pub record: Arc<Mutex<GroupRecord>>,
    pub(crate) tx: mpsc::Sender<GroupCmd>,
    /// Stops the task (group deletion, topic deletion, shutdown).
    pub(crate) stop: CancellationToken,
    /// Set when the group stopped for a reason other than shutdown (then
    /// the task exits without a last flush, and streams end saying why).
    pub(crate) gone: Arc<OnceLock<Gone>>,
    /// Cancelled once the task has exited.
    pub(crate) exited: CancellationToken,
}

impl GroupHandle {
    /// Sends a command, mapping a stopped task to NOT_FOUND (deleted) or
    /// UNAVAILABLE (shutdown, storage failure).
    pub(crate) async fn send(&self, cmd: GroupCmd) -> Result<(), BrokerError> {
        self.tx.send(cmd).await.map_err(|_| self.stopped())
    }

    /// Sends a command and waits for its reply.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> GroupCmd,
    ) -> Result<T, BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| self.stopped())
    }

    /// The error for a call that reached a stopped group.
    pub(crate) fn stopped(&self) -> BrokerError {
        let (topic, group) = self.key();
        match self.gone.get() {
            Some(Gone::GroupDeleted) => BrokerError::NotFound(format!(
                "group {} of topic {} was deleted",
                echo(&group),
                echo(&topic)
            )),
            Some(Gone::TopicDeleted) => {
                BrokerError::NotFound(format!("topic {} was deleted", echo(&topic)))
            }
            Some(Gone::StorageFailed) => BrokerError::Unavailable(
                "the metadata store failed; the group resumes once it is writable again".into(),
            ),
            None => BrokerError::shutting_down(),
        }
    }

    /// (topic, group) of this group.
    pub fn key(&self) -> (String, String) {
        let record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        (record.topic.clone(), record.name.clone())
    }
}

/// Everything a group task needs to start.
pub(crate) struct GroupStart {
    pub record: GroupRecord,
    /// Stored progress.
    pub state: GroupState,
    /// Its stored dead letters.
    pub dead_letters: Vec<DeadLetterSummary>,
    /// Whether the last run ended with a graceful shutdown.
    pub clean: bool,
    pub log: TopicLog,
    pub meta: Arc<MetaStore>,
    pub states: StateWriter,
    pub flush_interval: Duration,
    pub limits: Limits,
    pub memory: Arc<MemoryBudget>,
    pub stop: CancellationToken,
}

/// Starts the task of a group and returns its handle and the task future
/// (the caller spawns it on its tracker).
///
/// # Errors
/// The group's filter does not compile, or its stored state cannot be read.
pub(crate) async fn start(
    s: GroupStart,
) -> Result<
    (
        GroupHandle,
        impl std::future::Future<Output = ()> + Send + 'static,
    ),
    BrokerError,
> {
    let (tx, rx) = mpsc::channel(1024);
    let gone = Arc::new(OnceLock::new());
    let gauges = Arc::new(GroupGauges::default());
    let handle = GroupHandle {
        gauges: gauges.clone(),
        uid: s.state.header.generation,
        record: Arc::new(Mutex::new(s.record.clone())),
        tx,
        stop: s.stop.clone(),
        gone: gone.clone(),
        exited: CancellationToken::new(),
    };
    let stop = s.stop.clone();
    let exited = handle.exited.clone();
    let task = task::GroupTask::load(s, gauges).await?;
    Ok((handle, async move {
        let _exited = exited.drop_guard();
        task.run(rx, stop, gone).await;
    }))
}
