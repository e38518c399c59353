//! Storage layer: the mechanism under the broker.
//!
//! - [`log`]: the embedded, segmented, append-only event log per topic
//!   (length + CRC32C framing, sparse index, torn-tail recovery, group commit).
//! - [`meta`]: durable metadata and consumer-group state (topics, groups,
//!   ack floors) in an embedded `redb` database.
//!
//! Nothing here knows about gRPC or about group semantics; the broker decides
//! policy, storage only keeps bytes safe.

pub mod log;
pub mod meta;

use std::path::PathBuf;

/// Everything that can go wrong below the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O call failed; `context` says what was being done to which file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A previous write or fsync failed, so this log refuses further writes
    /// rather than pretend that later data is durable.
    #[error("log {path} refuses writes after a failed write or fsync: {reason}")]
    Poisoned { path: PathBuf, reason: String },
    /// The log or store has been closed (shutdown in progress).
    #[error("storage is closed")]
    Closed,
    /// The requested offset is before the first retained event.
    #[error("offset {requested} is before the first available offset {first}")]
    OutOfRange { requested: u64, first: u64 },
    /// Data on disk failed validation in a place where it cannot be repaired
    /// by truncating a tail.
    #[error("corrupt data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A record the operation needs does not exist (e.g. deleted by a
    /// concurrent call).
    #[error("{0}")]
    NotFound(String),
    /// The metadata store failed and refuses calls until it is reopened.
    #[error("{0}")]
    Unavailable(String),
    /// The metadata database reported an error.
    #[error("metadata store: {0}")]
    Meta(String),
}

impl StorageError {
    /// Wraps an I/O error with what was being attempted.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}
