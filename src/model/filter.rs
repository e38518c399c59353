//! Event-type filters of consumer groups (DESIGN §2 "Filters").
//!
//! Model layer. Types are dot-separated segments (`Order.Placed`). A filter
//! holds exact types and patterns; an event matches when it equals one of the
//! types or matches one of the patterns; an empty filter matches everything.
//! In patterns, `*` matches exactly one segment, `#` matches any number of
//! segments (zero or more) and may stand anywhere, and `>` as the last
//! segment matches one or more remaining segments (NATS style).
//!
//! Matching runs every pattern as a compiled automaton (`automaton.rs`) in
//! one pass over the type's segments, so its cost is linear in the length of
//! the event type whatever the pattern: `#.#.#.#.b` against a type of 300
//! segments costs 300 steps, not the exponential number of ways to split it.
//! Filter sizes are bounded so that each step stays cheap.

mod automaton;

use std::collections::HashSet;

use super::settings::Filter;
use super::{Invalid, echo};
use automaton::Automaton;

/// Most types plus patterns in one filter.
pub const MAX_FILTER_ENTRIES: usize = 256;
/// Longest type or pattern, bytes.
pub const MAX_ENTRY_LEN: usize = 1024;
/// Most segments in one pattern.
pub const MAX_PATTERN_SEGMENTS: usize = 64;

/// A filter compiled for fast matching on the dispatch path.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    types: HashSet<String>,
    patterns: Vec<Automaton>,
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
    Rest,
}

impl Matcher {
    /// Compiles and validates a filter.
    ///
    /// # Errors
    /// `InvalidArgument` on `group.filter.*` for empty or overlong entries,
    /// empty segments, a `>` that is not last, patterns of more than
    /// [`MAX_PATTERN_SEGMENTS`] segments, or more than [`MAX_FILTER_ENTRIES`]
    /// entries.
    pub fn compile(filter: &Filter) -> Result<Matcher, Invalid> {
        Self::build(filter, true)
    }

    /// Compiles a filter that was stored by an earlier release, which did
    /// not bound the number of segments: every limit but that one still
    /// applies (the automaton handles any length, only slower).
    ///
    /// # Errors
    /// As [`Matcher::compile`], except for the segment count.
    pub fn compile_stored(filter: &Filter) -> Result<Matcher, Invalid> {
        Self::build(filter, false)
    }

    fn build(filter: &Filter, bound_segments: bool) -> Result<Matcher, Invalid> {
        if filter.types.len() + filter.patterns.len() > MAX_FILTER_ENTRIES {
            return Err(Invalid::new(
                "group.filter",
                format!("at most {MAX_FILTER_ENTRIES} types and patterns"),
            ));
        }
        for (i, t) in filter.types.iter().enumerate() {
            if t.is_empty() || t.len() > MAX_ENTRY_LEN {
                return Err(Invalid::new(
                    format!("group.filter.types[{i}]"),
                    format!("must be 1-{MAX_ENTRY_LEN} bytes"),
                ));
            }
        }
        let mut patterns = Vec::with_capacity(filter.patterns.len());
        for (i, p) in filter.patterns.iter().enumerate() {
            let field = format!("group.filter.patterns[{i}]");
            let segments = parse(&field, p)?;
            if bound_segments && segments.len() > MAX_PATTERN_SEGMENTS {
                return Err(Invalid::new(
                    field,
                    format!(
                        "{} has {} segments, the limit is {MAX_PATTERN_SEGMENTS}",
                        echo(p),
                        segments.len()
                    ),
                ));
            }
            patterns.push(Automaton::new(&segments));
        }
        Ok(Matcher {
            types: filter.types.iter().cloned().collect(),
            patterns,
        })
    }

    /// True when the filter wants events of this type. Linear in the length
    /// of `event_type`.
    pub fn matches(&self, event_type: &str) -> bool {
        if self.types.is_empty() && self.patterns.is_empty() {
            return true;
        }
        if self.types.contains(event_type) {
            return true;
        }
        self.patterns.iter().any(|p| p.matches(event_type))
    }
}

/// Splits a pattern into segments, checking its syntax.
fn parse(field: &str, pattern: &str) -> Result<Vec<Segment>, Invalid> {
    if pattern.is_empty() || pattern.len() > MAX_ENTRY_LEN {
        return Err(Invalid::new(
            field,
            format!("must be 1-{MAX_ENTRY_LEN} bytes"),
        ));
    }
    let count = pattern.split('.').count();
    let mut segments = Vec::with_capacity(count);
    for (j, part) in pattern.split('.').enumerate() {
        segments.push(match part {
            "" => {
                return Err(Invalid::new(
                    field,
                    format!("{} has an empty segment", echo(pattern)),
                ));
            }
            "*" => Segment::One,
            "#" => Segment::Any,
            ">" if j + 1 == count => Segment::Rest,
            ">" => {
                return Err(Invalid::new(
                    field,
                    format!("{}: '>' may only be the last segment", echo(pattern)),
                ));
            }
            lit => Segment::Literal(lit.to_string()),
        });
    }
    Ok(segments)
}

#[cfg(test)]
mod tests;
