//! Several Herald nodes over one Redis, Redis Cluster, Redis failures, the
//! layout's formats and the nodes' chunk cache, in one test binary. Its name starts with `redis_`, so servers the harness
//! starts use the Redis backend (see `common/redis.rs`). Each included file
//! brings its own copy of `common`, hence the allowance.
#![allow(clippy::duplicate_mod)]

#[path = "redis_chunk_cache.rs"]
mod redis_chunk_cache;
#[path = "redis_failures.rs"]
mod redis_failures;
#[path = "redis_layout.rs"]
mod redis_layout;
#[path = "redis_nodes.rs"]
mod redis_nodes;
