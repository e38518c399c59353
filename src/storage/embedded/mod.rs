//! The embedded backend: everything on local disk in one data directory.
//!
//! Storage layer. [`log`] is the segmented event log of each topic,
//! [`meta`] the redb database of records, group progress and dead letters.

pub mod log;
pub mod meta;
