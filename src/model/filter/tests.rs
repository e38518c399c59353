use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;

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
    let lone = m(&[], &["#"]);
    assert!(lone.matches("x"));
    assert!(lone.matches("x.y.z"));
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

#[test]
fn pattern_size_is_bounded_for_new_filters_only() {
    let long = vec!["a"; MAX_PATTERN_SEGMENTS + 1].join(".");
    let filter = Filter {
        types: vec![],
        patterns: vec![long.clone()],
    };
    let err = Matcher::compile(&filter).unwrap_err().to_string();
    assert!(err.contains("segments, the limit is"), "{err}");
    // A filter stored by an earlier release still loads, and works.
    let stored = Matcher::compile_stored(&filter).unwrap();
    assert!(stored.matches(&long));
    assert!(!stored.matches("a.a"));
}

/// Regression (issue 8, finding 1): `#.#.#.#.#.#.#.#.b` against a type of
/// 300 segments tried every split of each `#` and never finished, pinning
/// a worker. It must answer at once, whatever the pattern.
#[test]
fn adversarial_patterns_match_in_linear_time() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let event_type = vec!["a"; 300].join(".");
        let matcher = m(&[], &["#.#.#.#.#.#.#.#.b", "*.#.*.#.*.#.*.#.*.#.*.b"]);
        let started = std::time::Instant::now();
        let mut hits = 0;
        for _ in 0..100 {
            hits += usize::from(matcher.matches(&event_type));
        }
        let _ = tx.send((hits, started.elapsed()));
    });
    let (hits, elapsed) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("matching must not take exponential time");
    assert_eq!(hits, 0);
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

/// The textbook definition, exponential but fine for short inputs.
fn reference(pattern: &[&str], input: &[&str]) -> bool {
    match pattern.split_first() {
        None => input.is_empty(),
        Some((&">", _)) => !input.is_empty(),
        Some((&"#", rest)) => (0..=input.len()).any(|skip| reference(rest, &input[skip..])),
        Some((&"*", rest)) => !input.is_empty() && reference(rest, &input[1..]),
        Some((lit, rest)) => input.first() == Some(lit) && reference(rest, &input[1..]),
    }
}

proptest! {
    #[test]
    fn automaton_agrees_with_the_definition(
        pattern in prop::collection::vec(prop::sample::select(vec!["a", "b", "*", "#"]), 1..8),
        rest in any::<bool>(),
        input in prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..10),
    ) {
        let mut pattern = pattern;
        if rest {
            pattern.push(">");
        }
        let text = pattern.join(".");
        let event_type = input.join(".");
        let matcher = m(&[], &[text.as_str()]);
        prop_assert_eq!(matcher.matches(&event_type), reference(&pattern, &input), "{} vs {}", text, event_type);
    }

    #[test]
    fn long_patterns_cross_word_boundaries(n in 60usize..140, hashes in any::<bool>()) {
        // Literal runs longer than 64 states exercise the carry between words.
        let mut segments: Vec<&str> = vec!["a"; n];
        if hashes {
            segments[n / 2] = "#";
        }
        let matcher = Matcher::compile_stored(&Filter {
            types: vec![],
            patterns: vec![segments.join(".")],
        })
        .unwrap();
        let input = vec!["a"; n].join(".");
        prop_assert!(matcher.matches(&input));
        let shorter = vec!["a"; n - 2].join(".");
        prop_assert_eq!(matcher.matches(&shorter), reference(&segments, &vec!["a"; n - 2]));
    }
}
