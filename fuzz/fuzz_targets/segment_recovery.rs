//! Segment recovery over arbitrary files: opening a log directory whose
//! segment (and a sealed segment with its index) holds any bytes never
//! panics; what recovery keeps of the active segment reads back as whole
//! records with consecutive offsets ending at the next offset; and a
//! second recovery finds nothing more to repair.
#![no_main]

use herald::storage::embedded::log::fuzzing::{recover_bytes, recover_dir};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    /// A sealed segment at base 0 and its index file, before the active one.
    sealed: Option<(&'a [u8], &'a [u8])>,
    active_base: u8,
    active: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = match recover_bytes(
        dir.path(),
        input.sealed,
        u64::from(input.active_base),
        input.active,
    ) {
        Ok(r) => r,
        // I/O errors only (the temp dir is writable: none expected, but
        // they are not the codec's business).
        Err(_) => return,
    };
    let offsets = first.active_offsets.as_ref().expect("kept records read back");
    for pair in offsets.windows(2) {
        assert_eq!(pair[0] + 1, pair[1], "offsets are consecutive");
    }
    if let Some(last) = offsets.last() {
        assert_eq!(last + 1, first.next_offset);
    }
    assert!(first.active_len <= input.active.len() as u64);
    let again = recover_dir(dir.path()).expect("a recovered log opens again");
    assert_eq!(again, first, "recovery is idempotent");
});
