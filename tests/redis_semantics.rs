//! The semantics suite over the Redis backend: every test file below runs
//! again here, each test against its own `redis-server` child (the harness
//! picks the Redis backend because this binary's name starts with
//! `redis_`; see `common/redis.rs`).

#[path = "leases.rs"]
mod leases;
