//! The record sizes of a Redis stream chunk: any bytes and total give
//! bounds or `None`, never a panic; bounds start at 0, never go back, end
//! at the total and count one more than the sizes; sizes written as the
//! node writes them always read back.
#![no_main]

use herald::storage::chunk::record_bounds;
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
enum Input<'a> {
    Bytes(&'a [u8], usize),
    Sizes(Vec<u16>),
}

fuzz_target!(|input: Input| match input {
    Input::Bytes(sizes, total) => {
        if let Some(bounds) = record_bounds(sizes, total) {
            assert_eq!(bounds[0], 0);
            assert!(bounds.windows(2).all(|w| w[0] <= w[1]));
            assert_eq!(*bounds.last().unwrap(), total);
            assert_eq!(bounds.len(), sizes.split(|b| *b == b',').count() + 1);
        }
    }
    Input::Sizes(sizes) => {
        let text: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
        let total: usize = sizes.iter().map(|s| usize::from(*s)).sum();
        let bounds = record_bounds(text.join(",").as_bytes(), total);
        if sizes.is_empty() {
            assert_eq!(bounds, None);
        } else {
            let bounds = bounds.expect("sizes as written read back");
            assert_eq!(bounds.len(), sizes.len() + 1);
        }
    }
});
