//! Group filter patterns (also the topic patterns of auth rules): any
//! filter compiles or gives INVALID_ARGUMENT, never a panic, and the
//! compiled automaton agrees with a plain backtracking reading of the
//! documented semantics (`*` one segment, `#` any number, trailing `>` one
//! or more) on every event type.
#![no_main]

use herald::broker::filter::Matcher;
use herald::broker::settings::Filter;
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    types: Vec<String>,
    patterns: Vec<String>,
    event_types: Vec<String>,
}

/// The documented semantics, by backtracking (exponential; small inputs).
fn naive(pattern: &[&str], segments: &[&str]) -> bool {
    match pattern.split_first() {
        None => segments.is_empty(),
        Some((&"#", rest)) => (0..=segments.len()).any(|i| naive(rest, &segments[i..])),
        Some((&">", [])) => !segments.is_empty(),
        Some((p, rest)) => match segments.split_first() {
            Some((s, more)) => (*p == "*" || p == s) && naive(rest, more),
            None => false,
        },
    }
}

fuzz_target!(|input: Input| {
    let filter = Filter {
        types: input.types,
        patterns: input.patterns,
    };
    let matcher = match Matcher::compile(&filter) {
        Ok(m) => m,
        // Every refusal names the field at fault.
        Err(invalid) => {
            assert!(invalid.field.starts_with("group.filter"), "{invalid:?}");
            return;
        }
    };
    for event_type in &input.event_types {
        let got = matcher.matches(event_type);
        let segments: Vec<&str> = event_type.split('.').collect();
        let small = segments.len() <= 8
            && filter.patterns.iter().all(|p| p.split('.').count() <= 8);
        if !small {
            continue;
        }
        let expected = (filter.types.is_empty() && filter.patterns.is_empty())
            || filter.types.contains(event_type)
            || filter.patterns.iter().any(|p| {
                let pattern: Vec<&str> = p.split('.').collect();
                naive(&pattern, &segments)
            });
        assert_eq!(got, expected, "{filter:?} on {event_type:?}");
    }
});
