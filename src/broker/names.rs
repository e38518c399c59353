//! Validation of names and events: the rules every request passes before it
//! can change anything.
//!
//! Broker layer; errors name the request field that is wrong.

use super::error::{BrokerError, echo};
use crate::event::Event;

/// Longest topic or group name (Kafka's limit, so names can move between systems).
pub const MAX_NAME_LEN: usize = 249;
/// Longest event id.
pub const MAX_ID_LEN: usize = 256;
/// Longest event type, source, key, content type or schema version.
pub const MAX_HEADER_LEN: usize = 1024;

/// Checks a topic or group name: 1-249 characters of `[A-Za-z0-9._-]`.
///
/// # Errors
/// `InvalidArgument` on `field` saying what is wrong.
pub fn check_name(field: &str, name: &str) -> Result<(), BrokerError> {
    if name.is_empty() {
        return Err(BrokerError::invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(BrokerError::invalid(
            field,
            format!(
                "{} is {} bytes long, the limit is {MAX_NAME_LEN}",
                echo(name),
                name.len()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(BrokerError::invalid(
            field,
            format!(
                "{} contains {bad:?}; names use only letters, digits, '.', '_' and '-'",
                echo(name)
            ),
        ));
    }
    if name == "." || name == ".." {
        return Err(BrokerError::invalid(
            field,
            format!("{} is reserved", echo(name)),
        ));
    }
    Ok(())
}

/// Size limits applied to published events.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Largest single event, as counted by [`Event::size`].
    pub max_event_bytes: usize,
    /// Largest sum of event sizes in one publish request.
    pub max_request_bytes: usize,
}

/// Checks a publish batch: not empty, every event within limits and with
/// well-formed headers, the whole batch within the request limit.
///
/// # Errors
/// `InvalidArgument` naming the first offending event and field, e.g.
/// `events[3].data`.
pub fn check_events(events: &[Event], limits: EventLimits) -> Result<(), BrokerError> {
    if events.is_empty() {
        return Err(BrokerError::invalid(
            "events",
            "at least one event is required",
        ));
    }
    let mut total = 0usize;
    for (i, event) in events.iter().enumerate() {
        let size = event.size();
        if size > limits.max_event_bytes {
            let field = if event.data.len() > limits.max_event_bytes / 2 {
                format!("events[{i}].data")
            } else {
                format!("events[{i}]")
            };
            return Err(BrokerError::invalid(
                field,
                format!(
                    "event of {size} bytes exceeds the limit of {} bytes per event",
                    limits.max_event_bytes
                ),
            ));
        }
        if event.id.len() > MAX_ID_LEN {
            return Err(BrokerError::invalid(
                format!("events[{i}].id"),
                format!(
                    "{} is {} bytes long, the limit is {MAX_ID_LEN}",
                    echo(&event.id),
                    event.id.len()
                ),
            ));
        }
        if event.event_type.is_empty() {
            return Err(BrokerError::invalid(
                format!("events[{i}].type"),
                "must not be empty",
            ));
        }
        for (name, value) in [
            ("type", &event.event_type),
            ("source", &event.source),
            ("key", &event.key),
            ("content_type", &event.content_type),
            ("schema_version", &event.schema_version),
        ] {
            if value.len() > MAX_HEADER_LEN {
                return Err(BrokerError::invalid(
                    format!("events[{i}].{name}"),
                    format!(
                        "{} is {} bytes long, the limit is {MAX_HEADER_LEN}",
                        echo(value),
                        value.len()
                    ),
                ));
            }
        }
        if event.attributes.iter().any(|(k, _)| k.is_empty()) {
            return Err(BrokerError::invalid(
                format!("events[{i}].attributes"),
                "attribute names must not be empty",
            ));
        }
        total += size;
    }
    if total > limits.max_request_bytes {
        return Err(BrokerError::invalid(
            "events",
            format!(
                "request of {total} bytes exceeds the limit of {} bytes per request",
                limits.max_request_bytes
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn names() {
        assert!(check_name("topic", "orders.v1_eu-west").is_ok());
        assert!(check_name("topic", "").is_err());
        assert!(check_name("topic", &"a".repeat(250)).is_err());
        assert!(check_name("topic", &"a".repeat(249)).is_ok());
        assert!(check_name("topic", "a/b").is_err());
        assert!(check_name("topic", "ünïcode").is_err());
        assert!(check_name("topic", "..").is_err());
        let err = check_name("group", "has space").unwrap_err().to_string();
        assert!(err.starts_with("group: "), "{err}");
    }

    #[test]
    fn oversized_event_names_index_and_field() {
        let limits = EventLimits {
            max_event_bytes: 100,
            max_request_bytes: 250,
        };
        let ok = Event {
            event_type: "T".into(),
            data: Bytes::from(vec![0; 50]),
            ..Event::default()
        };
        let big = Event {
            event_type: "T".into(),
            data: Bytes::from(vec![0; 101]),
            ..Event::default()
        };
        let err = check_events(&[ok.clone(), big], limits).unwrap_err();
        assert!(err.to_string().starts_with("events[1].data: "), "{err}");
        let err = check_events(&vec![ok.clone(); 5], limits).unwrap_err();
        assert!(err.to_string().starts_with("events: request of"), "{err}");
        assert!(check_events(&vec![ok; 4], limits).is_ok());
        assert!(check_events(&[], limits).is_err());
    }
}
