//! Everything that is not a semantics test (security, the CLI, the console,
//! crashes and disk faults, memory, scale, the polyglot clients...), in one
//! test binary over the embedded backend: one binary instead of one per file
//! keeps the test build small, as each links the whole server. Files that
//! install something process-wide (a meter provider, a global tracing
//! subscriber) or need the process to themselves (a thread-local tracing
//! subscriber, a count of the process's threads) keep a binary of their own:
//! `console_metrics.rs`, `console_security.rs`, `storage_recovery.rs`,
//! `audit.rs`, `storage_idle.rs`. Each included file brings
//! its own copy of `common`, hence the allowance.
#![allow(clippy::duplicate_mod)]

#[path = "ack_durability.rs"]
mod ack_durability;
#[path = "admin_races.rs"]
mod admin_races;
#[path = "auth_rules.rs"]
mod auth_rules;
#[path = "authz.rs"]
mod authz;
#[path = "cli.rs"]
mod cli;
#[path = "compat.rs"]
mod compat;
#[path = "connections.rs"]
mod connections;
#[path = "console_auth.rs"]
mod console_auth;
#[path = "console_browser.rs"]
mod console_browser;
#[path = "console_tls.rs"]
mod console_tls;
#[path = "crash.rs"]
mod crash;
#[path = "disk_full.rs"]
mod disk_full;
#[path = "memory.rs"]
mod memory;
#[path = "metadata_faults.rs"]
mod metadata_faults;
#[path = "otel.rs"]
mod otel;
#[path = "polyglot.rs"]
mod polyglot;
#[path = "pubsub_auth.rs"]
mod pubsub_auth;
#[path = "scale.rs"]
mod scale;
#[path = "security_cli.rs"]
mod security_cli;
#[path = "storage_repair.rs"]
mod storage_repair;
#[path = "storage_retention.rs"]
mod storage_retention;
#[path = "tls.rs"]
mod tls;
