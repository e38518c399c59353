//! Event-type filters of consumer groups (DESIGN §2 "Filters").
//!
//! Broker layer. Types are dot-separated segments (`Order.Placed`). A filter
//! holds exact types and patterns; an event matches when it equals one of the
//! types or matches one of the patterns; an empty filter matches everything.
//! In patterns, `*` matches exactly one segment, `#` matches any number of
//! segments (zero or more) and may stand anywhere, and `>` as the last
//! segment matches one or more remaining segments (NATS style).

use super::error::{BrokerError, echo};
use super::settings::Filter;

/// A filter compiled for fast matching on the dispatch path.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    types: Vec<String>,
    patterns: Vec<Vec<Segment>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
    Rest,
}

/// Most types plus patterns in one filter.
pub const MAX_FILTER_ENTRIES: usize = 256;

impl Matcher {
    /// Compiles and validates a filter.
    ///
    /// # Errors
    /// `InvalidArgument` on `group.filter.*` for empty entries, a `>` that is
    /// not last, or too many entries.
    pub fn compile(filter: &Filter) -> Result<Matcher, BrokerError> {
        if filter.types.len() + filter.patterns.len() > MAX_FILTER_ENTRIES {
            return Err(BrokerError::invalid(
                "group.filter",
                format!("at most {MAX_FILTER_ENTRIES} types and patterns"),
            ));
        }
        for (i, t) in filter.types.iter().enumerate() {
            if t.is_empty() || t.len() > 1024 {
                return Err(BrokerError::invalid(
                    format!("group.filter.types[{i}]"),
                    "must be 1-1024 bytes",
                ));
            }
        }
        let mut patterns = Vec::with_capacity(filter.patterns.len());
        for (i, p) in filter.patterns.iter().enumerate() {
            let field = format!("group.filter.patterns[{i}]");
            if p.is_empty() || p.len() > 1024 {
                return Err(BrokerError::invalid(field, "must be 1-1024 bytes"));
            }
            let parts: Vec<&str> = p.split('.').collect();
            let mut segments = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let seg = match *part {
                    "" => {
                        return Err(BrokerError::invalid(
                            field,
                            format!("{} has an empty segment", echo(p)),
                        ));
                    }
                    "*" => Segment::One,
                    "#" => Segment::Any,
                    ">" if j + 1 == parts.len() => Segment::Rest,
                    ">" => {
                        return Err(BrokerError::invalid(
                            field,
                            format!("{}: '>' may only be the last segment", echo(p)),
                        ));
                    }
                    lit => Segment::Literal(lit.to_string()),
                };
                segments.push(seg);
            }
            patterns.push(segments);
        }
        Ok(Matcher {
            types: filter.types.clone(),
            patterns,
        })
    }

    /// True when the filter wants events of this type.
    pub fn matches(&self, event_type: &str) -> bool {
        if self.types.is_empty() && self.patterns.is_empty() {
            return true;
        }
        if self.types.iter().any(|t| t == event_type) {
            return true;
        }
        if self.patterns.is_empty() {
            return false;
        }
        let segments: Vec<&str> = event_type.split('.').collect();
        self.patterns.iter().any(|p| match_segments(p, &segments))
    }
}

fn match_segments(pattern: &[Segment], input: &[&str]) -> bool {
    match pattern.split_first() {
        None => input.is_empty(),
        Some((Segment::Rest, _)) => !input.is_empty(),
        Some((Segment::Any, rest)) => {
            (0..=input.len()).any(|skip| match_segments(rest, &input[skip..]))
        }
        Some((Segment::One, rest)) => !input.is_empty() && match_segments(rest, &input[1..]),
        Some((Segment::Literal(lit), rest)) => {
            input.first().is_some_and(|s| s == lit) && match_segments(rest, &input[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(types: &[&str], patterns: &[&str]) -> Matcher {
        Matcher::compile(&Filter {
            types: types.iter().map(|s| s.to_string()).collect(),
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn every_pattern_form() {
        assert!(m(&[], &[]).matches("Anything.At.All"));
        let exact = m(&["OrderPlaced", "OrderShipped"], &[]);
        assert!(exact.matches("OrderPlaced"));
        assert!(!exact.matches("OrderPlaced.V2"));
        let star = m(&[], &["Order.*"]);
        assert!(star.matches("Order.Placed"));
        assert!(!star.matches("Order"));
        assert!(!star.matches("Order.Placed.V2"));
        let hash = m(&[], &["Order.#"]);
        assert!(hash.matches("Order"));
        assert!(hash.matches("Order.Placed.V2"));
        assert!(!hash.matches("User.Created"));
        let mid = m(&[], &["#.Failed"]);
        assert!(mid.matches("Failed"));
        assert!(mid.matches("Payment.Card.Failed"));
        let rest = m(&[], &["Order.>"]);
        assert!(!rest.matches("Order"));
        assert!(rest.matches("Order.Placed"));
        assert!(rest.matches("Order.Placed.V2"));
        let both = m(&["UserCreated"], &["*.Deleted"]);
        assert!(both.matches("UserCreated"));
        assert!(both.matches("User.Deleted"));
        assert!(!both.matches("User.Created"));
    }

    #[test]
    fn bad_patterns_are_rejected_with_their_field() {
        for bad in ["", "Order..Placed", "Order.>.X", "."] {
            let err = Matcher::compile(&Filter {
                types: vec![],
                patterns: vec!["ok.*".into(), bad.into()],
            })
            .unwrap_err();
            assert!(
                err.to_string().starts_with("group.filter.patterns[1]"),
                "{bad}: {err}"
            );
        }
    }
}
