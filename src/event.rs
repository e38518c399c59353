//! The domain event: what publishers send and what the log stores.
//!
//! Bottom layer, shared by `storage` and `broker`; it knows nothing of gRPC or protobuf.

use bytes::Bytes;

/// An event as a publisher hands it in, before the log has placed it.
///
/// Strings are kept as `String` because every one of them is validated and
/// echoed back; the payload is `Bytes` so it travels from the gRPC decoder to
/// the log writer and back out to consumers without a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// Unique id; the broker fills in a UUIDv7 when the publisher leaves it empty.
    pub id: String,
    /// Event type used by group filters, e.g. `OrderPlaced`.
    pub event_type: String,
    /// The emitting service.
    pub source: String,
    /// Ordering key (usually the aggregate id); empty means "no key".
    pub key: String,
    /// When it happened, in microseconds since the Unix epoch; 0 means "publish time".
    pub time_us: i64,
    /// MIME type of `data`.
    pub content_type: String,
    /// Free-form schema version of `data`.
    pub schema_version: String,
    /// The payload, opaque to Herald.
    pub data: Bytes,
    /// Extension attributes (W3C `traceparent` lives here), sorted by key so the
    /// stored form is canonical.
    pub attributes: Vec<(String, String)>,
}

impl Event {
    /// Bytes this event occupies for the purpose of size limits: every string,
    /// the payload and the attributes.
    pub fn size(&self) -> usize {
        self.id.len()
            + self.event_type.len()
            + self.source.len()
            + self.key.len()
            + self.content_type.len()
            + self.schema_version.len()
            + self.data.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// An event as the log holds it: the publisher's event plus what the log assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Dense, per-topic position, starting at 0.
    pub offset: u64,
    /// Server clock at append, microseconds since the Unix epoch.
    pub publish_time_us: i64,
    /// The event itself.
    pub event: Event,
}

/// Current time in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}
