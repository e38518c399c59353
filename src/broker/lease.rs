//! Ack ids and lease outcomes.
//!
//! Broker layer. An ack id names one delivery: the server run that made it
//! (so ids from before a restart are recognised as unknown rather than
//! mistaken for new ones), the group, the event offset and the lease number.
//! It is printable ASCII so every client language can carry it as a string.

use super::error::{BrokerError, echo};

/// A parsed ack id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckId {
    /// Random per server run.
    pub run: u32,
    /// Runtime number of the group.
    pub group: u32,
    /// Offset of the event.
    pub offset: u64,
    /// Lease number within the group, unique per delivery.
    pub lease: u64,
}

impl AckId {
    /// Printable form: four lowercase hex numbers joined by '-'.
    pub fn encode(&self) -> String {
        format!(
            "{:x}-{:x}-{:x}-{:x}",
            self.run, self.group, self.offset, self.lease
        )
    }

    /// Parses the printable form.
    ///
    /// # Errors
    /// `InvalidArgument` on `field` when the text is not an ack id.
    pub fn parse(field: &str, text: &str) -> Result<AckId, BrokerError> {
        AckId::decode(text).ok_or_else(|| {
            BrokerError::invalid(
                field,
                format!("{} is not an ack id issued by Herald", echo(text)),
            )
        })
    }

    /// Parses the printable form; `None` when it is not an ack id. Allocates
    /// nothing (acks are a hot path).
    pub fn decode(text: &str) -> Option<AckId> {
        fn hex<T>(
            s: &str,
            max_len: usize,
            parse: fn(&str, u32) -> Result<T, std::num::ParseIntError>,
        ) -> Option<T> {
            if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            parse(s, 16).ok()
        }
        if text.len() > 64 {
            return None;
        }
        let mut parts = text.split('-');
        let run = hex(parts.next()?, 8, u32::from_str_radix)?;
        let group = hex(parts.next()?, 8, u32::from_str_radix)?;
        let offset = hex(parts.next()?, 16, u64::from_str_radix)?;
        let lease = hex(parts.next()?, 16, u64::from_str_radix)?;
        if parts.next().is_some() {
            return None;
        }
        Some(AckId {
            run,
            group,
            offset,
            lease,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let id = AckId {
            run: 0xdead_beef,
            group: 7,
            offset: u64::MAX,
            lease: 42,
        };
        assert_eq!(AckId::parse("ack_ids[0]", &id.encode()).unwrap(), id);
        for bad in [
            "",
            "x",
            "1-2-3",
            "1-2-3-4-5",
            "1-2-3-g",
            "-1-2-3",
            "+1-2-3-4",
            "123456789-2-3-4",
        ] {
            let err = AckId::parse("ack_ids[0]", bad).unwrap_err();
            assert!(err.to_string().starts_with("ack_ids[0]: "), "{bad}: {err}");
        }
    }
}
