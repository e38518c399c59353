//! Talking to Redis: one connection handle for a single server or a
//! cluster, the Lua scripts, timeouts, and what Redis's failures mean to a
//! client of Herald.
//!
//! Storage layer (Redis backend). Every call has a deadline
//! (`redis.timeout`); a call that fails because Redis cannot be reached is
//! UNAVAILABLE with a message that says so, never a hang.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Cmd, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisError, Script, ServerErrorKind, Value,
};

use super::config::RedisConfig;
use crate::model::Error;

/// A handle on Redis: a single server (or master with replicas) or a
/// cluster. Clones share connections.
#[derive(Clone)]
pub(super) enum Link {
    /// Connections to one server, used in turn.
    Single(Arc<Pool>),
    /// A cluster connection (it keeps one connection per shard).
    Cluster(ClusterConnection),
}

/// Connections to one server.
pub(super) struct Pool {
    conns: RwLock<Arc<Vec<ConnectionManager>>>,
    next: AtomicUsize,
    /// Where the connections go; with Sentinel it changes on a failover,
    /// and the wake-up subscription follows it.
    master: watch::Sender<ConnectionInfo>,
}

impl Pool {
    fn new(conns: Vec<ConnectionManager>, master: ConnectionInfo) -> Pool {
        Pool {
            conns: RwLock::new(Arc::new(conns)),
            next: AtomicUsize::new(0),
            master: watch::Sender::new(master),
        }
    }

    fn all(&self) -> Arc<Vec<ConnectionManager>> {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn pick(&self) -> ConnectionManager {
        let conns = self.all();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % conns.len();
        conns[i].clone()
    }

    /// The server the connections go to.
    pub(super) fn master(&self) -> ConnectionInfo {
        self.master.borrow().clone()
    }

    /// Moves the pool to `master` over `conns` (a Sentinel failover).
    pub(super) fn replace(&self, conns: Vec<ConnectionManager>, master: ConnectionInfo) {
        *self.conns.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(conns);
        self.master.send_replace(master);
    }
}

/// `config.pool_size` reconnecting connections to `server`.
///
/// # Errors
/// UNAVAILABLE when it cannot be reached.
pub(super) async fn open_pool(
    config: &RedisConfig,
    server: &ConnectionInfo,
) -> Result<Vec<ConnectionManager>, Error> {
    let mut conns = Vec::with_capacity(config.pool_size);
    for _ in 0..config.pool_size {
        conns.push(single(config, server.clone()).await?);
    }
    Ok(conns)
}

/// Connects to the configured Redis; a single URL naming a cluster node is
/// recognised (`INFO cluster`) and connected to as a cluster.
///
/// # Errors
/// UNAVAILABLE naming the server when it cannot be reached.
pub(super) async fn connect(config: &RedisConfig) -> Result<Link, Error> {
    if !config.sentinel_master.is_empty() {
        let master = super::sentinel::master(config).await?;
        let pool = Arc::new(Pool::new(open_pool(config, &master).await?, master));
        tokio::spawn(super::sentinel::follow(
            Arc::downgrade(&pool),
            config.clone(),
        ));
        return Ok(Link::Single(pool));
    }
    let urls = config.urls();
    let first = urls[0]
        .as_str()
        .into_connection_info()
        .map_err(|e| unreachable(&e))?;
    let clustered = urls.len() > 1 || {
        let mut one = single(config, first.clone()).await?;
        let info: String = query(&mut one, config, redis::cmd("INFO").arg("cluster")).await?;
        info.contains("cluster_enabled:1")
    };
    if clustered {
        let client = ClusterClientBuilder::new(urls.clone())
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.timeout)
            .build()
            .map_err(|e| unreachable(&e))?;
        let conn = tokio::time::timeout(config.connect_timeout * 3, client.get_async_connection())
            .await
            .map_err(|_| Error::Unavailable("Redis Cluster: connecting timed out".into()))?
            .map_err(|e| unreachable(&e))?;
        return Ok(Link::Cluster(conn));
    }
    let conns = open_pool(config, &first).await?;
    Ok(Link::Single(Arc::new(Pool::new(conns, first))))
}

/// One reconnecting connection to `server`.
async fn single(config: &RedisConfig, server: ConnectionInfo) -> Result<ConnectionManager, Error> {
    let client = redis::Client::open(server).map_err(|e| unreachable(&e))?;
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    tokio::time::timeout(
        config.connect_timeout * 3,
        ConnectionManager::new_with_config(client, cfg),
    )
    .await
    .map_err(|_| Error::Unavailable("Redis unreachable: connecting timed out".into()))?
    .map_err(|e| unreachable(&e))
}

/// Runs one command with the call deadline.
async fn query<C: ConnectionLike, T: redis::FromRedisValue>(
    conn: &mut C,
    config: &RedisConfig,
    cmd: &Cmd,
) -> Result<T, Error> {
    tokio::time::timeout(config.timeout, cmd.query_async(conn))
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| from_redis(&e))
}

impl Link {
    /// Whether this is a cluster.
    pub fn clustered(&self) -> bool {
        matches!(self, Link::Cluster(_))
    }

    /// Tells when the server moves (a Sentinel failover); `None` on a
    /// cluster, whose connection follows its shards by itself.
    pub fn master_changes(&self) -> Option<watch::Receiver<ConnectionInfo>> {
        match self {
            Link::Single(p) => Some(p.master.subscribe()),
            Link::Cluster(_) => None,
        }
    }

    /// Runs a command (routed by its first key on a cluster).
    pub async fn cmd<T: redis::FromRedisValue>(
        &self,
        config: &RedisConfig,
        cmd: &Cmd,
    ) -> Result<T, Error> {
        match self {
            Link::Single(p) => query(&mut p.pick(), config, cmd).await,
            Link::Cluster(c) => query(&mut c.clone(), config, cmd).await,
        }
    }

    /// Runs a pipeline (its commands share a slot on a cluster).
    pub async fn pipe<T: redis::FromRedisValue>(
        &self,
        config: &RedisConfig,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        let run = async {
            match self {
                Link::Single(p) => pipe.query_async(&mut p.pick()).await,
                Link::Cluster(c) => pipe.query_async(&mut c.clone()).await,
            }
        };
        tokio::time::timeout(config.timeout, run)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| from_redis(&e))
    }

    /// Runs a script: `KEYS[1]` is `key` (which names the slot), `args`
    /// follow the shared `ARGV[1]` (channel) and `ARGV[2]` (topic).
    pub async fn eval(
        &self,
        config: &RedisConfig,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<Vec<Value>, Error> {
        match self.eval_value(config, script, key, args).await? {
            Value::Array(items) => Ok(items),
            other => Err(bad_reply(&Some(other))),
        }
    }

    /// Runs the commands of `before` (each `ignore`d), then a script as
    /// [`Link::eval`] does, in one transaction (MULTI/EXEC, one round trip)
    /// on the shard of `key`'s slot: nothing runs when the connection drops
    /// or Redis refuses a command (out of memory); what `before` wrote stays
    /// when the script itself fails. When Redis does not know the script,
    /// loads it and runs both again.
    pub async fn eval_after(
        &self,
        config: &RedisConfig,
        mut before: redis::Pipeline,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<Vec<Value>, Error> {
        let evalsha = before.cmd("EVALSHA").arg(script.get_hash()).arg(1).arg(key);
        for a in args {
            evalsha.arg(*a);
        }
        before.atomic();
        let pipe = before;
        let run = async {
            // One load of the script and one follow of a moved shard (a
            // failover may need both, one after the other).
            let (mut loaded, mut followed) = (false, false);
            loop {
                let r = match self {
                    Link::Single(p) => pipe.query_async::<Vec<Value>>(&mut p.pick()).await,
                    Link::Cluster(c) => pipe.query_async::<Vec<Value>>(&mut c.clone()).await,
                };
                match r {
                    Err(e)
                        if !loaded
                            && (e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
                                || e.to_string().contains("NOSCRIPT")) =>
                    {
                        loaded = true;
                        match self {
                            Link::Single(p) => script.load_async(&mut p.pick()).await?,
                            Link::Cluster(c) => script.load_async(&mut c.clone()).await?,
                        };
                    }
                    Err(e) if !followed && passing(&aborted(&e)) => {
                        // Refused while queueing (nothing ran): a moved slot,
                        // a demoted master. A plain command on the key lets
                        // the connection follow, then once more.
                        followed = true;
                        let _: Result<i64, _> =
                            self.cmd(config, redis::cmd("EXISTS").arg(key)).await;
                    }
                    r => return r,
                }
            }
        };
        let mut replies = tokio::time::timeout(config.timeout, run)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| from_redis(&e))?;
        match replies.pop() {
            Some(Value::Array(items)) => Ok(items),
            other => Err(bad_reply(&other)),
        }
    }

    /// Runs a script and returns its reply as it is.
    pub async fn eval_value(
        &self,
        config: &RedisConfig,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<Value, Error> {
        let mut inv = script.prepare_invoke();
        inv.key(key);
        for a in args {
            inv.arg(*a);
        }
        let run = async {
            match self {
                Link::Single(p) => inv.invoke_async::<Value>(&mut p.pick()).await,
                Link::Cluster(c) => inv.invoke_async::<Value>(&mut c.clone()).await,
            }
        };
        tokio::time::timeout(config.timeout, run)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| from_redis(&e))
    }

    /// Subscribes to `channel` on a connection of its own (RESP3 pushes
    /// into `tx`; resubscribed after reconnecting, which is announced by a
    /// `Disconnection` push). Keep the returned handle alive.
    pub async fn subscribe(
        &self,
        config: &RedisConfig,
        channel: &str,
        tx: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<Subscription, Error> {
        let urls = config.urls();
        let sub = async {
            match self {
                Link::Single(p) => {
                    let server = p.master();
                    let settings = server
                        .redis_settings()
                        .clone()
                        .set_protocol(redis::ProtocolVersion::RESP3);
                    let client = redis::Client::open(server.set_redis_settings(settings))?;
                    let cfg = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(config.connect_timeout))
                        .set_response_timeout(Some(config.timeout))
                        .set_max_delay(Duration::from_secs(1))
                        .set_push_sender(tx)
                        .set_automatic_resubscription();
                    let mut c = ConnectionManager::new_with_config(client, cfg).await?;
                    c.subscribe(channel).await?;
                    Ok(Subscription::Single(c))
                }
                Link::Cluster(_) => {
                    let client = ClusterClientBuilder::new(urls.clone())
                        .use_protocol(redis::ProtocolVersion::RESP3)
                        .push_sender(tx)
                        .connection_timeout(config.connect_timeout)
                        .response_timeout(config.timeout)
                        .build()?;
                    let mut c = client.get_async_connection().await?;
                    c.subscribe(channel).await?;
                    Ok(Subscription::Cluster(c))
                }
            }
        };
        tokio::time::timeout(config.connect_timeout * 3, sub)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e: RedisError| unreachable(&e))
    }

    /// Waits until `replicas` replicas of the master holding `key` have
    /// every write made so far (`WAIT`). Fewer in time is UNAVAILABLE.
    pub async fn wait_replicas(
        &self,
        config: &RedisConfig,
        key: &str,
        replicas: u32,
    ) -> Result<(), Error> {
        if replicas == 0 {
            return Ok(());
        }
        let ms = config.wait_timeout.as_millis() as u64;
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(ms);
        let got: i64 = match self {
            // Every connection of the pool waits, so the write is covered
            // whichever connection carried it.
            Link::Single(p) => {
                let mut least = i64::MAX;
                for c in p.all().iter() {
                    least = least.min(query(&mut c.clone(), config, &cmd).await?);
                }
                least
            }
            Link::Cluster(c) => {
                let slot = hash_slot(key.as_bytes());
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::new(slot, SlotAddr::Master),
                ));
                let v = tokio::time::timeout(
                    config.timeout + config.wait_timeout,
                    c.clone().route_command(cmd, route),
                )
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| from_redis(&e))?;
                redis::from_redis_value(v)
                    .map_err(|e| Error::Internal(format!("unexpected WAIT reply: {e}")))?
            }
        };
        if got < i64::from(replicas) {
            return Err(Error::Unavailable(format!(
                "the write reached {got} of {replicas} Redis replicas within {:?} \
                 (redis.wait_replicas); it may still be stored: retry with the same event ids",
                config.wait_timeout
            )));
        }
        Ok(())
    }
}

/// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag,
/// modulo 16384.
pub(super) fn hash_slot(key: &[u8]) -> u16 {
    let tag = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in tag {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// A subscribed connection (kept alive by its holder, never read).
#[allow(dead_code)]
pub(super) enum Subscription {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

fn timed_out() -> Error {
    Error::Unavailable("Redis did not answer in time (redis.timeout)".into())
}

fn unreachable(e: &RedisError) -> Error {
    Error::Unavailable(format!("Redis unreachable: {e}"))
}

/// Codes of errors that pass: a shard moving or failing over, one loading.
const PASSING: [&str; 8] = [
    "MOVED",
    "ASK",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
    "LOADING",
    "MASTERDOWN",
    "BUSY",
];

/// The codes of the errors that aborted a transaction (MULTI/EXEC) while
/// it was queued; empty for any other error.
fn aborted(e: &RedisError) -> Vec<String> {
    if e.kind() != ErrorKind::Server(ServerErrorKind::ExecAbort) {
        return Vec::new();
    }
    e.clone()
        .into_server_errors()
        .map(|errors| errors.iter().map(|(_, e)| e.code().to_string()).collect())
        .unwrap_or_default()
}

/// Whether a transaction aborted with these codes only for errors that
/// pass.
fn passing(aborted: &[String]) -> bool {
    !aborted.is_empty() && aborted.iter().all(|c| PASSING.contains(&c.as_str()))
}

/// What a Redis failure means to Herald's client.
pub(super) fn from_redis(e: &RedisError) -> Error {
    let aborted = aborted(e);
    if e.code() == Some("OOM") || aborted.iter().any(|c| c == "OOM") {
        return Error::ResourceExhausted(
            "Redis is out of memory (maxmemory); free space or raise the limit".into(),
        );
    }
    if passing(&aborted) {
        return Error::Unavailable(format!("Redis is not available: {e}"));
    }
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::ResponseError
            | ServerErrorKind::ExecAbort
            | ServerErrorKind::CrossSlot
            | ServerErrorKind::NoScript,
        ) => {
            tracing::error!(error = %e, "Redis refused a Herald script");
            Error::Internal(format!("Redis refused a storage step: {e}"))
        }
        ErrorKind::Server(_) => Error::Unavailable(format!("Redis is not available: {e}")),
        _ => unreachable(e),
    }
}

/// The scripts, each prefixed by the shared prelude.
pub(super) struct Scripts {
    pub claim: Script,
    pub ack: Script,
    pub nack: Script,
    pub extend: Script,
    pub join: Script,
    pub release: Script,
    pub topic_create: Script,
    pub topic_update: Script,
    pub topic_delete: Script,
    pub append: Script,
    pub trim: Script,
    pub read: Script,
    pub resolve: Script,
    pub group_create: Script,
    pub group_update: Script,
    pub group_delete: Script,
    pub seek: Script,
    pub group_stats: Script,
    pub dl_page: Script,
    pub dl_change: Script,
    pub forward: Script,
    pub watch: Script,
    pub heartbeat: Script,
}

macro_rules! scripts {
    ($($name:ident),*) => {
        Scripts {
            $($name: Script::new(concat!(
                include_str!("lua/prelude.lua"),
                "\n",
                include_str!("lua/chunks.lua"),
                "\n",
                include_str!("lua/common.lua"),
                "\n",
                include_str!("lua/claiming.lua"),
                "\n",
                include_str!(concat!("lua/", stringify!($name), ".lua"))
            )),)*
            heartbeat: Script::new(HEARTBEAT),
        }
    };
}

/// Records a node's heartbeat in Redis time (ms): `KEYS[1]` the node set,
/// `ARGV[1]` the node id, `ARGV[2]` how long a silent node still counts as
/// live (ms), `ARGV[3]` the watchers mark. Returns `{time, 1 if a live
/// node's id does not begin with the mark (a release from before watchers,
/// see `watchers.rs`) else 0}`.
const HEARTBEAT: &str = "local t = redis.call('TIME') \
    local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
    redis.call('ZADD', KEYS[1], ms, ARGV[1]) \
    local older = 0 \
    for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ms - tonumber(ARGV[2]), '+inf')) do \
      if string.sub(n, 1, #ARGV[3]) ~= ARGV[3] then older = 1 end \
    end \
    return {ms, older}";

impl Scripts {
    pub fn new() -> Scripts {
        scripts!(
            claim,
            ack,
            nack,
            extend,
            join,
            release,
            topic_create,
            topic_update,
            topic_delete,
            append,
            trim,
            read,
            resolve,
            group_create,
            group_update,
            group_delete,
            seek,
            group_stats,
            dl_page,
            dl_change,
            forward,
            watch
        )
    }
}

/// A reply read front to back.
pub(super) struct Reply {
    items: std::vec::IntoIter<Value>,
}

impl Reply {
    pub fn new(v: Vec<Value>) -> Reply {
        Reply {
            items: v.into_iter(),
        }
    }

    /// Items left.
    pub fn left(&self) -> usize {
        self.items.len()
    }

    /// The next item as bytes (integers as their decimal text).
    pub fn bytes(&mut self) -> Result<Vec<u8>, Error> {
        match self.items.next() {
            Some(Value::BulkString(b)) => Ok(b),
            Some(Value::SimpleString(s)) => Ok(s.into_bytes()),
            Some(Value::Int(i)) => Ok(i.to_string().into_bytes()),
            Some(Value::Okay) => Ok(b"OK".to_vec()),
            other => Err(bad_reply(&other)),
        }
    }

    /// The next item as text.
    pub fn text(&mut self) -> Result<String, Error> {
        String::from_utf8(self.bytes()?).map_err(|_| bad_reply(&None))
    }

    /// The next item as an integer.
    pub fn int(&mut self) -> Result<i64, Error> {
        match self.items.next() {
            Some(Value::Int(i)) => Ok(i),
            Some(Value::BulkString(b)) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad_reply(&None)),
            other => Err(bad_reply(&other)),
        }
    }

    /// The next item as a non-negative integer.
    pub fn uint(&mut self) -> Result<u64, Error> {
        u64::try_from(self.int()?).map_err(|_| bad_reply(&None))
    }
}

fn bad_reply(v: &Option<Value>) -> Error {
    tracing::error!(?v, "unexpected reply from a Herald script");
    Error::Internal("unexpected reply from Redis".into())
}

#[cfg(test)]
mod tests {
    use super::hash_slot;

    #[test]
    fn hash_slots_match_redis_cluster() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"herald:{orders}:m"), hash_slot(b"orders"));
        assert_eq!(hash_slot(b"{}x"), hash_slot(b"{}x"));
        assert_eq!(hash_slot(b"123456789"), 0x31c3);
    }
}
