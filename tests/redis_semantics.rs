//! The semantics suite over the Redis backend: every test file below runs
//! again here, each test against its own `redis-server` child (the harness
//! picks the Redis backend because this binary's name starts with
//! `redis_`; see `common/redis.rs`). Each included file brings its own copy
//! of `common`, hence the allowance. `console_metrics.rs` runs in
//! `redis_console_metrics.rs`: it installs the process-wide meter provider,
//! which must happen before any other test of the process records.
#![allow(clippy::duplicate_mod)]

#[path = "ack_ids.rs"]
mod ack_ids;
#[path = "admin.rs"]
mod admin;
#[path = "bad_input.rs"]
mod bad_input;
#[path = "competing_consumers.rs"]
mod competing_consumers;
#[path = "console.rs"]
mod console;
#[path = "console_groups.rs"]
mod console_groups;
#[path = "consume_bad_input.rs"]
mod consume_bad_input;
#[path = "consume_batches.rs"]
mod consume_batches;
#[path = "consume_stream.rs"]
mod consume_stream;
#[path = "dead_letters.rs"]
mod dead_letters;
#[path = "dedup_retention.rs"]
mod dedup_retention;
#[path = "fanout.rs"]
mod fanout;
#[path = "filters_seek_read.rs"]
mod filters_seek_read;
#[path = "large_events.rs"]
mod large_events;
#[path = "leases.rs"]
mod leases;
#[path = "ordering.rs"]
mod ordering;
#[path = "restart.rs"]
mod restart;
#[path = "stream_endings.rs"]
mod stream_endings;
#[path = "temporary_groups.rs"]
mod temporary_groups;
