//! Pub/Sub resource names (`projects/{project}/topics/{topic}`,
//! `.../subscriptions/{sub}`, `.../snapshots/{snap}`) and their reversible
//! mapping onto Herald names (`[A-Za-z0-9._-]`, 1–249 bytes).
//!
//! Pub/Sub layer, pure functions.
//!
//! The mapping of `(project, id)` to a Herald name:
//!
//! | Pub/Sub | Herald name |
//! |---|---|
//! | default project, id of `[A-Za-z0-9._-]` only | the id itself (`orders` ↔ `orders`) |
//! | default project, id with `~`, `+` or `%` | `0` + the id escaped (`a+b` ↔ `0a_pb`) |
//! | another project `p` | `1` + `p` + `.` + the id as above (`1p.orders`, `1p.0a_pb`) |
//!
//! Escaping: `_` → `__`, `~` → `_t`, `+` → `_p`, `%` → `_c`. A Pub/Sub id
//! starts with a letter and a project contains no `.`, so the three forms
//! cannot collide and decoding is exact. Herald names of none of these
//! forms (starting with `_`, `.`, `-` or a digit other than a valid `0…` or
//! `1…` form) are not Pub/Sub resources: they are served by `herald.v1`
//! only. An id whose Herald name would exceed 249 bytes is refused with
//! INVALID_ARGUMENT.

use std::fmt;

/// Longest Herald name (topics and groups).
const HERALD_MAX: usize = 249;

/// What a resource name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `projects/{p}/topics/{t}`.
    Topic,
    /// `projects/{p}/subscriptions/{s}`.
    Subscription,
    /// `projects/{p}/snapshots/{s}`.
    Snapshot,
}

impl Kind {
    /// The collection segment of the name, as in `topics`.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Topic => "topics",
            Kind::Subscription => "subscriptions",
            Kind::Snapshot => "snapshots",
        }
    }
}

/// A parsed, valid Pub/Sub resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// The project id.
    pub project: String,
    /// What it is.
    pub kind: Kind,
    /// The topic, subscription or snapshot id.
    pub id: String,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projects/{}/{}/{}",
            self.project,
            self.kind.collection(),
            self.id
        )
    }
}

/// Why a name is refused: Pub/Sub answers INVALID_ARGUMENT with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a well-formed name of this kind (Pub/Sub's own wording).
    #[error("Invalid [{collection}] name: (name={name})")]
    Invalid {
        /// `topics`, `subscriptions` or `snapshots`.
        collection: &'static str,
        /// The name as given.
        name: String,
    },
    /// Well-formed, but too long for Herald's names once mapped.
    #[error(
        "Invalid [{collection}] name: (name={name}): Herald stores it as a name of {len} bytes, over its limit of 249"
    )]
    TooLong {
        /// `topics`, `subscriptions` or `snapshots`.
        collection: &'static str,
        /// The name as given.
        name: String,
        /// Bytes of the Herald name it maps to.
        len: usize,
    },
}

/// The longest part of a refused name an error message repeats.
const SHOWN_MAX: usize = 300;

/// `name` as an error message repeats it: whole up to [`SHOWN_MAX`] bytes
/// (Pub/Sub's wording quotes it bare), else cut, with its length (messages
/// travel in HTTP/2 headers).
fn shown(name: &str) -> String {
    if name.len() <= SHOWN_MAX {
        return name.to_string();
    }
    let mut end = SHOWN_MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &name[..end], name.len())
}

/// A project id: 1–30 of `[a-z0-9-]`, starting with a letter (Google's
/// project ids, without the legacy `domain:` form).
pub fn valid_project(p: &str) -> bool {
    let b = p.as_bytes();
    (1..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A topic, subscription or snapshot id as Pub/Sub defines it: 3–255
/// characters of `[A-Za-z0-9-_.~+%]`, starting with a letter, not starting
/// with `goog`.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    (3..=255).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && !id.starts_with("goog")
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.~+%".contains(c))
}

/// Parses `projects/{project}/{collection}/{id}` of `kind`.
///
/// # Errors
/// [`NameError::Invalid`] for anything else; [`NameError::TooLong`] when
/// the Herald name it maps to would be over 249 bytes.
pub fn parse(kind: Kind, name: &str, default_project: &str) -> Result<Resource, NameError> {
    let invalid = || NameError::Invalid {
        collection: kind.collection(),
        name: shown(name),
    };
    let rest = name.strip_prefix("projects/").ok_or_else(invalid)?;
    let (project, rest) = rest.split_once('/').ok_or_else(invalid)?;
    let (collection, id) = rest.split_once('/').ok_or_else(invalid)?;
    if collection != kind.collection() || !valid_project(project) || !valid_id(id) {
        return Err(invalid());
    }
    let resource = Resource {
        project: project.to_string(),
        kind,
        id: id.to_string(),
    };
    let len = to_herald(&resource, default_project).len();
    if len > HERALD_MAX {
        return Err(NameError::TooLong {
            collection: kind.collection(),
            name: shown(name),
            len,
        });
    }
    Ok(resource)
}

/// Parses `projects/{project}` (a project's collection, as ListTopics takes).
///
/// # Errors
/// [`NameError::Invalid`], naming `projects`.
pub fn parse_project(name: &str) -> Result<String, NameError> {
    match name.strip_prefix("projects/") {
        Some(p) if valid_project(p) => Ok(p.to_string()),
        _ => Err(NameError::Invalid {
            collection: "projects",
            name: shown(name),
        }),
    }
}

/// The Herald name of a resource (may be longer than Herald allows:
/// [`parse`] refuses those).
pub fn to_herald(r: &Resource, default_project: &str) -> String {
    let id = encode_id(&r.id);
    if r.project == default_project {
        id
    } else {
        format!("1{}.{id}", r.project)
    }
}

/// The resource a Herald name stands for, or `None` when it is not the
/// name of a Pub/Sub resource (then only `herald.v1` serves it).
pub fn from_herald(kind: Kind, name: &str, default_project: &str) -> Option<Resource> {
    let (project, id) = match name.as_bytes().first()? {
        b'1' => {
            let (project, id) = name[1..].split_once('.')?;
            if project == default_project || !valid_project(project) {
                // The default project's resources have the short form.
                return None;
            }
            (project, decode_id(id)?)
        }
        _ => (default_project, decode_id(name)?),
    };
    Some(Resource {
        project: project.to_string(),
        kind,
        id,
    })
}

fn special(c: char) -> bool {
    matches!(c, '~' | '+' | '%')
}

/// An id in its Herald form: itself, or `0` + escaped when it has a
/// character Herald names do not allow.
fn encode_id(id: &str) -> String {
    if !id.chars().any(special) {
        return id.to_string();
    }
    let mut out = String::with_capacity(id.len() + 8);
    out.push('0');
    for c in id.chars() {
        match c {
            '_' => out.push_str("__"),
            '~' => out.push_str("_t"),
            '+' => out.push_str("_p"),
            '%' => out.push_str("_c"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`encode_id`]: `None` unless `s` is exactly the Herald
/// form of a valid id.
fn decode_id(s: &str) -> Option<String> {
    // Neither form holds a character that needs escaping.
    if s.chars().any(special) {
        return None;
    }
    let id = match s.strip_prefix('0') {
        None => s.to_string(),
        Some(escaped) => {
            let mut out = String::with_capacity(escaped.len());
            let mut chars = escaped.chars();
            while let Some(c) = chars.next() {
                if c != '_' {
                    out.push(c);
                    continue;
                }
                out.push(match chars.next()? {
                    '_' => '_',
                    't' => '~',
                    'p' => '+',
                    'c' => '%',
                    _ => return None,
                });
            }
            // The escaped form is used only for ids that need it.
            if !out.chars().any(special) {
                return None;
            }
            out
        }
    };
    valid_id(&id).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEFAULT: &str = "herald";

    fn topic(project: &str, id: &str) -> Resource {
        Resource {
            project: project.into(),
            kind: Kind::Topic,
            id: id.into(),
        }
    }

    #[test]
    fn the_documented_examples_hold() {
        assert_eq!(to_herald(&topic(DEFAULT, "orders"), DEFAULT), "orders");
        assert_eq!(to_herald(&topic(DEFAULT, "a+b"), DEFAULT), "0a_pb");
        assert_eq!(to_herald(&topic("p1", "orders"), DEFAULT), "1p1.orders");
        assert_eq!(to_herald(&topic("p1", "a_b~%"), DEFAULT), "1p1.0a__b_t_c");
        for herald in ["orders", "0a_pb", "1p1.orders", "1p1.0a__b_t_c"] {
            let r = from_herald(Kind::Topic, herald, DEFAULT).expect(herald);
            assert_eq!(to_herald(&r, DEFAULT), herald);
        }
    }

    #[test]
    fn herald_only_names_are_not_pubsub_resources() {
        for name in [
            "_internal",
            ".x",
            "-x",
            "9lives",
            "ab",          // too short for Pub/Sub
            "googthings",  // reserved prefix
            "0abc",        // escaped form without a special character
            "0a_xb",       // unknown escape
            "0a_",         // dangling escape
            "1herald.abc", // the default project has the short form
            "1Bad.abc",    // not a project id
            "1p1",         // no id
            "g.+",         // a special character unescaped (found by fuzzing)
            "1p1.ab~c",    // the same, in another project
            "0L~og",       // the same, in the escaped form (found by fuzzing)
        ] {
            assert_eq!(from_herald(Kind::Topic, name, DEFAULT), None, "{name}");
        }
    }

    #[test]
    fn names_are_parsed_with_pubsubs_rules() {
        let ok = parse(Kind::Topic, "projects/test-project/topics/orders", DEFAULT).unwrap();
        assert_eq!(ok, topic("test-project", "orders"));
        assert_eq!(ok.to_string(), "projects/test-project/topics/orders");
        let sub = parse(
            Kind::Subscription,
            "projects/p1/subscriptions/s.1~x",
            DEFAULT,
        )
        .unwrap();
        assert_eq!(sub.id, "s.1~x");
        let long_ok = format!("projects/{DEFAULT}/topics/a{}", "x".repeat(248));
        assert!(parse(Kind::Topic, &long_ok, DEFAULT).is_ok());
        for bad in [
            "",
            "projects/p1/topics/",
            "projects/p1/topics/ab",
            "projects/p1/topics/1abc",
            "projects/p1/topics/goog-x",
            "projects/p1/topics/a b c",
            "projects/p1/topics/abc/def",
            "projects/p1/subscriptions/abc",
            "projects/P1/topics/abc",
            "projects//topics/abc",
            "topics/abc",
            "projects/p1/topics/é-abc",
        ] {
            let err = parse(Kind::Topic, bad, DEFAULT).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("Invalid [topics] name: (name={bad})"),
                "{bad}"
            );
        }
        let too_long = format!("projects/p1/topics/a{}", "x".repeat(250));
        assert!(matches!(
            parse(Kind::Topic, &too_long, DEFAULT),
            Err(NameError::TooLong { .. })
        ));
        assert_eq!(parse_project("projects/p1"), Ok("p1".into()));
        assert!(parse_project("projects/p1/topics").is_err());
    }

    fn any_id() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9._~+%-]{2,60}".prop_filter("reserved", |s| !s.starts_with("goog"))
    }

    proptest! {
        #[test]
        fn the_mapping_round_trips(project in "[a-z][a-z0-9-]{0,12}", id in any_id()) {
            let r = topic(&project, &id);
            let herald = to_herald(&r, DEFAULT);
            prop_assert!(herald.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)));
            prop_assert_eq!(from_herald(Kind::Topic, &herald, DEFAULT), Some(r));
        }

        #[test]
        fn every_herald_name_decodes_to_at_most_one_resource(name in "[A-Za-z0-9._-]{1,40}") {
            if let Some(r) = from_herald(Kind::Topic, &name, DEFAULT) {
                prop_assert_eq!(to_herald(&r, DEFAULT), name);
            }
        }
    }
}
