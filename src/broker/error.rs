//! `BrokerError`: every failure the core reports, one variant per gRPC code.
//!
//! Broker layer. `grpc/status.rs` maps these one-to-one onto `tonic::Status`.

use crate::storage::StorageError;

pub use crate::model::echo;

/// A failure of a broker operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Bad input: `field` is the request field path (e.g. `events[3].data`).
    #[error("{field}: {description}")]
    InvalidArgument { field: String, description: String },
    /// A topic, group or other named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Creating something that already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well-formed but the state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// An offset or time outside what is retained.
    #[error("{0}")]
    OutOfRange(String),
    /// Storage refuses writes, or the server is shutting down; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Not built yet.
    #[error("{0}")]
    Unimplemented(String),
    /// A bug or an unexpected storage failure.
    #[error("{0}")]
    Internal(String),
}

impl BrokerError {
    /// Shorthand for [`BrokerError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        BrokerError::InvalidArgument {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The error a caller sees when the broker is shutting down.
    pub fn shutting_down() -> Self {
        BrokerError::Unavailable("server is shutting down".into())
    }
}

/// Clients get [`StorageError::public_message`], never the full error: it
/// names server paths. The full error goes to the server's log here (a
/// poisoned log was logged once when it was poisoned, so refusals are only
/// logged at debug level).
impl From<crate::model::Invalid> for BrokerError {
    fn from(e: crate::model::Invalid) -> Self {
        BrokerError::InvalidArgument {
            field: e.field,
            description: e.description,
        }
    }
}

impl From<StorageError> for BrokerError {
    fn from(e: StorageError) -> Self {
        let public = e.public_message();
        match &e {
            StorageError::Closed | StorageError::OutOfRange { .. } => {}
            StorageError::Poisoned { .. } => tracing::debug!(error = %e, "storage refused a write"),
            _ => tracing::error!(error = %e, "storage error"),
        }
        match e {
            StorageError::Poisoned { .. } | StorageError::Closed | StorageError::Unavailable(_) => {
                BrokerError::Unavailable(public)
            }
            StorageError::OutOfRange { .. } => BrokerError::OutOfRange(public),
            StorageError::NotFound(what) => BrokerError::NotFound(what),
            StorageError::Io { .. } if e.is_resource_exhausted() => {
                BrokerError::ResourceExhausted(public)
            }
            StorageError::Io { .. } => BrokerError::Unavailable(public),
            _ => BrokerError::Internal(public),
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
        let e = BrokerError::from(full());
        let BrokerError::ResourceExhausted(message) = &e else {
            panic!("ENOSPC must be RESOURCE_EXHAUSTED, got {e:?}");
        };
        assert!(!message.contains("/srv"), "{message}");
        let eio = StorageError::io(
            "fdatasync /srv/herald/topics/t/00000000000000000000.log",
            std::io::Error::from_raw_os_error(5),
        );
        assert!(
            matches!(BrokerError::from(eio), BrokerError::Unavailable(m) if !m.contains("/srv"))
        );
        let poisoned = StorageError::Poisoned {
            path: "/srv/herald/topics/t".into(),
            reason: "storage I/O error: Input/output error (os error 5)".into(),
        };
        assert!(matches!(
            BrokerError::from(poisoned),
            BrokerError::Unavailable(m) if !m.contains("/srv") && m.contains("topic log t")
        ));
        let corrupt = StorageError::Corrupt {
            path: "/srv/herald/topics/t/00000000000000000000.log".into(),
            reason: "at byte 9: CRC mismatch".into(),
        };
        assert!(
            matches!(BrokerError::from(corrupt), BrokerError::Internal(m) if !m.contains("/srv"))
        );
    }

    #[test]
    fn echo_truncates_long_input_on_a_char_boundary() {
        assert_eq!(echo("abc"), "\"abc\"");
        let long = "é".repeat(200);
        let quoted = echo(&long);
        assert!(quoted.len() < 140, "{quoted}");
        assert!(quoted.ends_with("(400 bytes)"));
    }
}
