//! The storage seam: what the broker asks of a backend, at the level of
//! topics, events and group operations. Chosen once at start-up
//! (`storage.backend`): [`super::embedded`] or [`super::redis`].
//!
//! Storage layer. No file path, byte format or Redis key appears above this
//! trait. The broker keeps policy (validation, names, ack-id and page-token
//! formats, defaults); a backend keeps state, and with it the leases: it
//! hands a consumer up to N deliveries, and takes acks, nacks (delay or
//! poison), extensions, releases, seeks and dead-letter operations. Settings
//! it needs to decide (backoff, attempt limit, filter, ordering) come with
//! the group's record. Every failure is a [`model::Error`] that says what
//! went wrong without server paths.
//!
//! [`model::Error`]: crate::model::Error

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;

use crate::event::{Event, StoredEvent};
use crate::model::Error;
use crate::model::results::{
    DeadLetter, DeadLetterCounts, DeadLetterFilter, GroupInfo, LeaseOutcome, Selection, TopicInfo,
};
use crate::model::settings::{GroupRecord, GroupSettings, Position, TopicRecord, TopicSettings};

/// A boxed future, for the ordered half of appends.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Names one delivery of a group: the group's id (unique per group
/// creation, stable across restarts and nodes), the entry key (an offset,
/// or a replay key) and the lease number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// The group's id.
    pub group: u64,
    /// Entry key.
    pub key: u64,
    /// Lease number, unique within the group.
    pub lease: u64,
}

/// One delivery as a backend hands it out (the broker turns the lease
/// into an ack id).
#[derive(Debug, Clone)]
pub struct RawDelivery {
    /// What to ack, nack or extend.
    pub lease: LeaseRef,
    /// The event.
    pub event: Arc<StoredEvent>,
    /// 1-based attempt.
    pub attempt: u32,
    /// Lease deadline, µs since the epoch.
    pub deadline_us: i64,
}

/// A consumer's stream of delivery batches. Dropping it releases the
/// consumer's leases at once; it ends with one error that says why (group
/// or topic deleted: NOT_FOUND; shutdown or storage failure: UNAVAILABLE).
pub type DeliveryStream = Pin<Box<dyn Stream<Item = Result<Vec<RawDelivery>, Error>> + Send>>;

/// How a consumer joins a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    /// Most leases it holds at once.
    pub max_in_flight: usize,
    /// When its stream is dropped, the leases of the deliveries it yielded
    /// stay until their deadlines (and can still be acked, nacked or
    /// extended by their ack ids) instead of being released at once; the
    /// others are released: the consumer of a unary pull.
    pub keep_leases: bool,
}

impl Join {
    /// A streaming consumer: its leases are released when it leaves.
    pub fn streaming(max_in_flight: usize) -> Join {
        Join {
            max_in_flight,
            keep_leases: false,
        }
    }
}

/// What a nack asks for.
#[derive(Debug, Clone)]
pub struct Nack {
    /// Retry after this delay instead of the group's backoff.
    pub delay: Option<Duration>,
    /// Why it failed (kept with the event, shown in dead letters).
    pub reason: String,
    /// Dead-letter it now (poison).
    pub dead_letter: bool,
}

/// Where an append landed: one entry per input event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Server time of the append, shared by every event of the batch.
    pub publish_time_us: i64,
    /// Offset of each event (the original's for a duplicate).
    pub offsets: Vec<u64>,
    /// Whether each event was a duplicate within the topic's dedup window.
    pub duplicate: Vec<bool>,
}

/// New events and the end of a topic, for readers that follow it.
pub struct TopicWatch {
    /// The topic's end offset, updated as events are stored.
    pub end: watch::Receiver<u64>,
    /// Cancelled when the topic is deleted.
    pub deleted: CancellationToken,
    /// Keeps the backend following the topic for this watch (the Redis
    /// backend lists the node as waiting for the topic's appends).
    pub hold: Option<Box<dyn Send + Sync>>,
}

/// A page of dead letters a backend read.
#[derive(Debug, Clone)]
pub struct DeadLetterRows {
    /// The entries, in the order asked for.
    pub entries: Vec<DeadLetter>,
    /// More entries follow.
    pub more: bool,
    /// Entries matching the filter, all pages.
    pub total: u64,
}

/// Which dead letters a listing wants.
#[derive(Debug, Clone)]
pub struct DeadLetterQuery {
    /// Start after this id (exclusive).
    pub after: Option<u64>,
    /// Ascending ids when true.
    pub oldest_first: bool,
    /// Types and times.
    pub filter: DeadLetterFilter,
    /// Most entries.
    pub max_entries: usize,
    /// About this many bytes of events at most (at least one entry).
    pub max_bytes: usize,
}

/// How far a group's dead letters have been forwarded to its dead-letter
/// topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// The group's id, unique per creation (a group deleted and created
    /// anew has another).
    pub uid: u64,
    /// Every dead letter with an id up to this one has been forwarded.
    pub upto: u64,
    /// The highest dead-letter id the group has given out, when the
    /// backend knows it cheaply (nothing to forward when it is `upto`).
    pub newest: Option<u64>,
}

/// Counts of the whole server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Topics.
    pub topics: u64,
    /// Groups.
    pub groups: u64,
    /// Events published through this node since it started.
    pub published: u64,
    /// Open consumer streams on this node.
    pub connected: u64,
}

/// Something held until dropped (a test hook's lock guard).
pub trait Held: Send {}

impl<T: Send> Held for T {}

/// A change to settings, validated by the broker against the current value.
pub type Update<'a, T> = &'a (dyn Fn(&mut T) -> Result<(), Error> + Sync);

/// `Ok(true)` for a value, `Ok(false)` for NOT_FOUND.
pub(crate) fn found<T>(r: Result<T, Error>) -> Result<bool, Error> {
    match r {
        Ok(_) => Ok(true),
        Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A storage backend.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `"embedded"` or `"redis"`.
    fn kind(&self) -> &'static str;

    /// True while storage takes writes; changes when it fails or recovers.
    fn health(&self) -> watch::Receiver<bool>;

    /// The state of the backend in a few words, for GetServerInfo.
    fn state(&self) -> String;

    /// The key of this deployment (signs ack ids and page tokens): kept by
    /// the backend so every node and every restart shares it.
    fn secret(&self) -> [u8; 16];

    /// Counts of the whole server.
    fn totals(&self) -> Totals;

    /// Gauges of every group running here, as (topic, group, gauges).
    fn group_gauges(&self) -> Vec<(String, String, Arc<crate::model::results::GroupGauges>)>;

    /// (topic, group) of a group id, if the group exists and this node
    /// knows it (a node over Redis knows the groups it has used).
    fn group_name(&self, group: u64) -> Option<(String, String)>;

    /// Makes `group_name` know the group of this id when it exists
    /// anywhere (a lookup in shared storage); nothing to do when every group
    /// is known here.
    async fn learn_group(&self, _group: u64) -> Result<(), Error> {
        Ok(())
    }

    /// Ends every consumer stream (groups save their exact progress);
    /// publishing still works. The first half of a graceful shutdown.
    async fn stop_consumers(&self);

    /// Flushes and closes storage; later calls fail with UNAVAILABLE.
    async fn close(&self);

    /// Creates a topic.
    ///
    /// # Errors
    /// `AlreadyExists`; storage failures.
    async fn create_topic(&self, record: TopicRecord) -> Result<TopicInfo, Error>;

    /// Creates the topic with `defaults` unless it exists. Never creates one
    /// a concurrent delete removed in between: existence is checked where
    /// it is written.
    ///
    /// # Errors
    /// Storage failures.
    async fn ensure_topic(&self, name: &str, defaults: &TopicSettings) -> Result<(), Error>;

    /// A topic with stats.
    ///
    /// # Errors
    /// `NotFound`.
    async fn get_topic(&self, name: &str) -> Result<TopicInfo, Error>;

    /// Whether a topic exists (cheaper than [`Backend::get_topic`]).
    ///
    /// # Errors
    /// Storage failures.
    async fn topic_exists(&self, name: &str) -> Result<bool, Error> {
        found(self.get_topic(name).await)
    }

    /// Whether a group exists (cheaper than [`Backend::get_group`]).
    ///
    /// # Errors
    /// Storage failures.
    async fn group_exists(&self, topic: &str, group: &str) -> Result<bool, Error> {
        found(self.get_group(topic, group).await)
    }

    /// Topics in name order after `after` (exclusive), at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    async fn list_topics(&self, after: Option<&str>, limit: usize)
    -> Result<Vec<TopicInfo>, Error>;

    /// Changes a topic's settings.
    ///
    /// # Errors
    /// `NotFound`, `InvalidArgument` from `update`.
    async fn update_topic(
        &self,
        name: &str,
        update: Update<'_, TopicSettings>,
    ) -> Result<TopicInfo, Error>;

    /// Deletes a topic with its events, groups and dead letters; streams and
    /// readers of it end with NOT_FOUND.
    ///
    /// # Errors
    /// `NotFound`.
    async fn delete_topic(&self, name: &str) -> Result<(), Error>;

    /// Appends a batch to an existing topic, all or nothing, at consecutive
    /// offsets. The batch is ordered now: batches handed in one after
    /// another by one caller get offsets in that order; the returned future
    /// says when it is durable. `server_ids[i]` marks ids the broker made
    /// (unique by construction: no dedup entry needed); empty means none.
    ///
    /// # Errors
    /// `NotFound` (topic), `Unavailable`/`ResourceExhausted` (storage).
    fn append(
        &self,
        topic: &str,
        events: Vec<Event>,
        server_ids: Vec<bool>,
    ) -> Result<BoxFuture<Result<Appended, Error>>, Error>;

    /// Events with offsets from `from`: at most `max_events`, stopping after
    /// the event that reaches `max_bytes` (at least one when any is there).
    ///
    /// # Errors
    /// `NotFound`; `OutOfRange` when `from` is before the first retained
    /// offset (the message names it).
    async fn read(
        &self,
        topic: &str,
        from: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error>;

    /// The offset a position names (for Read). An offset outside the
    /// retained log is `OutOfRange`.
    ///
    /// # Errors
    /// `NotFound`, `OutOfRange`.
    async fn resolve(&self, topic: &str, position: Position) -> Result<u64, Error>;

    /// Follows a topic's end; `follow`: the caller waits for new events
    /// (not only for the topic's deletion), which a backend may have to
    /// arrange for (see [`TopicWatch::hold`]).
    ///
    /// # Errors
    /// `NotFound`.
    async fn watch(&self, topic: &str, follow: bool) -> Result<TopicWatch, Error>;

    /// Creates a group at its record's start position, creating the topic
    /// with `topic_defaults` when it is missing and they are given (a bad
    /// start position creates nothing).
    ///
    /// # Errors
    /// `AlreadyExists`, `NotFound` (topic), `OutOfRange` (start offset).
    async fn create_group(
        &self,
        record: GroupRecord,
        topic_defaults: Option<&TopicSettings>,
    ) -> Result<GroupInfo, Error>;

    /// Creates the group (and its topic) with defaults unless it exists
    /// (`None` defaults: do not create, answer `NotFound`).
    ///
    /// # Errors
    /// `NotFound`; storage failures.
    async fn ensure_group(
        &self,
        topic: &str,
        group: &str,
        defaults: Option<(&GroupSettings, &TopicSettings)>,
    ) -> Result<(), Error>;

    /// A group with stats.
    ///
    /// # Errors
    /// `NotFound`.
    async fn get_group(&self, topic: &str, group: &str) -> Result<GroupInfo, Error>;

    /// Groups in (topic, name) order after `after`, of one topic or all.
    ///
    /// # Errors
    /// `NotFound` (topic).
    async fn list_groups(
        &self,
        topic: Option<&str>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<GroupInfo>, Error>;

    /// Changes a group's settings.
    ///
    /// # Errors
    /// `NotFound`, `InvalidArgument`/`FailedPrecondition` from `update`.
    async fn update_group(
        &self,
        topic: &str,
        group: &str,
        update: Update<'_, GroupSettings>,
    ) -> Result<GroupInfo, Error>;

    /// Deletes a group with its progress and dead letters; its streams end
    /// with NOT_FOUND.
    ///
    /// # Errors
    /// `NotFound`.
    async fn delete_group(&self, topic: &str, group: &str) -> Result<(), Error>;

    /// Moves a group; returns the offset it continues from.
    ///
    /// # Errors
    /// `NotFound`, `OutOfRange`.
    async fn seek(&self, topic: &str, group: &str, position: Position) -> Result<u64, Error>;

    /// Joins a group as a consumer holding at most `join.max_in_flight`
    /// leases.
    ///
    /// # Errors
    /// `NotFound`, `Unavailable`.
    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        join: Join,
    ) -> Result<DeliveryStream, Error>;

    /// Acknowledges deliveries (a late ack of an older lease of a pending
    /// event is honoured). One outcome per lease, in order.
    ///
    /// # Errors
    /// `Unavailable` when progress cannot be saved.
    async fn ack(&self, leases: &[LeaseRef]) -> Result<Vec<LeaseOutcome>, Error>;

    /// Rejects deliveries: retried after the delay or the group's backoff,
    /// or dead-lettered (poison, or out of attempts). A nack that
    /// dead-letters returns once the dead letter is durable.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn nack(&self, leases: &[LeaseRef], nack: &Nack) -> Result<Vec<LeaseOutcome>, Error>;

    /// Sets lease deadlines to now + `extension`; the new deadline (µs since
    /// the epoch) of each extended lease.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn extend(
        &self,
        leases: &[LeaseRef],
        extension: Duration,
    ) -> Result<Vec<(LeaseOutcome, Option<i64>)>, Error>;

    /// A page of a group's dead letters.
    ///
    /// # Errors
    /// `NotFound`.
    async fn list_dead_letters(
        &self,
        topic: &str,
        group: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterRows, Error>;

    /// Puts dead letters back into the group, attempts reset; durable when
    /// it returns.
    ///
    /// # Errors
    /// `NotFound` (group, or an id of `Selection::Ids`).
    async fn replay_dead_letters(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, Error>;

    /// Deletes dead letters; durable when it returns.
    ///
    /// # Errors
    /// `NotFound`.
    async fn purge_dead_letters(
        &self,
        topic: &str,
        group: &str,
        selection: Selection,
    ) -> Result<DeadLetterCounts, Error>;

    /// How far the group's dead letters have been forwarded.
    ///
    /// # Errors
    /// `NotFound`.
    async fn forwarded(&self, topic: &str, group: &str) -> Result<Forwarded, Error>;

    /// Records that the group's dead letters up to `to.upto` have been
    /// forwarded; never moves back, and does nothing when `to.uid` is not
    /// the group's current id. Durable when it returns.
    ///
    /// # Errors
    /// `NotFound`, or when storage fails.
    async fn set_forwarded(&self, topic: &str, group: &str, to: Forwarded) -> Result<(), Error>;

    /// Test hook: holds whatever serialises admin operations, so a test can
    /// line calls up behind it. Not for production use.
    #[doc(hidden)]
    async fn hold_admin_for_test(&self) -> Box<dyn Held + '_> {
        Box::new(())
    }

    /// Test hook: makes metadata writes fail as on a full disk while on.
    /// Not for production use.
    #[doc(hidden)]
    fn inject_metadata_write_failures(&self, _on: bool) {}
}
