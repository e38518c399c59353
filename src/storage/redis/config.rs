//! `[redis]`: where the Redis backend finds Redis and how it talks to it.
//!
//! Storage layer (Redis backend), plain data; checked once at start-up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the Redis backend. Every key is documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). Several
    /// URLs separated by commas are seed nodes of a Redis Cluster; whether
    /// the server is a cluster is found out on connecting.
    pub url: String,
    /// With Redis Sentinel: the name of the master the sentinels watch
    /// (`redis.url` then lists sentinels). Empty: no Sentinel.
    pub sentinel_master: String,
    /// Prefix of every key, so several Herald deployments can share one
    /// Redis (letters, digits, `.`, `_`, `-`, `:`).
    pub key_prefix: String,
    /// Connections this node keeps open (commands are pipelined on each).
    pub pool_size: usize,
    /// A call that gets no answer within this fails with UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Connecting gives up after this.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Publish and dead-lettering return only once this many replicas have
    /// the write (`WAIT`); 0 answers when the master has it.
    pub wait_replicas: u32,
    /// How long `WAIT` waits for those replicas; fewer in time is an
    /// UNAVAILABLE answer (the write stands; a retry is deduplicated).
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// How often a node tells Redis it is alive.
    #[serde(with = "humantime_serde")]
    pub node_heartbeat: Duration,
    /// A node silent for this long is dead: other nodes release its
    /// consumers' leases (redelivered at once, with attempt + 1).
    #[serde(with = "humantime_serde")]
    pub node_timeout: Duration,
    /// How often a node applies topics' retention by age.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// Bytes of events this node published that it keeps, so that a claim
    /// of them needs not read them back from Redis; 0 turns it off.
    pub chunk_cache_bytes: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            sentinel_master: String::new(),
            key_prefix: "herald".into(),
            pool_size: 4,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
            node_heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(10),
            retention_interval: Duration::from_secs(30),
            chunk_cache_bytes: 64 << 20,
        }
    }
}

impl RedisConfig {
    /// The seed URLs.
    pub fn urls(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A message naming the key that is wrong.
    pub fn check(&self) -> Result<(), String> {
        let urls = self.urls();
        if urls.is_empty() {
            return Err("redis.url: must name at least one server".into());
        }
        for u in &urls {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                return Err(format!(
                    "redis.url: {u:?} must start with redis:// or rediss://"
                ));
            }
        }
        if self.key_prefix.is_empty()
            || !self
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        {
            return Err(format!(
                "redis.key_prefix: {:?} must be non-empty letters, digits, '.', '_', '-' or ':'",
                self.key_prefix
            ));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err("redis.pool_size: must be 1-64".into());
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err("redis.timeout and redis.connect_timeout must be positive".into());
        }
        if self.node_heartbeat.is_zero() || self.node_timeout < self.node_heartbeat * 3 {
            return Err("redis.node_timeout: must be at least three heartbeats".into());
        }
        Ok(())
    }
}
