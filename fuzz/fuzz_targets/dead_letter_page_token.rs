//! Dead-letter page tokens: any string is either the first page, the page
//! after an id, or INVALID_ARGUMENT, never a panic. A token made for one
//! query reads back as the same position, and is refused for another query.
#![no_main]

use herald::broker::BrokerError;
use herald::broker::DeadLetterFilter;
use herald::broker::dead_letter::{PageQuery, make_page_token, parse_page_token};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    secret: [u8; 16],
    token: String,
    topic: String,
    group: String,
    oldest_first: bool,
    types: Vec<String>,
    last: u64,
}

fuzz_target!(|input: Input| {
    let filter = DeadLetterFilter {
        types: input.types,
        ..DeadLetterFilter::default()
    };
    let query = PageQuery {
        topic: &input.topic,
        group: &input.group,
        oldest_first: input.oldest_first,
        filter: &filter,
    };
    match parse_page_token(&input.secret, &query, &input.token) {
        Ok(None) => assert!(input.token.is_empty()),
        Ok(Some(_)) | Err(BrokerError::InvalidArgument { .. }) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
    let made = make_page_token(&input.secret, &query, input.last);
    assert_eq!(
        parse_page_token(&input.secret, &query, &made).ok(),
        Some(Some(input.last))
    );
    let other = PageQuery {
        oldest_first: !input.oldest_first,
        ..query
    };
    // A 64-bit check: a collision would need a 2^-64 coincidence.
    assert!(parse_page_token(&input.secret, &other, &made).is_err());
});
