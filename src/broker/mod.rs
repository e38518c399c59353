//! The transport-free core of Herald: policy over a storage backend.
//! No tonic or prost types here.
//!
//! [`Broker`] is a cheap `Clone` handle over the [`Backend`] chosen at
//! start-up (`storage.backend`). The broker validates every request
//! (names, sizes, settings, filters), applies defaults and auto-creation,
//! assigns event ids, signs ack ids and page tokens, and shapes streams;
//! the backend keeps state, including leases (see `storage::backend`).

pub mod dead_letter;
pub mod error;
pub mod forward;
pub mod lease;
pub mod names;
pub mod settings;

mod admin;
mod consume;
mod expiry;
mod publish;
mod read;
mod subscribe;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::model::results::{
    BlockedKey, DeadLetter, DeadLetterCounts, DeadLetterFilter, DeadLetterPage, Delivery,
    GroupGauges, GroupInfo, GroupStats, LeaseOutcome, LeaseResult, Selection, TopicInfo,
    TopicStats,
};
pub use crate::model::{backoff, filter};
pub use crate::storage::embedded::dispatch::Limits as GroupLimits;
pub use admin::ServerInfo;
pub use consume::{Batches, ConsumeOptions, Settler};
pub use error::BrokerError;
pub use names::EventLimits;
pub use publish::{PublishTicket, Published, PublishedEvent};
pub use read::{ReadRequest, ReadStream};
pub use settings::{
    AckDurability, Filter, GroupPatch, GroupRecord, GroupSettings, Position, TopicPatch,
    TopicRecord, TopicSettings,
};
pub use subscribe::Subscription;

use crate::storage::Backend;
use crate::storage::embedded::{EmbeddedBackend, EmbeddedConfig};
use crate::storage::redis::RedisConfig;
use lease::AckIds;

/// Which backend holds the data, with its settings.
#[derive(Debug, Clone)]
pub enum StorageChoice {
    /// One data directory on local disk (the default).
    Embedded(EmbeddedConfig),
    /// Stateless nodes over Redis.
    Redis(RedisConfig),
}

/// Settings of the core, taken from the server configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where and how data is kept.
    pub storage: StorageChoice,
    /// Create topics and groups on first publish/subscribe.
    pub auto_create: bool,
    /// Event and request size limits.
    pub limits: EventLimits,
    /// Settings of new topics where the request leaves them unset.
    pub topic_defaults: TopicSettings,
    /// Settings of new groups where the request leaves them unset.
    pub group_defaults: GroupSettings,
    /// Consumer in-flight limit when Subscribe or Consume leaves it unset.
    pub default_max_in_flight: u32,
    /// Highest in-flight limit a consumer may ask for.
    pub max_in_flight_limit: u32,
    /// Bytes of events in one streamed message (Read batches, dead-letter
    /// pages, the ceiling of Consume batches; backends bound Subscribe
    /// batches by their own copy).
    pub max_batch_bytes: usize,
    /// The fsync policy, for GetServerInfo.
    pub fsync: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let embedded = EmbeddedConfig::default();
        BrokerConfig {
            fsync: embedded.log.fsync.to_string(),
            max_batch_bytes: embedded.group_limits.max_batch_bytes,
            storage: StorageChoice::Embedded(embedded),
            auto_create: true,
            limits: EventLimits {
                max_event_bytes: 1 << 20,
                max_request_bytes: 10 << 20,
            },
            topic_defaults: TopicSettings {
                retention_max_age: None,
                retention_max_bytes: None,
                dedup_window: Duration::from_secs(120),
                labels: Default::default(),
            },
            group_defaults: GroupSettings {
                filter: Filter::default(),
                ack_deadline: Duration::from_secs(30),
                retry: backoff::RetryPolicy::default(),
                max_delivery_attempts: 5,
                ordered: false,
                ack_durability: AckDurability::Batched,
                expire_after: None,
                attribute_filter: String::new(),
                dead_letter_topic: String::new(),
                labels: Default::default(),
                max_message_age: None,
            },
            default_max_in_flight: 1000,
            max_in_flight_limit: 100_000,
        }
    }
}

#[cfg(feature = "redis")]
async fn open_redis(
    c: &RedisConfig,
    max_batch_bytes: usize,
) -> Result<Arc<dyn Backend>, BrokerError> {
    let backend = crate::storage::redis::RedisBackend::open(c.clone(), max_batch_bytes).await?;
    Ok(Arc::new(backend))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_: &RedisConfig, _: usize) -> Result<Arc<dyn Backend>, BrokerError> {
    Err(BrokerError::Internal(
        "storage.backend = \"redis\": this herald was built without the Redis backend (cargo feature `redis`)".into(),
    ))
}

/// Handle to the core. Clones share everything.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    backend: Arc<dyn Backend>,
    ack_ids: AckIds,
    /// Readers of topics, stopped at shutdown.
    readers: TaskTracker,
    /// Cancelled at shutdown: readers end.
    stopping: CancellationToken,
    started: SystemTime,
    /// Temporary and forwarding groups known to this node.
    watched: expiry::Watched,
}

impl Broker {
    /// Opens the configured backend (for the embedded one: the data
    /// directory, every topic's log and every group with its progress).
    ///
    /// # Errors
    /// The backend cannot be opened.
    pub async fn open(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let backend: Arc<dyn Backend> = match &config.storage {
            StorageChoice::Embedded(c) => Arc::new(EmbeddedBackend::open(c.clone()).await?),
            StorageChoice::Redis(c) => open_redis(c, config.max_batch_bytes).await?,
        };
        let broker = Broker::over(config, backend);
        let stopping = broker.inner.stopping.clone();
        tokio::spawn(expiry::run(Arc::downgrade(&broker.inner), stopping.clone()));
        tokio::spawn(forward::run(Arc::downgrade(&broker.inner), stopping));
        Ok(broker)
    }

    /// A broker over an opened backend.
    pub fn over(config: BrokerConfig, backend: Arc<dyn Backend>) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                ack_ids: AckIds::new(backend.secret()),
                backend,
                readers: TaskTracker::new(),
                stopping: CancellationToken::new(),
                started: SystemTime::now(),
                watched: expiry::Watched::default(),
                config,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The backend, for in-process inspection and test hooks.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Whether storage accepts writes; changes when it fails or recovers.
    pub fn health(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.backend.health()
    }

    /// Ends every consumer stream and reader (groups save their exact
    /// progress); publishing still works. First half of [`Broker::shutdown`].
    pub async fn stop_groups(&self) {
        self.inner.stopping.cancel();
        self.inner.readers.close();
        self.inner.readers.wait().await;
        self.inner.backend.stop_consumers().await;
    }

    /// Stops every group (persisting its progress), then flushes and closes
    /// storage. Streams end; later calls fail with UNAVAILABLE.
    pub async fn shutdown(&self) {
        self.stop_groups().await;
        self.inner.backend.close().await;
    }

    /// Test hook: holds what serialises topic and group creation and
    /// deletion, so a test can line admin calls up behind it in a chosen
    /// order. Not for production use.
    #[doc(hidden)]
    pub async fn hold_admin_lock_for_test(&self) -> Box<dyn crate::storage::backend::Held + '_> {
        self.inner.backend.hold_admin_for_test().await
    }

    /// Test hook: while on, writes to the metadata store fail as on a full
    /// disk. Not for production use.
    #[doc(hidden)]
    pub fn inject_metadata_write_failures(&self, on: bool) {
        self.inner.backend.inject_metadata_write_failures(on);
    }

    /// Gauges of every running group as (topic, group, gauges), for metrics.
    pub fn group_gauges(&self) -> Vec<(String, String, Arc<GroupGauges>)> {
        self.inner.backend.group_gauges()
    }

    /// (topic, group) of the group that issued `ack_id`, for telemetry;
    /// `None` for an id that is not valid or of a group that is gone.
    pub fn ack_id_group(&self, ack_id: &str) -> Option<(String, String)> {
        let lease = self.inner.ack_ids.decode(ack_id)?;
        self.inner.backend.group_name(lease.group)
    }

    /// Makes this node know the groups of `ack_ids` (issued ones whose group
    /// it has not seen; over Redis a node knows the groups it has used), so
    /// that [`Broker::ack_id_group`] answers for them: authorization of
    /// Ack, Nack and ExtendDeadline checks each id's topic by it.
    pub async fn learn_ack_id_groups(&self, ack_ids: &[String]) {
        let mut looked_up: Vec<u64> = Vec::new();
        for id in ack_ids {
            let Some(lease) = self.inner.ack_ids.decode(id) else {
                continue;
            };
            if looked_up.contains(&lease.group)
                || self.inner.backend.group_name(lease.group).is_some()
            {
                continue;
            }
            looked_up.push(lease.group);
            if let Err(e) = self.inner.backend.learn_group(lease.group).await {
                // The call itself will meet the same storage failure.
                tracing::debug!(error = %e, "could not look up the group of an ack id");
            }
        }
    }

    /// Whether `ack_id` is an ack id this deployment issued (of any group,
    /// current or not).
    #[must_use]
    pub fn ack_id_issued(&self, ack_id: &str) -> bool {
        self.inner.ack_ids.decode(ack_id).is_some()
    }
}
