//! Redis Sentinel: finding the master of `redis.sentinel_master` and
//! following it when Sentinel promotes a replica.
//!
//! Storage layer (Redis backend). With `redis.sentinel_master` set,
//! `redis.url` lists sentinels. The node asks them in order
//! (`SENTINEL get-master-addr-by-name`) for the master's address and
//! connects to it with the scheme, user, password and database of the first
//! URL (the sentinels themselves are asked without credentials). A task
//! asks again every `POLL`; when the answer changes (a failover), the
//! node's connections move to the new master and the wake-up subscription
//! follows, without a restart. Calls in between fail with UNAVAILABLE, as
//! while Redis is unreachable.

use std::sync::Weak;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use super::config::RedisConfig;
use super::conn::{Pool, open_pool};
use crate::model::Error;

/// How often the sentinels are asked where the master is.
const POLL: Duration = Duration::from_secs(1);

/// The master's connection info, as the sentinels of `config` report it.
///
/// # Errors
/// UNAVAILABLE when no sentinel answers with an address.
pub(super) async fn master(config: &RedisConfig) -> Result<ConnectionInfo, Error> {
    let urls = config.urls();
    let mut errors = Vec::new();
    for url in &urls {
        match ask(config, url).await {
            Ok(Some((host, port))) => return master_info(config, &host, port),
            Ok(None) => errors.push(format!(
                "{url}: knows no master named {:?}",
                config.sentinel_master
            )),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(Error::Unavailable(format!(
        "Redis Sentinel: no sentinel named the master ({})",
        errors.join("; ")
    )))
}

/// One sentinel's answer: the master's host and port, if it knows it.
async fn ask(config: &RedisConfig, url: &str) -> Result<Option<(String, u16)>, String> {
    let info = url.into_connection_info().map_err(|e| e.to_string())?;
    let bare = ConnectionInfo::clone(&info).set_redis_settings(Default::default());
    let client = redis::Client::open(bare).map_err(|e| e.to_string())?;
    let ask = async {
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&config.sentinel_master)
            .query_async::<Option<(String, u16)>>(&mut c)
            .await
    };
    tokio::time::timeout(config.connect_timeout, ask)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())
}

/// The first URL's settings (scheme, credentials, database) at `host:port`.
fn master_info(config: &RedisConfig, host: &str, port: u16) -> Result<ConnectionInfo, Error> {
    let first = config.urls().into_iter().next().unwrap_or_default();
    let info = first
        .as_str()
        .into_connection_info()
        .map_err(|e| Error::Unavailable(format!("redis.url: {e}")))?;
    let addr = match info.addr().clone() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure,
            tls_params,
        },
        _ => ConnectionAddr::Tcp(host.to_string(), port),
    };
    Ok(info.set_addr(addr))
}

/// `host:port` of a connection info, for comparing and logging.
pub(super) fn address(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(h, p)
        | ConnectionAddr::TcpTls {
            host: h, port: p, ..
        } => {
            format!("{h}:{p}")
        }
        other => other.to_string(),
    }
}

/// Follows the master until the pool is dropped.
pub(super) async fn follow(pool: Weak<Pool>, config: RedisConfig) {
    loop {
        tokio::time::sleep(POLL).await;
        let Some(p) = pool.upgrade() else { return };
        let found = match master(&config).await {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(error = %e, "Redis Sentinel: asking for the master failed");
                continue;
            }
        };
        let (from, to) = (address(&p.master()), address(&found));
        if from == to {
            continue;
        }
        match open_pool(&config, &found).await {
            Ok(conns) => {
                p.replace(conns, found);
                tracing::warn!(from = %from, to = %to, "Redis Sentinel: the master moved; connections follow it");
            }
            Err(e) => {
                tracing::warn!(to = %to, error = %e, "Redis Sentinel: cannot reach the new master yet");
            }
        }
    }
}
