//! The bounded cache of verified tokens.
//!
//! Edge layer. A policy owns one cache, so loading a new auth file starts
//! with an empty one: a revoked token stops working at the reload. Only
//! tokens that verified are remembered, so a client spraying bad tokens
//! cannot push good ones out; when the cache is full it is emptied (the
//! next call of each client verifies its token again), which bounds memory
//! without any bookkeeping per hit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::Principal;

/// Verified tokens and their principals.
#[derive(Debug)]
pub struct TokenCache {
    entries: RwLock<HashMap<Box<str>, Arc<Principal>>>,
    max: usize,
}

impl TokenCache {
    /// An empty cache of at most `max` tokens.
    pub fn new(max: usize) -> TokenCache {
        TokenCache {
            entries: RwLock::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// The principal of a token verified earlier.
    pub fn get(&self, token: &str) -> Option<Arc<Principal>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// Remembers a verified token.
    pub fn insert(&self, token: &str, principal: Arc<Principal>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.max {
            entries.clear();
        }
        entries.insert(token.into(), principal);
    }

    /// Tokens remembered now.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_bound() {
        let cache = TokenCache::new(3);
        let p = Arc::new(Principal::unlisted("p"));
        for i in 0..10 {
            cache.insert(&format!("t{i}"), p.clone());
            assert!(cache.len() <= 3);
        }
        assert!(cache.get("t9").is_some());
        assert!(cache.get("t0").is_none());
    }
}
