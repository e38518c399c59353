//! Who is calling and what they may do: principals, their permissions and
//! the one authorization check every surface uses.
//!
//! Edge layer, beside `grpc/`: the broker never sees a principal. A surface
//! (the gRPC services, later the Pub/Sub front door and the web console)
//! authenticates a call to a [`Principal`], then asks [`authorize`] whether
//! it may do an [`Action`] on a topic, before it calls the broker.
//!
//! - [`file`]: the auth file (TOML) of principals, token hashes and rules,
//!   parsed and validated into a [`Policy`].
//! - [`token`]: bearer tokens and their keyed hashes (HMAC-SHA256).
//! - [`policy`]: a loaded file: token verification with a bounded cache of
//!   verified tokens, principals by name (for client certificates).
//! - [`state`]: the policy in force, reloaded when the file changes.
//! - [`edit`]: the changes `herald auth` makes to the file.
//!
//! Topic patterns in rules have the semantics of group filter patterns
//! (`broker::filter`): dot-separated segments, `*` one segment, `#` any
//! number of segments, a trailing `>` one or more; a name without
//! wildcards matches only itself.

pub mod edit;
pub mod file;
pub mod policy;
pub mod state;
pub mod token;
pub mod watch;

mod cache;

use std::fmt;

use crate::broker::error::echo;
use crate::broker::filter::Matcher;

pub use file::parse as parse_file;
pub use policy::Policy;
pub use state::AuthState;

/// Something a principal may be allowed to do on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Publish and PublishStream.
    Publish,
    /// Consume, Subscribe, Ack, Nack, ExtendDeadline and Read.
    Consume,
    /// Create, update and delete topics and groups; Seek.
    Manage,
    /// List, replay and purge a group's dead letters.
    DeadLetters,
}

impl Action {
    /// Every action, in the order the README lists them.
    pub const ALL: [Action; 4] = [
        Action::Publish,
        Action::Consume,
        Action::Manage,
        Action::DeadLetters,
    ];

    /// The name used in the auth file and in refusals.
    pub fn name(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Consume => "consume",
            Action::Manage => "manage",
            Action::DeadLetters => "dead_letters",
        }
    }

    /// Parses [`Action::name`].
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    /// Whether `action` is in the set.
    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    /// The set with `action` added.
    pub fn with(self, action: Action) -> Actions {
        Actions(self.0 | action.bit())
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        iter.into_iter().fold(Actions::default(), Actions::with)
    }
}

/// One permission: these actions on the topics matching these patterns.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The patterns as written, for listings.
    pub patterns: Vec<String>,
    /// The patterns compiled; never empty (an empty matcher matches all).
    topics: Matcher,
    /// Whether one of the patterns matches every topic name (`#`, `>`).
    all_topics: bool,
    /// The actions allowed.
    pub actions: Actions,
}

impl Rule {
    /// A rule over `topics` (checked, non-empty) allowing `actions`.
    pub(crate) fn new(patterns: Vec<String>, topics: Matcher, actions: Actions) -> Rule {
        let all_topics = patterns.iter().any(|p| p == "#" || p == ">");
        Rule {
            patterns,
            topics,
            all_topics,
            actions,
        }
    }

    fn covers(&self, topic: &str) -> bool {
        self.all_topics || self.topics.matches(topic)
    }
}

/// An authenticated caller: a name (from the auth file, or the subject of a
/// client certificate) and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The name, as in the auth file.
    pub name: String,
    /// May do everything, including server-wide calls.
    pub admin: bool,
    /// What it may do on which topics.
    pub rules: Vec<Rule>,
}

impl Principal {
    /// A principal without any permission (an authenticated name that the
    /// auth file does not list).
    pub fn unlisted(name: &str) -> Principal {
        Principal {
            name: name.to_string(),
            admin: false,
            rules: Vec::new(),
        }
    }

    /// Whether it may do `action` on `topic`.
    pub fn may(&self, action: Action, topic: &str) -> bool {
        self.admin
            || self
                .rules
                .iter()
                .any(|r| r.actions.contains(action) && r.covers(topic))
    }

    /// Whether it may see `topic` at all: any action on it. Describing a
    /// topic or its groups, and listing them, needs this.
    pub fn may_see(&self, topic: &str) -> bool {
        self.admin || self.rules.iter().any(|r| r.covers(topic))
    }

    /// Whether it sees every topic, so that lists need no filtering.
    pub fn sees_all(&self) -> bool {
        self.admin || self.rules.iter().any(|r| r.all_topics)
    }
}

/// Errors of authentication, authorization and the auth file; each
/// refusal maps to one gRPC code in `grpc::status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credential, or one that is not valid: UNAUTHENTICATED.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid principal without the right: PERMISSION_DENIED. The names
    /// are quoted and cut for the message.
    #[error("principal {principal} may not {action} on topic {topic}")]
    Denied {
        principal: String,
        action: Action,
        topic: String,
    },
    /// A principal without any permission on a topic it asked about:
    /// PERMISSION_DENIED.
    #[error(
        "principal {principal} may not view topic {topic}: viewing a topic needs a permission on it"
    )]
    Hidden { principal: String, topic: String },
    /// An ack id of a delivery the principal may not consume:
    /// PERMISSION_DENIED. The topic is not named: an ack id may be forged.
    #[error("principal {principal} may not consume the delivery of ack_ids[{index}]")]
    DeniedDelivery { principal: String, index: usize },
    /// A call that would create a topic or group implicitly (auto-create)
    /// by a principal without `manage` on it: PERMISSION_DENIED.
    #[error(
        "principal {principal} may not create {what} {name} (it does not exist; creating it needs manage on topic {topic})"
    )]
    DeniedCreate {
        principal: String,
        what: &'static str,
        name: String,
        topic: String,
    },
    /// A server-wide call by a principal that is not admin: PERMISSION_DENIED.
    #[error("principal {principal} may not {what}: it needs admin")]
    NotAdmin {
        principal: String,
        what: &'static str,
    },
    /// The text of an auth file is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The auth file cannot be read or is not valid.
    #[error("auth file {path}: {reason}")]
    File { path: String, reason: String },
}

/// The one authorization check: may `principal` do `action` on `topic`?
///
/// # Errors
/// [`AuthError::Denied`] naming the action and the topic (as the caller
/// gave it, so nothing about the topic's existence is revealed).
pub fn authorize(principal: &Principal, action: Action, topic: &str) -> Result<(), AuthError> {
    if principal.may(action, topic) {
        return Ok(());
    }
    Err(AuthError::Denied {
        principal: echo(&principal.name),
        action,
        topic: echo(topic),
    })
}

/// The check of a call that only describes `topic` (or its groups): the
/// principal needs some permission on it.
///
/// # Errors
/// [`AuthError::Hidden`].
pub fn authorize_view(principal: &Principal, topic: &str) -> Result<(), AuthError> {
    if principal.may_see(topic) {
        return Ok(());
    }
    Err(AuthError::Hidden {
        principal: echo(&principal.name),
        topic: echo(topic),
    })
}

/// The check of a server-wide call (`what`, e.g. "read server info").
///
/// # Errors
/// [`AuthError::NotAdmin`] unless the principal is admin.
pub fn authorize_admin(principal: &Principal, what: &'static str) -> Result<(), AuthError> {
    if principal.admin {
        return Ok(());
    }
    Err(AuthError::NotAdmin {
        principal: echo(&principal.name),
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(rules: &[(&[&str], &[Action])]) -> Principal {
        let file = rules
            .iter()
            .map(|(topics, actions)| {
                let topics: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
                let actions: Vec<String> =
                    actions.iter().map(|a| format!("{:?}", a.name())).collect();
                format!(
                    "[[principals.p.rules]]\ntopics = [{}]\nactions = [{}]\n",
                    topics.join(", "),
                    actions.join(", ")
                )
            })
            .collect::<String>();
        let text = format!("token_key = \"{}\"\n{file}", "ab".repeat(32));
        let policy = parse_file(&text, 10).unwrap();
        (*policy.principal("p")).clone()
    }

    #[test]
    fn rules_grant_actions_on_matching_topics_only() {
        let p = principal(&[
            (&["orders", "orders.>"], &[Action::Publish]),
            (&["billing.*"], &[Action::Consume, Action::DeadLetters]),
        ]);
        assert!(p.may(Action::Publish, "orders"));
        assert!(p.may(Action::Publish, "orders.eu.1"));
        assert!(!p.may(Action::Publish, "ordersX"));
        assert!(!p.may(Action::Consume, "orders"));
        assert!(p.may(Action::Consume, "billing.eu"));
        assert!(!p.may(Action::Consume, "billing.eu.x"));
        assert!(!p.may(Action::Consume, "billing"));
        assert!(p.may_see("orders.x") && p.may_see("billing.x"));
        assert!(!p.may_see("payroll"));
        assert!(!p.sees_all());
        let err = authorize(&p, Action::Manage, "orders").unwrap_err();
        assert_eq!(
            err.to_string(),
            "principal \"p\" may not manage on topic \"orders\""
        );
        assert!(authorize_admin(&p, "read server info").is_err());
    }

    #[test]
    fn hash_matches_every_topic_and_admin_everything() {
        let p = principal(&[(&["#"], &[Action::Consume])]);
        assert!(p.sees_all());
        assert!(p.may(Action::Consume, "a") && p.may(Action::Consume, "a.b.c"));
        assert!(!p.may(Action::Publish, "a"));
        let admin = Principal {
            admin: true,
            ..Principal::unlisted("root")
        };
        assert!(admin.may(Action::Manage, "x") && admin.sees_all());
        assert!(authorize_admin(&admin, "x").is_ok());
        let nobody = Principal::unlisted("cn=someone");
        assert!(!nobody.may_see("x") && !nobody.sees_all());
    }
}
