//! Bearer tokens and the keyed hashes the auth file stores instead of them.
//!
//! Edge layer. A token is `hrd_<id>_<secret>`: `id` is 12 hex digits (48
//! random bits) that name the token in the file and in logs, `secret` is 64
//! hex digits (256 random bits from the OS). The file keeps only
//! HMAC-SHA256(token_key, whole token), compared in constant time.
//!
//! Why a keyed fast hash and not a password hash (argon2, bcrypt): a slow
//! hash makes guessing a *low-entropy* secret expensive. These tokens are
//! 256 random bits, so guessing one is already out of reach and a slow hash
//! would only add its cost to every new token seen. The key (random per
//! file) makes a stored hash useless without the file's key: hashes copied
//! elsewhere cannot be checked against candidate tokens.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Every token starts with this.
pub const PREFIX: &str = "hrd_";
/// Hex digits of a token id.
pub const ID_LEN: usize = 12;
/// Hex digits of a token secret.
pub const SECRET_LEN: usize = 64;
/// Bytes of a token key and of a hash.
pub const KEY_LEN: usize = 32;

/// A newly made token: the whole token (shown once) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// `hrd_<id>_<secret>`; never stored.
    pub token: String,
    /// The id part, stored next to the hash.
    pub id: String,
}

/// Random bytes from the operating system.
///
/// # Errors
/// The OS random source failed (a message saying so).
pub fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the operating system's random source failed".to_string())?;
    Ok(bytes)
}

/// A new random token.
///
/// # Errors
/// The OS random source failed.
pub fn generate() -> Result<NewToken, String> {
    let id = hex(&random::<{ ID_LEN / 2 }>()?);
    let secret = hex(&random::<{ SECRET_LEN / 2 }>()?);
    Ok(NewToken {
        token: format!("{PREFIX}{id}_{secret}"),
        id,
    })
}

/// The id of a well-formed token; `None` when `token` does not have the
/// token syntax.
pub fn id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, ID_LEN) && hex_of(secret, SECRET_LEN)).then_some(id)
}

/// The HMAC key of a file's `token_key`.
pub fn key(bytes: &[u8; KEY_LEN]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, bytes)
}

/// The stored hash of `token`.
pub fn hash(key: &hmac::Key, token: &str) -> [u8; KEY_LEN] {
    let tag = hmac::sign(key, token.as_bytes());
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether `token` hashes to `stored`, in constant time.
pub fn verify(key: &hmac::Key, token: &str, stored: &[u8; KEY_LEN]) -> bool {
    hmac::verify(key, token.as_bytes(), stored).is_ok()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Parses exactly `N` bytes of hex; `None` otherwise.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_well_formed_and_verify_only_themselves() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), PREFIX.len() + ID_LEN + 1 + SECRET_LEN);
        assert_eq!(id_of(&a.token), Some(a.id.as_str()));
        let k = key(&random().unwrap());
        let stored = hash(&k, &a.token);
        assert!(verify(&k, &a.token, &stored));
        assert!(!verify(&k, &b.token, &stored));
        // Another file's key does not verify it.
        assert!(!verify(&key(&random().unwrap()), &a.token, &stored));
    }

    #[test]
    fn malformed_tokens_have_no_id() {
        let good = format!("hrd_{}_{}", "a".repeat(12), "b".repeat(64));
        assert!(id_of(&good).is_some());
        for bad in [
            "",
            "hrd_",
            "Bearer x",
            &good[1..],
            &good[..good.len() - 1],
            &format!("hrd_{}_{}", "g".repeat(12), "b".repeat(64)),
            &format!("hrd_{}-{}", "a".repeat(12), "b".repeat(64)),
            &format!("{good}_"),
        ] {
            assert_eq!(id_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hex_round_trips() {
        let bytes: [u8; 4] = [0, 0xab, 0x10, 0xff];
        assert_eq!(hex(&bytes), "00ab10ff");
        assert_eq!(unhex::<4>("00AB10ff"), Some(bytes));
        assert_eq!(unhex::<4>("00ab10f"), None);
        assert_eq!(unhex::<4>("00ab10fg"), None);
        assert_eq!(unhex::<1>("é"), None);
    }
}
