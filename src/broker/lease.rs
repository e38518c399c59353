//! Ack ids: the printable name of one delivery, unforgeable and valid on
//! every node.
//!
//! Broker layer. An ack id carries the group's id (unique per group
//! creation), the entry key (an offset, or a replay key) and the lease
//! number, signed with a 64-bit tag: SipHash-2-4, keyed with the
//! deployment's secret (kept by the storage backend, so every node and
//! every restart shares it). A guessed or altered id does not verify, and
//! the tag covers the group, so one group's ack id never acts on another.
//! Printable ASCII, at most 68 bytes: every client language carries it as a
//! string.

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

use super::error::{BrokerError, echo};
use crate::storage::backend::LeaseRef;

/// Signs and checks ack ids.
#[derive(Clone)]
pub struct AckIds {
    key: [u8; 16],
}

impl AckIds {
    /// Ack ids under the deployment's `secret`.
    pub fn new(secret: [u8; 16]) -> AckIds {
        AckIds { key: secret }
    }

    fn tag(&self, lease: &LeaseRef) -> u64 {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write_u64(lease.group);
        h.write_u64(lease.key);
        h.write_u64(lease.lease);
        h.finish()
    }

    /// Printable form: four lowercase hex numbers joined by '-', the last
    /// the tag (16 digits).
    pub fn encode(&self, lease: &LeaseRef) -> String {
        let mut out = String::with_capacity(68);
        push_hex(&mut out, lease.group, 1);
        out.push('-');
        push_hex(&mut out, lease.key, 1);
        out.push('-');
        push_hex(&mut out, lease.lease, 1);
        out.push('-');
        push_hex(&mut out, self.tag(lease), 16);
        out
    }

    /// Parses and verifies an ack id.
    ///
    /// # Errors
    /// `InvalidArgument` on `field` when the text is not an ack id this
    /// deployment issued.
    pub fn parse(&self, field: &str, text: &str) -> Result<LeaseRef, BrokerError> {
        self.decode(text).ok_or_else(|| {
            BrokerError::invalid(
                field,
                format!("{} is not an ack id issued by Herald", echo(text)),
            )
        })
    }

    /// Parses and verifies; `None` when it is not an ack id this deployment
    /// issued. Allocates nothing (acks are a hot path).
    pub fn decode(&self, text: &str) -> Option<LeaseRef> {
        if text.len() > 68 {
            return None;
        }
        let mut parts = text.as_bytes().split(|&b| b == b'-');
        let lease = LeaseRef {
            group: hex(parts.next()?)?,
            key: hex(parts.next()?)?,
            lease: hex(parts.next()?)?,
        };
        let tag = parts.next()?;
        if tag.len() != 16 || parts.next().is_some() {
            return None;
        }
        (hex(tag)? == self.tag(&lease)).then_some(lease)
    }
}

/// Appends `v` in lowercase hex, at least `width` digits.
fn push_hex(out: &mut String, v: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (16 - v.leading_zeros() as usize / 4).max(width);
    for i in (0..digits).rev() {
        out.push(char::from(DIGITS[((v >> (i * 4)) & 0xf) as usize]));
    }
}

/// A hex number of 1 to 16 digits (either case), nothing else.
fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &b in s {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        v = v << 4 | u64::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage_and_forgeries() {
        let ids = AckIds::new([7; 16]);
        let lease = LeaseRef {
            group: 0xdead_beef_0000_0001,
            key: u64::MAX,
            lease: 42,
        };
        let text = ids.encode(&lease);
        assert!(text.len() <= 68, "{text}");
        for l in [
            lease,
            LeaseRef {
                group: 0,
                key: 0x10,
                lease: 0xf,
            },
        ] {
            let expected = format!(
                "{:x}-{:x}-{:x}-{:016x}",
                l.group,
                l.key,
                l.lease,
                ids.tag(&l)
            );
            assert_eq!(ids.encode(&l), expected);
            assert_eq!(ids.decode(&expected.to_uppercase()), Some(l));
        }
        assert_eq!(ids.parse("ack_ids[0]", &text).unwrap(), lease);
        // Another key (another deployment) does not verify it.
        assert!(AckIds::new([8; 16]).decode(&text).is_none());
        // Any change to group, key or lease breaks the tag.
        for forged in [
            LeaseRef {
                group: lease.group + 1,
                ..lease
            },
            LeaseRef { key: 0, ..lease },
            LeaseRef { lease: 43, ..lease },
        ] {
            let tag = &text[text.rfind('-').unwrap()..];
            let fake = format!(
                "{:x}-{:x}-{:x}{tag}",
                forged.group, forged.key, forged.lease
            );
            assert!(ids.decode(&fake).is_none(), "{fake}");
        }
        for bad in [
            "",
            "x",
            "1-2-3",
            "1-2-3-4-5",
            "1-2-3-g",
            "-1-2-3",
            "+1-2-3-0000000000000000",
            "1-2-3-00000000000000000",
        ] {
            let err = ids.parse("ack_ids[0]", bad).unwrap_err();
            assert!(err.to_string().starts_with("ack_ids[0]: "), "{bad}: {err}");
        }
    }
}
