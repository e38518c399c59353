//! Storage layer: the mechanism under the broker.
//!
//! - [`embedded`]: the local-disk backend; its `log` is the embedded, segmented, append-only event log per topic
//!   (length + CRC32C framing, sparse index, torn-tail recovery, group commit).
//! - [`meta`]: durable metadata and consumer-group state (topics, groups,
//!   ack floors) in an embedded `redb` database.
//!
//! Nothing here knows about gRPC or about group semantics; the broker decides
//! policy, storage only keeps bytes safe.

pub mod backend;
pub mod chunk;
pub mod embedded;
#[cfg(feature = "redis")]
pub mod redis;

/// Built without the Redis backend (cargo feature `redis` off, as the fuzz
/// targets build Herald): only its settings, so configuration files parse
/// the same; choosing it fails at startup.
#[cfg(not(feature = "redis"))]
pub mod redis {
    #[path = "config.rs"]
    pub mod config;
    pub use config::RedisConfig;
}

pub use backend::Backend;

use std::io;
use std::path::{Path, PathBuf};

/// The error for a topic that does not exist (same words on every backend).
pub(crate) fn not_found_topic(name: &str) -> crate::model::Error {
    crate::model::Error::NotFound(format!("topic {} does not exist", crate::model::echo(name)))
}

/// The error for a group that does not exist.
pub(crate) fn not_found_group(topic: &str, name: &str) -> crate::model::Error {
    crate::model::Error::NotFound(format!(
        "group {} of topic {} does not exist",
        crate::model::echo(name),
        crate::model::echo(topic)
    ))
}

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
    /// rather than pretend that later data is durable, until it has repaired
    /// its active segment. `reason` names the failure without server paths
    /// (the full error is logged when the log is poisoned).
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

    /// The error as a client may see it: no absolute server path (the
    /// `Display` form, meant for the server's own log, has them). A topic
    /// log is named by its directory name, a segment file by that and its
    /// file name.
    pub fn public_message(&self) -> String {
        match self {
            StorageError::Io { source, .. } => format!("storage I/O error: {source}"),
            StorageError::Poisoned { path, reason } => format!(
                "topic log {} refuses writes after a failed write or fsync ({reason}); retry later",
                last_components(path, 1)
            ),
            StorageError::Corrupt { path, reason } => {
                format!("corrupt data in {}: {reason}", last_components(path, 2))
            }
            StorageError::Meta(_) => "metadata store error".into(),
            StorageError::Closed | StorageError::OutOfRange { .. } => self.to_string(),
            StorageError::NotFound(what) | StorageError::Unavailable(what) => what.clone(),
        }
    }

    /// The kind of the underlying I/O error, for [`StorageError::Io`].
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            StorageError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// The OS error number of the underlying I/O error, if it has one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            StorageError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether an I/O error means a resource ran out: the disk is full
    /// (`ENOSPC`), a quota is reached (`EDQUOT`), or the process or system
    /// has too many open files (`EMFILE`, `ENFILE`).
    pub fn is_resource_exhausted(&self) -> bool {
        /// `ENFILE` and `EMFILE`: the same numbers on Linux, macOS and the BSDs.
        const ENFILE: i32 = 23;
        const EMFILE: i32 = 24;
        matches!(
            self.io_kind(),
            Some(io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        ) || matches!(self.errno(), Some(ENFILE | EMFILE))
    }
}

/// The last `n` components of `path` joined with `/` (`"?"` when it has none).
fn last_components(path: &Path, n: usize) -> String {
    let mut parts: Vec<String> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .take(n)
        .collect();
    if parts.is_empty() {
        return "?".into();
    }
    parts.reverse();
    parts.join("/")
}

/// Clients get [`StorageError::public_message`], never the full error: it
/// names server paths. The full error goes to the server's log here (a
/// poisoned log was logged once when it was poisoned, so refusals are only
/// logged at debug level).
impl From<StorageError> for crate::model::Error {
    fn from(e: StorageError) -> Self {
        let public = e.public_message();
        match &e {
            StorageError::Closed | StorageError::OutOfRange { .. } => {}
            StorageError::Poisoned { .. } => tracing::debug!(error = %e, "storage refused a write"),
            _ => tracing::error!(error = %e, "storage error"),
        }
        match e {
            StorageError::Poisoned { .. } | StorageError::Closed | StorageError::Unavailable(_) => {
                crate::model::Error::Unavailable(public)
            }
            StorageError::OutOfRange { .. } => crate::model::Error::OutOfRange(public),
            StorageError::NotFound(what) => crate::model::Error::NotFound(what),
            StorageError::Io { .. } if e.is_resource_exhausted() => {
                crate::model::Error::ResourceExhausted(public)
            }
            StorageError::Io { .. } => crate::model::Error::Unavailable(public),
            _ => crate::model::Error::Internal(public),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_reach_clients_without_paths_and_with_the_right_code() {
        let full = || {
            StorageError::io(
                "write 10 bytes at 0 of /srv/herald/topics/t/00000000000000000000.log",
                std::io::Error::from_raw_os_error(28),
            )
        };
        let e = crate::model::Error::from(full());
        let crate::model::Error::ResourceExhausted(message) = &e else {
            panic!("ENOSPC must be RESOURCE_EXHAUSTED, got {e:?}");
        };
        assert!(!message.contains("/srv"), "{message}");
        let eio = StorageError::io(
            "fdatasync /srv/herald/topics/t/00000000000000000000.log",
            std::io::Error::from_raw_os_error(5),
        );
        assert!(
            matches!(crate::model::Error::from(eio), crate::model::Error::Unavailable(m) if !m.contains("/srv"))
        );
        let poisoned = StorageError::Poisoned {
            path: "/srv/herald/topics/t".into(),
            reason: "storage I/O error: Input/output error (os error 5)".into(),
        };
        assert!(matches!(
            crate::model::Error::from(poisoned),
            crate::model::Error::Unavailable(m) if !m.contains("/srv") && m.contains("topic log t")
        ));
        let corrupt = StorageError::Corrupt {
            path: "/srv/herald/topics/t/00000000000000000000.log".into(),
            reason: "at byte 9: CRC mismatch".into(),
        };
        assert!(
            matches!(crate::model::Error::from(corrupt), crate::model::Error::Internal(m) if !m.contains("/srv"))
        );
    }

    #[test]
    fn public_messages_carry_no_server_paths() {
        let dir = PathBuf::from("/var/lib/herald/topics/orders");
        let errors = [
            StorageError::io(
                format!(
                    "fdatasync {}",
                    dir.join("00000000000000000000.log").display()
                ),
                io::Error::from_raw_os_error(28),
            ),
            StorageError::Poisoned {
                path: dir.clone(),
                reason: "storage I/O error: No space left on device (os error 28)".into(),
            },
            StorageError::Corrupt {
                path: dir.join("00000000000000000042.log"),
                reason: "at byte 7: CRC mismatch".into(),
            },
            StorageError::Meta("opening /var/lib/herald/meta.redb: locked".into()),
        ];
        for e in &errors {
            assert!(e.to_string().contains("/var/lib"), "{e}");
            let public = e.public_message();
            assert!(!public.contains("/var/lib"), "{public}");
            assert!(!public.contains("herald/"), "{public}");
        }
        assert!(errors[1].public_message().contains("orders"));
        assert!(
            errors[2]
                .public_message()
                .contains("orders/00000000000000000042.log")
        );
        assert!(errors[0].public_message().contains("No space left"));
    }

    #[test]
    fn resource_exhaustion_is_recognised_by_errno() {
        for errno in [23, 24, 28, 122] {
            let e = StorageError::io("x", io::Error::from_raw_os_error(errno));
            assert!(e.is_resource_exhausted(), "errno {errno}");
            assert_eq!(e.errno(), Some(errno));
        }
        let eio = StorageError::io("x", io::Error::from_raw_os_error(5));
        assert!(!eio.is_resource_exhausted());
        assert!(eio.io_kind().is_some());
        assert!(!StorageError::Closed.is_resource_exhausted());
    }
}
