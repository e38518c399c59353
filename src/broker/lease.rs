//! Ack ids and lease outcomes.
//!
//! Broker layer. An ack id names one delivery: the server run that made it
//! (so ids from before a restart are recognised as unknown rather than
//! mistaken for new ones), the group, the event offset and the lease number.
//! It is printable ASCII so every client language can carry it as a string.

use super::error::{BrokerError, echo};

/// What an Ack, Nack or ExtendDeadline did to one ack id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Done as asked.
    Ok,
    /// Not issued by this server run, or its group is gone.
    Unknown,
    /// The event was already acknowledged or dead-lettered.
    AlreadyDone,
    /// The lease is no longer current (expired, released or superseded).
    Stale,
}

/// Result for one ack id, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseResult {
    /// The ack id as given.
    pub ack_id: String,
    /// What happened.
    pub outcome: LeaseOutcome,
    /// ExtendDeadline: the new deadline (µs since the epoch).
    pub deadline_us: Option<i64>,
}

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
        let bad = || {
            BrokerError::invalid(
                field,
                format!("{} is not an ack id issued by Herald", echo(text)),
            )
        };
        if text.len() > 64 {
            return Err(bad());
        }
        let mut parts = text.split('-');
        let mut next = || parts.next().ok_or_else(bad);
        let (run, group, offset, lease) = (next()?, next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        let hex32 = |s: &str| {
            (!s.is_empty() && s.len() <= 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(s, 16).ok())
                .flatten()
                .ok_or_else(bad)
        };
        let hex64 = |s: &str| {
            (!s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
                .ok_or_else(bad)
        };
        Ok(AckId {
            run: hex32(run)?,
            group: hex32(group)?,
            offset: hex64(offset)?,
            lease: hex64(lease)?,
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
