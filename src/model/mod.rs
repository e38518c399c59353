//! The domain vocabulary shared by the broker and the storage backends:
//! settings and records of topics and groups, retry policy, event-type
//! filters, and what consuming and dead-lettering hand back.
//!
//! Model layer: pure data and pure functions, below both `broker` (which
//! validates and decides) and `storage` (which keeps state). Events
//! themselves are in [`crate::event`].

pub mod backoff;
pub mod error;
pub mod filter;
pub mod results;
pub mod settings;

pub use error::Error;

/// Longest echo of user input inside an error message (DESIGN §2: status
/// messages travel in HTTP/2 headers, a huge echo breaks the transport).
const ECHO_LIMIT: usize = 100;

/// Quotes user input for an error message, truncated to about 100 characters.
pub fn echo(input: &str) -> String {
    if input.len() <= ECHO_LIMIT {
        return format!("{input:?}");
    }
    let mut end = ECHO_LIMIT;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &input[..end], input.len())
}

/// A request field with a bad value: `field` is its path (e.g.
/// `group.filter.patterns[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct Invalid {
    /// Request field path.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl Invalid {
    /// An invalid `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            description: description.into(),
        }
    }
}
