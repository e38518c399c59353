//! `/metrics` over the Redis backend, in a process of its own: the test
//! installs the process-wide meter provider, which must happen before any
//! other test records (see `redis_semantics.rs`).

#[path = "console_metrics.rs"]
mod console_metrics;
