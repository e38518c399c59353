//! Server configuration: typed, layered (defaults < TOML file < `HERALD_*`
//! environment < command-line flags) and validated once at start-up.
//!
//! Environment variables use `__` between levels: `HERALD_STORAGE__FSYNC`,
//! `HERALD_DATA_DIR`, `HERALD_GROUPS__ACK_DEADLINE`. Durations are written
//! like `30s`, `250ms`, `2m`.
//!
//! The `[tls]` and `[auth]` sections and the rule that keeps an open server
//! on loopback are in [`security`].

pub mod pubsub;
pub mod security;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::broker::backoff::RetryPolicy;
use crate::broker::{
    AckDurability, BrokerConfig, EventLimits, Filter, GroupLimits, GroupSettings, StorageChoice,
    TopicSettings,
};
use crate::grpc::TransportOptions;
use crate::storage::embedded::EmbeddedConfig;
use crate::storage::embedded::log::{FsyncPolicy, LogOptions, TailCacheMemory};
use crate::storage::redis::RedisConfig;
pub use pubsub::PubSubConfig;
pub use security::{AuthConfig, AuthMode, TlsConfig};

/// The whole configuration. Every key is documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Directory of topics and metadata.
    pub data_dir: PathBuf,
    /// Create topics and groups on first publish/subscribe.
    pub auto_create: bool,
    /// How long shutdown waits for open calls before closing storage.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Storage settings.
    pub storage: StorageConfig,
    /// Size and flow limits.
    pub limits: LimitsConfig,
    /// Defaults of new topics.
    pub topics: TopicsConfig,
    /// Defaults of new groups and group persistence.
    pub groups: GroupsConfig,
    /// Log output.
    pub log: LogConfig,
    /// Connection limits and timeouts.
    pub server: ServerConfig,
    /// TLS and mutual TLS.
    pub tls: TlsConfig,
    /// Authentication and permissions.
    pub auth: AuthConfig,
    /// The web console and Prometheus `/metrics`.
    pub http: HttpConfig,
    /// The Redis backend (with `storage.backend = "redis"`).
    pub redis: RedisConfig,
    /// The Google Pub/Sub front door.
    pub pubsub: PubSubConfig,
}

/// The address the HTTP listener takes when `http.listen` is not set.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// `[http]`: the listener of the web console and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve the console and `/metrics`; `false` turns the listener off.
    pub enabled: bool,
    /// Listen address. Unset means [`DEFAULT_HTTP_LISTEN`], and then a port
    /// that is taken only costs a warning; an address set here that cannot
    /// be bound stops start-up.
    pub listen: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: None,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where data lives: `embedded` (the data directory) or `redis` (the
    /// `[redis]` section).
    pub backend: BackendKind,
    /// `always` | `interval:<ms>` | `never`.
    pub fsync: FsyncPolicy,
    /// Segment file size before rolling, bytes.
    pub segment_bytes: u64,
    /// Bytes of log between sparse index entries.
    pub index_interval_bytes: u64,
    /// Recent events per topic kept in memory for consumers that keep up.
    pub tail_cache_events: usize,
    /// Bytes of recent events per topic kept in memory (0 = no cache).
    pub tail_cache_bytes: usize,
    /// Bytes of recent events kept in memory by all topics together.
    pub tail_cache_total_bytes: usize,
    /// Most ids a topic's dedup index keeps; the oldest go first.
    pub dedup_max_ids: usize,
    /// Page cache of the metadata database (`meta.redb`), bytes.
    pub meta_cache_bytes: usize,
    /// How often the retention task looks for segments to delete.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// Bytes a topic's newest segment file is allocated ahead of its data
    /// (0: none).
    pub runway_bytes: u64,
}

/// `storage.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The embedded log and metadata store in `data_dir`.
    #[default]
    Embedded,
    /// Stateless nodes over Redis (`[redis]`).
    Redis,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest event (payload, strings and attributes), bytes.
    pub max_event_bytes: usize,
    /// Largest publish request (sum of its events), bytes.
    pub max_request_bytes: usize,
    /// In-flight limit of a consumer that does not ask for one.
    pub default_max_in_flight: u32,
    /// Highest in-flight limit a consumer may ask for.
    pub max_in_flight: u32,
    /// Bytes of events in one streamed message (a Subscribe or Consume
    /// batch, a Read batch, a ListDeadLetters page); a single larger event
    /// travels alone.
    pub max_batch_bytes: usize,
    /// Bytes of events all consumer groups together may hold in memory.
    pub groups_memory_bytes: usize,
}

/// `[topics]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Default dedup window of new topics; `0s` turns dedup off.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
}

/// `[groups]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// Default lease length.
    #[serde(with = "humantime_serde")]
    pub ack_deadline: Duration,
    /// Default first retry delay.
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Default longest retry delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Default backoff growth per attempt.
    pub backoff_multiplier: f64,
    /// Default failures before dead-lettering; 0 = never.
    pub max_delivery_attempts: u32,
    /// Default of new groups: answer acks at once (`batched`) or once
    /// they are durable (`sync`).
    pub ack_durability: AckDurability,
    /// How often group progress (acks) is persisted.
    #[serde(with = "humantime_serde")]
    pub state_flush_interval: Duration,
    /// Bytes of events one group may hold in memory (read ahead for its
    /// consumers, in flight, waiting for a retry).
    pub max_buffered_bytes: usize,
}

/// `[server]`: connection limits and timeouts at the transport edge, so
/// that idle or silent clients cannot use up the server's connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Most client connections open at once; more are closed as soon as
    /// accepted. Each holds a file descriptor.
    pub max_connections: usize,
    /// Time a new connection has to send the HTTP/2 preface.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time a connection may stay with no open call before it is closed;
    /// `0s` = never.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How often an HTTP/2 PING checks that the client is alive; `0s` = never.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Serve gRPC server reflection (grpcurl and other tools list and call
    /// the API without proto files). It describes the API, not its data.
    pub reflection: bool,
    /// Serve on a non-loopback address without TLS, or without
    /// authentication. Off, such a configuration refuses to start.
    pub allow_insecure: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// `RUST_LOG`-style filter; `RUST_LOG` itself wins when set.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("./data"),
            auto_create: true,
            shutdown_timeout: Duration::from_secs(10),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            topics: TopicsConfig::default(),
            groups: GroupsConfig::default(),
            log: LogConfig::default(),
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            redis: RedisConfig::default(),
            pubsub: PubSubConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            reflection: true,
            allow_insecure: false,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let log = LogOptions::default();
        StorageConfig {
            backend: BackendKind::Embedded,
            fsync: log.fsync,
            segment_bytes: log.segment_bytes,
            index_interval_bytes: log.index_interval_bytes,
            tail_cache_events: log.tail_cache_events,
            tail_cache_bytes: log.tail_cache_bytes,
            tail_cache_total_bytes: log.tail_cache_memory.limit(),
            dedup_max_ids: log.dedup_max_ids,
            meta_cache_bytes: crate::storage::embedded::meta::DEFAULT_CACHE_BYTES,
            retention_interval: log.retention_interval,
            runway_bytes: log.runway_bytes,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_event_bytes: 1 << 20,
            max_request_bytes: 10 << 20,
            default_max_in_flight: 1000,
            max_in_flight: 100_000,
            max_batch_bytes: 3 << 20,
            groups_memory_bytes: 1 << 30,
        }
    }
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            dedup_window: Duration::from_secs(120),
        }
    }
}

impl Default for GroupsConfig {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        GroupsConfig {
            ack_deadline: Duration::from_secs(30),
            min_backoff: retry.min_backoff,
            max_backoff: retry.max_backoff,
            backoff_multiplier: retry.multiplier,
            max_delivery_attempts: 5,
            ack_durability: AckDurability::Batched,
            state_flush_interval: Duration::from_millis(100),
            max_buffered_bytes: 64 << 20,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// Top-level keys an `HERALD_*` variable may set.
const ENV_KEYS: &[&str] = &["listen", "data_dir", "auto_create", "shutdown_timeout"];
/// Sections whose keys an `HERALD_<SECTION>__<KEY>` variable may set.
/// Other `HERALD_*` variables are not config keys: `HERALD_CONFIG` names the
/// file, and `HERALD_SERVER` (the client commands' server URL) is not the
/// `[server]` section.
const ENV_SECTIONS: &[&str] = &[
    "storage", "limits", "topics", "groups", "log", "server", "tls", "auth", "http", "redis",
];

/// Whether the (dotted) key of an `HERALD_*` variable is a config key.
fn is_env_key(key: &str) -> bool {
    let (names, key) = match key.split_once('.') {
        Some((section, _)) => (ENV_SECTIONS, section),
        None => (ENV_KEYS, key),
    };
    names.iter().any(|k| key.eq_ignore_ascii_case(k))
}

impl Config {
    /// Layers defaults, the TOML file (if given), `HERALD_*` variables and
    /// `overrides` (flags, as dotted keys), then validates.
    ///
    /// # Errors
    /// A message naming the key and source that is wrong.
    pub fn load(file: Option<&Path>, overrides: Figment) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        // The filter runs after `split`, so nested keys arrive dotted.
        let env = Env::prefixed("HERALD_")
            .split("__")
            .filter(|key| is_env_key(key.as_str()));
        let config: Config = figment
            .merge(env)
            .merge(overrides)
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file's text over the defaults (no environment, no
    /// flags) and validates it: the file layer of [`Config::load`] alone.
    ///
    /// # Errors
    /// A message naming the key that is wrong.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks cross-field rules and ranges.
    ///
    /// # Errors
    /// A message naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        self.pubsub.validate()?;
        let l = &self.limits;
        if l.max_event_bytes == 0 {
            bail!("limits.max_event_bytes must be positive");
        }
        if l.max_request_bytes < l.max_event_bytes {
            bail!(
                "limits.max_request_bytes ({}) must be at least limits.max_event_bytes ({})",
                l.max_request_bytes,
                l.max_event_bytes
            );
        }
        if l.max_request_bytes > 256 << 20 {
            bail!("limits.max_request_bytes must be at most 256 MiB");
        }
        if l.max_batch_bytes < 1024 {
            bail!("limits.max_batch_bytes must be at least 1024");
        }
        if self.groups.max_buffered_bytes < l.max_batch_bytes {
            bail!("groups.max_buffered_bytes must be at least limits.max_batch_bytes");
        }
        if l.groups_memory_bytes < self.groups.max_buffered_bytes {
            bail!("limits.groups_memory_bytes must be at least groups.max_buffered_bytes");
        }
        if l.default_max_in_flight == 0 || l.default_max_in_flight > l.max_in_flight {
            bail!("limits.default_max_in_flight must be between 1 and limits.max_in_flight");
        }
        if self.storage.backend == BackendKind::Redis {
            self.redis.check().map_err(anyhow::Error::msg)?;
        }
        if self.storage.segment_bytes < 4096 {
            bail!("storage.segment_bytes must be at least 4096");
        }
        if self.storage.retention_interval < Duration::from_millis(10) {
            bail!("storage.retention_interval must be at least 10ms");
        }
        if self.storage.index_interval_bytes == 0 {
            bail!("storage.index_interval_bytes must be positive");
        }
        if self.storage.dedup_max_ids == 0 || self.storage.dedup_max_ids > u32::MAX as usize {
            bail!(
                "storage.dedup_max_ids must be between 1 and {} (turn dedup off with topics.dedup_window = \"0s\")",
                u32::MAX
            );
        }
        if self.storage.tail_cache_bytes > self.storage.tail_cache_total_bytes {
            bail!(
                "storage.tail_cache_bytes ({}) must be at most storage.tail_cache_total_bytes ({})",
                self.storage.tail_cache_bytes,
                self.storage.tail_cache_total_bytes
            );
        }
        let g = &self.groups;
        if g.ack_deadline < Duration::from_millis(10) || g.ack_deadline > Duration::from_secs(3600)
        {
            bail!("groups.ack_deadline must be between 10ms and 1h");
        }
        if g.state_flush_interval.is_zero() || g.state_flush_interval > Duration::from_secs(60) {
            bail!("groups.state_flush_interval must be between 1ms and 60s");
        }
        let s = &self.server;
        if s.max_connections == 0 {
            bail!("server.max_connections must be positive");
        }
        if s.handshake_timeout < Duration::from_millis(10) {
            bail!("server.handshake_timeout must be at least 10ms");
        }
        if !s.idle_timeout.is_zero() && s.idle_timeout < Duration::from_millis(10) {
            bail!("server.idle_timeout must be 0s (never) or at least 10ms");
        }
        if !s.keepalive_interval.is_zero() && s.keepalive_timeout < Duration::from_millis(10) {
            bail!("server.keepalive_timeout must be at least 10ms");
        }
        security::validate(self.listen, s.allow_insecure, &self.tls, &self.auth)?;
        if self.http.enabled
            && let Some(addr) = self.http.listen
        {
            security::exposure("http.listen", addr, s.allow_insecure, &self.tls, &self.auth)?;
        }
        self.retry().check().map_err(|(field, msg)| {
            anyhow::anyhow!(
                "groups.{}: {msg}",
                field
                    .replace("retry_policy.", "")
                    .replace("multiplier", "backoff_multiplier")
            )
        })?;
        Ok(())
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            min_backoff: self.groups.min_backoff,
            max_backoff: self.groups.max_backoff,
            multiplier: self.groups.backoff_multiplier,
        }
    }

    /// The gRPC server's connection limits and timeouts.
    pub fn transport(&self) -> TransportOptions {
        let s = &self.server;
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        TransportOptions {
            max_connections: s.max_connections,
            handshake_timeout: s.handshake_timeout,
            idle_timeout: nonzero(s.idle_timeout),
            keepalive_interval: nonzero(s.keepalive_interval),
            keepalive_timeout: s.keepalive_timeout,
        }
    }

    /// The broker's view of this configuration.
    pub fn broker(&self) -> BrokerConfig {
        let embedded = EmbeddedConfig {
            data_dir: self.data_dir.clone(),
            log: LogOptions {
                segment_bytes: self.storage.segment_bytes,
                index_interval_bytes: self.storage.index_interval_bytes,
                fsync: self.storage.fsync,
                tail_cache_events: self.storage.tail_cache_events,
                tail_cache_bytes: self.storage.tail_cache_bytes,
                // One budget for every topic of this server.
                tail_cache_memory: TailCacheMemory::new(self.storage.tail_cache_total_bytes),
                dedup_max_ids: self.storage.dedup_max_ids,
                retention_interval: self.storage.retention_interval,
                runway_bytes: self.storage.runway_bytes,
                ..LogOptions::default()
            },
            state_flush_interval: self.groups.state_flush_interval,
            group_limits: GroupLimits {
                max_pending: GroupLimits::default().max_pending,
                max_bytes: self.groups.max_buffered_bytes,
                max_batch: GroupLimits::default().max_batch,
                max_batch_bytes: self.limits.max_batch_bytes,
            },
            groups_memory_bytes: self.limits.groups_memory_bytes,
            meta_cache_bytes: self.storage.meta_cache_bytes,
        };
        let (storage, fsync) = match self.storage.backend {
            BackendKind::Embedded => (
                StorageChoice::Embedded(embedded),
                self.storage.fsync.to_string(),
            ),
            BackendKind::Redis => (
                StorageChoice::Redis(self.redis.clone()),
                "redis (the server's appendfsync)".to_string(),
            ),
        };
        BrokerConfig {
            storage,
            auto_create: self.auto_create,
            limits: EventLimits {
                max_event_bytes: self.limits.max_event_bytes,
                max_request_bytes: self.limits.max_request_bytes,
            },
            topic_defaults: TopicSettings {
                retention_max_age: None,
                retention_max_bytes: None,
                dedup_window: self.topics.dedup_window,
                labels: Default::default(),
            },
            group_defaults: GroupSettings {
                filter: Filter::default(),
                ack_deadline: self.groups.ack_deadline,
                retry: self.retry(),
                max_delivery_attempts: self.groups.max_delivery_attempts,
                ordered: false,
                ack_durability: self.groups.ack_durability,
                expire_after: None,
                attribute_filter: String::new(),
                dead_letter_topic: String::new(),
                labels: Default::default(),
                max_message_age: None,
            },
            default_max_in_flight: self.limits.default_max_in_flight,
            max_in_flight_limit: self.limits.max_in_flight,
            max_batch_bytes: self.limits.max_batch_bytes,
            fsync,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)]
    fn layers_apply_in_order_and_bad_values_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "herald.toml",
                r#"
                    data_dir = "/srv/herald"
                    [storage]
                    fsync = "interval:5"
                    [groups]
                    ack_deadline = "10s"
                "#,
            )?;
            jail.set_env("HERALD_GROUPS__ACK_DEADLINE", "20s");
            jail.set_env("HERALD_SERVER", "ignored: not a config key");
            jail.set_env("HERALD_SERVER__IDLE_TIMEOUT", "0s");
            jail.set_env("HERALD_SERVER__MAX_CONNECTIONS", "50");
            let flags = Figment::new().merge(("listen", "127.0.0.1:6000"));
            let c = Config::load(Some(Path::new("herald.toml")), flags).unwrap();
            assert_eq!(c.data_dir, PathBuf::from("/srv/herald"));
            assert_eq!(
                c.storage.fsync,
                FsyncPolicy::Interval(Duration::from_millis(5))
            );
            assert_eq!(
                c.groups.ack_deadline,
                Duration::from_secs(20),
                "env beats file"
            );
            assert_eq!(c.listen.port(), 6000, "flags beat everything");
            assert!(c.auto_create, "defaults fill the rest");
            assert_eq!(
                c.server.max_connections, 50,
                "[server] keys from the environment"
            );
            assert_eq!(
                c.transport().idle_timeout,
                None,
                "0s turns the idle timeout off"
            );
            assert_eq!(c.transport().handshake_timeout, Duration::from_secs(10));

            assert!(
                c.http.enabled && c.http.listen.is_none(),
                "console on, default address"
            );
            jail.set_env("HERALD_HTTP__LISTEN", "127.0.0.1:9090");
            let c = Config::load(None, Figment::new()).unwrap();
            assert_eq!(c.http.listen, Some("127.0.0.1:9090".parse().unwrap()));
            jail.set_env("HERALD_HTTP__ENABLED", "false");
            assert!(!Config::load(None, Figment::new()).unwrap().http.enabled);

            jail.set_env("HERALD_STORAGE__FSYNC", "sometimes");
            let err = Config::load(None, Figment::new()).unwrap_err().to_string();
            assert!(err.contains("fsync"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn cross_field_rules() {
        let mut c = Config::default();
        c.limits.max_request_bytes = 10;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_request_bytes")
        );
        let mut c = Config::default();
        c.storage.tail_cache_bytes = 2 * c.storage.tail_cache_total_bytes;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("tail_cache_total_bytes")
        );
        let mut c = Config::default();
        c.groups.backoff_multiplier = 0.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("backoff_multiplier")
        );
        let mut c = Config::default();
        c.server.max_connections = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("server.max_connections")
        );
        let mut c = Config::default();
        c.server.handshake_timeout = Duration::ZERO;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("server.handshake_timeout")
        );
        assert!(Config::default().validate().is_ok());
    }
}
