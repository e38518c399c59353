//! The key layout of the Redis backend.
//!
//! Storage layer (Redis backend). `P` is `redis.key_prefix`, `T` a topic
//! name, `G` a group id. Every key of a topic carries the hash tag `{T}`,
//! so a topic's events, dedup window, groups, leases, retries, key holds,
//! dead letters and counters live in one hash slot (one shard of a Redis
//! Cluster) and every change to them is one Lua script; topics spread over
//! the shards. Topic names are `[A-Za-z0-9._-]` and the prefix has no
//! braces, so `{T}` is always the first hash tag of the key.
//!
//! Per topic (slot of `{T}`):
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `P:{T}:m` | hash | `gen` (generation), `rec` (JSON record), `start`, `end` (retained offsets), `bytes`, `last` (last publish time), `published`, `dedup` / `maxbytes` / `maxage` (settings for the scripts) |
//! | `P:{T}:gen` | string | generation counter; outlives the topic so a re-created topic gets a new generation |
//! | `P:{T}:s` | stream | events in chunks, one per append call or per run of it of at most 128 events and ~64 KiB: id `<first offset>-1`, fields `n` count, `t` publish time, `z` record sizes (comma-separated), `p` `<length>\|<field>`: the records' length and their field in `P:{T}:x` (format 5; formats 3 and 4 held the records here, `c`, concatenated), `y`/`yz` types and their sizes, `k`/`kz` keys and their sizes (empty sizes: all events have that one value). Formats 1 and 2 wrote one entry per event (`t`, `y`, `k`, `e`); the scripts read both |
//! | `P:{T}:x` | hash | payloads (format 5): `<nonce>:<i>` (the append call's nonce, the chunk's index from 1; `<nonce>:<i>:d` when duplicates left the chunk) → the chunk's records, concatenated. The appending node writes them with a plain HSET in one MULTI/EXEC with the append script, which checks their lengths and drops them when it stores nothing (Lua would hash every byte of them as script arguments); retention deletes a batch's fields with it, topic deletion the hash |
//! | `P:{T}:b` | zset | append batches for retention: member `<first offset, 20 digits>\|<bytes>\|<nonce>\|<chunks>` (format 5; before, `<first offset>\|<bytes>`), score publish time |
//! | `P:{T}:bn` | zset | append calls' nonces: member the random nonce of the call (hex), score its first offset, with which a node's chunk cache proves a chunk it sent is the one stored (`chunk_cache.rs`); retention removes those below the topic's start. Absent for batches written before this key existed |
//! | `P:{T}:d`, `P:{T}:dz` | hash, zset | dedup window: id → offset, id → publish time |
//! | `P:{T}:w` | hash | watchers: node id → until when (ms, Redis clock) the node has consumers or followers waiting for the topic's appends (`watchers.rs`); outlives the topic, expires 60 s after its last registration |
//! | `P:{T}:G`, `P:{T}:Gi` | hash | group name → JSON record; name → `<gid>\|<topic generation>` |
//! | `P:{T}:g:G` | hash | group state: `cursor`, `lseq` (last lease), `lfloor` (first valid lease after a seek), `dlseq`, `dlfwd` (dead letters forwarded up to this id), settings (`ack`, `bmin`, `bmax`, `bmul`, `maxatt`, `ordered`, `ft`, `fp`, `maxage`: max message age µs, -1 or absent: none), counters |
//! | `P:{T}:g:G:e` | hash | pending entries: key (offset, or `r<dead-letter id>` for a replay) → `attempts\|lease\|deadline\|consumer\|first failure\|state\|ordering key` |
//! | `P:{T}:g:G:q` | zset | entries due for delivery, score = when (µs) |
//! | `P:{T}:g:G:l` | zset | leases out, score = deadline (µs): entry keys, and `b<lease>` for a batch |
//! | `P:{T}:g:G:k` | hash | batch leases: lease → `deadline\|keys\|consumer`, keys comma-separated, each a key or a range `first-last` (since format 4 a claim writes runs of consecutive keys as ranges: one range when it hands every event in a row) (first deliveries without a key hold that one claim handed to one consumer, at most 128 per batch; such keys have no entry until nacked, extended, released or expired). Batch leases are odd, entry leases even |
//! | `P:{T}:g:G:h`, `P:{T}:g:G:w:<key>` | hash, lists | per-key ordering: key → holding entry; entries waiting behind it |
//! | `P:{T}:g:G:c` | hash | consumers: id → `max in flight\|in flight\|node` |
//! | `P:{T}:g:G:x`, `:xe`, `:xt`, `:xz` | hash, hash, hash, zset | dead letters: id → `attempts\|first\|last failure\|dead-lettered at\|reason`; id → `offset\|publish time\|record`; id → type; queued ids |
//!
//! Registry (slot of `{P}`), what spans topics and cannot be one step on a
//! cluster:
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `P:{P}:topics` | zset | topic names (score 0, listed by name) |
//! | `P:{P}:groups` | zset | `<topic>\n<group>` (listed by topic, name) |
//! | `P:{P}:gids` | hash | group id → `<topic>\n<group>` (routes ack ids) |
//! | `P:{P}:gid` | string | group id counter |
//! | `P:{P}:nodes` | zset | node id → last heartbeat (ms, Redis clock); ids of nodes that list themselves as watchers begin with `w-` |
//! | `P:{P}:node:<id>` | set | the node's consumers: `<topic>\n<gid>\n<generation>\n<consumer>` |
//! | `P:{P}:secret` | string | the deployment's key for ack ids and page tokens |
//! | `P:{P}:format` | string | storage format version ([`FORMAT`]) |
//!
//! The registry follows the topics, never the other way round: a topic
//! exists when its meta hash does. Creating writes the topic first, then
//! adds its name; deleting removes the topic, then its name. A node that
//! dies in between leaves a name without a topic (skipped and removed by
//! the next listing) or a topic without a name (added back by the next
//! `get` or publish of it). Groups are bound to the generation of their
//! topic, so a stale group never binds to a re-created topic.
//!
//! Moving an event to another topic (a dead letter forwarded to its
//! group's dead-letter topic, as Pub/Sub's `dead_letter_policy` asks)
//! cannot be one step on a cluster either. The group's dead-letter queue
//! (`x`, `xz`) is the outbox: a node appends the dead letters after the
//! group's `dlfwd` to the target topic under the event id
//! `herald-dl-<gid>-<dead-letter id>`, then raises `dlfwd` (the `forward`
//! script, never lowered), so the target's dedup window turns a repeated
//! move (a node dying between the append and the raise) into a duplicate.
//! See `broker/forward.rs`.
//!
//! Wake-ups travel on the Pub/Sub channel `P:wake` (classic Pub/Sub reaches
//! every node of a cluster): `t\n<topic>\n<end>` after an append (only
//! when a node other than the appending one watches the topic),
//! `g\n<topic>\n<gid>` when a group has work or changed, `d\n<topic>` when
//! a topic is deleted.

/// Version of the layout and record encoding; a Redis holding another
/// version is refused with a message naming both, except the older ones
/// this release reads and takes over (2 added batch leases, `:k`; 3 writes
/// stream entries in chunks; 4 writes a batch lease's keys as ranges; 5
/// keeps a chunk's records in the payload hash, not in its stream entry).
pub const FORMAT: u32 = 5;

/// The older formats this release takes over in place.
pub const FORMATS_TAKEN_OVER: [u32; 4] = [1, 2, 3, 4];

/// Key names of one deployment.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The topic's meta hash (`KEYS[1]` of every topic script).
    pub fn meta(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:m", self.prefix)
    }

    /// The topic's event stream.
    pub fn stream(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:s", self.prefix)
    }

    /// The topic's payload hash (the records of its chunks, format 5).
    pub fn payloads(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:x", self.prefix)
    }

    /// The topic's append batches.
    pub fn batches(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:b", self.prefix)
    }

    /// The topic's group names → ids.
    pub fn group_ids(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:Gi", self.prefix)
    }

    /// The topic's group records.
    pub fn group_records(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:G", self.prefix)
    }

    /// A registry key.
    pub fn registry(&self, name: &str) -> String {
        format!("{p}:{{{p}}}:{name}", p = self.prefix)
    }

    /// The set of a node's consumers.
    pub fn node_consumers(&self, node: &str) -> String {
        self.registry(&format!("node:{node}"))
    }

    /// The wake-up channel.
    pub fn channel(&self) -> String {
        format!("{}:wake", self.prefix)
    }
}
