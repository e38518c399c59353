//! A loaded auth file: who the tokens belong to, and each principal's
//! rules.
//!
//! Edge layer. Verifying a token costs one HMAC-SHA256 the first time it is
//! seen by this policy; after that a hash-map lookup (see `cache.rs`).
//! A policy never changes: reloading the file builds a new one, with an
//! empty cache.

use std::collections::HashMap;
use std::sync::Arc;

use ring::hmac;

use super::cache::TokenCache;
use super::token::{self, KEY_LEN};
use super::{AuthError, Principal};

/// A token's hash and its owner.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// HMAC-SHA256(token_key, token).
    pub hash: [u8; KEY_LEN],
    /// Whose token it is.
    pub principal: Arc<Principal>,
}

/// Principals, token hashes and the cache of verified tokens.
pub struct Policy {
    key: hmac::Key,
    principals: HashMap<String, Arc<Principal>>,
    /// By token id (lowercase hex).
    tokens: HashMap<String, StoredToken>,
    cache: TokenCache,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("principals", &self.principals.len())
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// A policy over checked parts (see `file::parse`).
    pub(crate) fn new(
        key: &[u8; KEY_LEN],
        principals: HashMap<String, Arc<Principal>>,
        tokens: HashMap<String, StoredToken>,
        cache_size: usize,
    ) -> Policy {
        Policy {
            key: token::key(key),
            principals,
            tokens,
            cache: TokenCache::new(cache_size),
        }
    }

    /// The principal of a bearer token.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] when the token is malformed, unknown
    /// or does not match its stored hash; the message does not say which.
    pub fn authenticate(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        if let Some(principal) = self.cache.get(token) {
            return Ok(principal);
        }
        let bad = || AuthError::Unauthenticated("the bearer token is not valid".into());
        let id = token::id_of(token).ok_or_else(bad)?;
        let stored = self.tokens.get(&id.to_ascii_lowercase()).ok_or_else(bad)?;
        if !token::verify(&self.key, token, &stored.hash) {
            return Err(bad());
        }
        self.cache.insert(token, stored.principal.clone());
        Ok(stored.principal.clone())
    }

    /// The principal called `name` (the subject of a client certificate):
    /// as listed in the file, or one without any permission.
    pub fn principal(&self, name: &str) -> Arc<Principal> {
        self.principals
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::new(Principal::unlisted(name)))
    }

    /// Every listed principal, by name.
    pub fn principals(&self) -> impl Iterator<Item = &Arc<Principal>> {
        self.principals.values()
    }

    /// The name of the principal whose token has `id` (any case), while
    /// the file lists the token.
    pub fn token_owner(&self, id: &str) -> Option<&str> {
        self.tokens
            .get(&id.to_ascii_lowercase())
            .map(|t| t.principal.name.as_str())
    }

    /// Every token id with its principal's name, in no particular order.
    pub fn token_ids(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tokens
            .iter()
            .map(|(id, t)| (id.as_str(), t.principal.name.as_str()))
    }

    /// Tokens verified and remembered since this policy was loaded.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_authenticates_its_principal_once_hashed() {
        let key = token::random::<KEY_LEN>().unwrap();
        let good = token::generate().unwrap();
        let text = format!(
            "token_key = \"{}\"\n[principals.alice]\ntokens = [{{ id = \"{}\", hash = \"{}\" }}]\n",
            token::hex(&key),
            good.id,
            token::hex(&token::hash(&token::key(&key), &good.token)),
        );
        let policy = super::super::parse_file(&text, 10).unwrap();
        assert_eq!(policy.cached_tokens(), 0);
        assert_eq!(policy.authenticate(&good.token).unwrap().name, "alice");
        assert_eq!(policy.cached_tokens(), 1);
        assert_eq!(policy.authenticate(&good.token).unwrap().name, "alice");
        // Same id, another secret: refused and not cached.
        let forged = format!("{}{}", &good.token[..good.token.len() - 1], "0");
        let forged = if forged == good.token {
            format!("{}1", &good.token[..good.token.len() - 1])
        } else {
            forged
        };
        let err = policy.authenticate(&forged).unwrap_err();
        assert!(matches!(err, AuthError::Unauthenticated(_)));
        assert!(policy.authenticate("hrd_nonsense").is_err());
        assert!(
            policy
                .authenticate(&token::generate().unwrap().token)
                .is_err()
        );
        assert_eq!(policy.cached_tokens(), 1);
    }
}
