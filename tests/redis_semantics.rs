//! The semantics suite over the Redis backend: every file listed in
//! `semantics_files.rs` runs again here, each test against its own
//! `redis-server` child (the harness picks the Redis backend because this
//! binary's name starts with `redis_`; see `common/redis.rs`). Each included
//! file brings its own copy of `common`, hence the allowance.
//! `console_metrics.rs` runs in `redis_console_metrics.rs`: it installs the
//! process-wide meter provider, which must happen before any other test of the
//! process records.
#![allow(clippy::duplicate_mod)]

include!("semantics_files.rs");
