//! [`Error`]: every failure the core reports, one variant per gRPC code —
//! what the broker answers and what a storage backend answers it across
//! the seam. The broker calls it `BrokerError`.
//!
//! Model layer. `grpc/status.rs` maps these one-to-one onto
//! `tonic::Status`; `storage` turns its own failures into them (without
//! server paths).

/// A failure of a broker or backend operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The error a caller sees when the broker is shutting down.
    pub fn shutting_down() -> Self {
        Error::Unavailable("server is shutting down".into())
    }
}

impl From<super::Invalid> for Error {
    fn from(e: crate::model::Invalid) -> Self {
        Error::InvalidArgument {
            field: e.field,
            description: e.description,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::echo;

    #[test]
    fn echo_truncates_long_input_on_a_char_boundary() {
        assert_eq!(echo("abc"), "\"abc\"");
        let long = "é".repeat(200);
        let quoted = echo(&long);
        assert!(quoted.len() < 140, "{quoted}");
        assert!(quoted.ends_with("(400 bytes)"));
    }
}
