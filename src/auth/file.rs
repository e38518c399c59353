//! The auth file: principals, their token hashes and their rules, in TOML.
//!
//! Edge layer. The format (documented in the README, section Security):
//!
//! ```toml
//! token_key = "<64 hex digits>"        # HMAC-SHA256 key of the token hashes
//!
//! [principals.ops]
//! admin = true                          # everything, including server info
//! tokens = [{ id = "3fa9c2d41b7e", hash = "<64 hex>", created = "2026-01-31T12:00:00Z" }]
//!
//! [[principals.orders-service.rules]]
//! topics = ["orders", "orders.>"]       # group filter patterns
//! actions = ["publish", "consume"]      # publish, consume, manage, dead_letters
//! ```
//!
//! A principal named like a client certificate's subject gets its rules
//! when it connects with that certificate. Parsing is total: any text gives
//! a [`Policy`] or an [`AuthError::File`] naming what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use super::policy::{Policy, StoredToken};
use super::token::{self, KEY_LEN};
use super::{Action, Actions, AuthError, Principal, Rule};
use crate::broker::filter::Matcher;
use crate::broker::settings::Filter;

/// Longest principal name, bytes (certificate subjects can be long URIs).
pub const MAX_PRINCIPAL_LEN: usize = 1024;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    token_key: String,
    #[serde(default)]
    principals: BTreeMap<String, RawPrincipal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    id: String,
    hash: String,
    /// When it was made; informative.
    #[serde(default)]
    #[allow(dead_code)]
    created: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    topics: Vec<String>,
    actions: Vec<String>,
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

/// `line N: message` of a TOML error.
fn toml_error(text: &str, e: &toml::de::Error) -> AuthError {
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            invalid(format!("line {line}: {}", e.message()))
        }
        None => invalid(e.message().to_string()),
    }
}

/// Checks a principal name: 1 to [`MAX_PRINCIPAL_LEN`] bytes, no control
/// characters.
///
/// # Errors
/// A message saying what is wrong.
pub fn check_principal_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_PRINCIPAL_LEN {
        return Err(format!(
            "principal names are 1-{MAX_PRINCIPAL_LEN} bytes long"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "principal name {name:?} contains a control character"
        ));
    }
    Ok(())
}

/// Compiles the topic patterns of a rule.
///
/// # Errors
/// A message naming the bad pattern.
pub fn compile_topics(topics: &[String]) -> Result<Matcher, String> {
    if topics.is_empty() {
        return Err("topics is empty: give at least one pattern (\"#\" is every topic)".into());
    }
    let filter = Filter {
        types: Vec::new(),
        patterns: topics.to_vec(),
    };
    Matcher::compile(&filter).map_err(|e| {
        // `group.filter.patterns[3]` → `topics[3]`.
        let at = e.field.rsplit_once('[').map_or("", |(_, i)| i);
        if at.is_empty() {
            format!("topics: {}", e.description)
        } else {
            format!("topics[{at}: {}", e.description)
        }
    })
}

/// Parses actions by name.
///
/// # Errors
/// A message naming an unknown action.
pub fn parse_actions(names: &[String]) -> Result<Actions, String> {
    if names.is_empty() {
        return Err("actions is empty".into());
    }
    names
        .iter()
        .map(|n| {
            Action::parse(n).ok_or_else(|| {
                format!("unknown action {n:?} (publish, consume, manage, dead_letters)")
            })
        })
        .collect()
}

/// Parses and validates an auth file; `cache_size` bounds the cache of
/// verified tokens of the resulting policy.
///
/// # Errors
/// [`AuthError::Invalid`] saying what is wrong (and on which line, for
/// TOML syntax and types).
pub fn parse(text: &str, cache_size: usize) -> Result<Policy, AuthError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let key = token::unhex::<KEY_LEN>(&raw.token_key)
        .ok_or_else(|| invalid("token_key must be 64 hex digits (256 bits)"))?;
    let mut principals = HashMap::with_capacity(raw.principals.len());
    let mut tokens: HashMap<String, StoredToken> = HashMap::new();
    for (name, p) in raw.principals {
        let at = |what: String| invalid(format!("principal {name:?}: {what}"));
        check_principal_name(&name).map_err(&at)?;
        let mut rules = Vec::with_capacity(p.rules.len());
        for (i, r) in p.rules.iter().enumerate() {
            let topics = compile_topics(&r.topics).map_err(|e| at(format!("rules[{i}].{e}")))?;
            let actions = parse_actions(&r.actions).map_err(|e| at(format!("rules[{i}].{e}")))?;
            rules.push(Rule::new(r.topics.clone(), topics, actions));
        }
        let principal = Arc::new(Principal {
            name: name.clone(),
            admin: p.admin,
            rules,
        });
        for (i, t) in p.tokens.iter().enumerate() {
            let id_ok = t.id.len() == token::ID_LEN && t.id.bytes().all(|b| b.is_ascii_hexdigit());
            if !id_ok {
                return Err(at(format!(
                    "tokens[{i}].id must be {} hex digits",
                    token::ID_LEN
                )));
            }
            let hash = token::unhex::<KEY_LEN>(&t.hash)
                .ok_or_else(|| at(format!("tokens[{i}].hash must be 64 hex digits")))?;
            let stored = StoredToken {
                hash,
                principal: principal.clone(),
            };
            if tokens.insert(t.id.to_ascii_lowercase(), stored).is_some() {
                return Err(at(format!("tokens[{i}].id {:?} is used twice", t.id)));
            }
        }
        principals.insert(name, principal);
    }
    Ok(Policy::new(&key, principals, tokens, cache_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line() -> String {
        format!("token_key = \"{}\"\n", "0f".repeat(32))
    }

    #[test]
    fn a_full_file_parses() {
        let text = format!(
            "{}{}",
            key_line(),
            r#"
            [principals.ops]
            admin = true

            [principals."spiffe://example.org/billing"]
            tokens = [{ id = "0123456789ab", hash = "HASH", created = "2026-01-31T12:00:00Z" }]
            [[principals."spiffe://example.org/billing".rules]]
            topics = ["billing.>", "orders"]
            actions = ["consume", "dead_letters"]
            "#
            .replace("HASH", &"aa".repeat(32))
        );
        let policy = parse(&text, 10).unwrap();
        assert!(policy.principal("ops").admin);
        let billing = policy.principal("spiffe://example.org/billing");
        assert!(billing.may(Action::Consume, "billing.eu"));
        assert!(billing.may(Action::DeadLetters, "orders"));
        assert!(!billing.may(Action::Publish, "orders"));
        assert!(!policy.principal("unknown").may_see("orders"));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("", "token_key"),
            ("token_key = \"abc\"", "64 hex"),
            ("token_key = 1", "line 1: invalid type"),
            ("[principals.a]\nadmn = true", "admn"),
            (
                "[[principals.a.rules]]\ntopics = []\nactions = [\"publish\"]",
                "topics is empty",
            ),
            (
                "[[principals.a.rules]]\ntopics = [\"a..b\"]\nactions = [\"publish\"]",
                "rules[0].topics[0]",
            ),
            (
                "[[principals.a.rules]]\ntopics = [\"a.>.b\"]\nactions = [\"publish\"]",
                "topics[0]",
            ),
            (
                "[[principals.a.rules]]\ntopics = [\"a\"]\nactions = [\"read\"]",
                "unknown action \"read\"",
            ),
            (
                "[[principals.a.rules]]\ntopics = [\"a\"]\nactions = []",
                "actions is empty",
            ),
            (
                "[principals.a]\ntokens = [{ id = \"xyz\", hash = \"00\" }]",
                "tokens[0].id",
            ),
            (
                "[principals.a]\ntokens = [{ id = \"0123456789ab\", hash = \"00\" }]",
                "tokens[0].hash",
            ),
            ("[principals.\"\"]", "1-1024 bytes"),
            ("[principals.\"a\\nb\"]", "control character"),
        ];
        for (body, expected) in cases {
            let text = if body.starts_with("token_key") || body.is_empty() {
                body.to_string()
            } else {
                format!("{}{body}", key_line())
            };
            let err = parse(&text, 10).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(expected)),
                "{body:?}: {err:?} lacks {expected:?}"
            );
        }
        let hash = "aa".repeat(32);
        let twice = format!(
            "{}[principals.a]\ntokens = [{{ id = \"0123456789ab\", hash = \"{hash}\" }}]\n\
             [principals.b]\ntokens = [{{ id = \"0123456789AB\", hash = \"{hash}\" }}]",
            key_line()
        );
        assert!(
            parse(&twice, 10)
                .unwrap_err()
                .to_string()
                .contains("used twice")
        );
    }
}
