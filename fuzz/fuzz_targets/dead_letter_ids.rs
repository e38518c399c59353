//! Dead-letter ids and the selection of a replay or purge: any list of
//! strings gives a selection or INVALID_ARGUMENT naming a field, never a
//! panic; selected ids are positive, sorted and distinct, and each came
//! from the input.
#![no_main]

use herald::broker::BrokerError;
use herald::broker::dead_letter::selection;
use herald::broker::{DeadLetterFilter, Selection};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    ids: Vec<String>,
    all: bool,
    types: Vec<String>,
}

fuzz_target!(|input: Input| {
    let filter = DeadLetterFilter {
        types: input.types,
        ..DeadLetterFilter::default()
    };
    match selection(&input.ids, input.all, filter) {
        Ok(Selection::Ids(ids)) => {
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
            for id in ids {
                assert!(id > 0);
                assert!(input.ids.iter().any(|t| t.parse::<u64>() == Ok(id)));
            }
        }
        Ok(_) => assert!(input.all && input.ids.is_empty()),
        Err(BrokerError::InvalidArgument { .. }) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
});
