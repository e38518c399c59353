//! Helpers shared by Herald's fuzz targets (`fuzz_targets/*.rs`).
//!
//! A target is one small file: `cargo fuzz add NAME` creates it with its
//! `[[bin]]` entry in `Cargo.toml`; it calls the code under test through
//! `herald`'s public (or `#[doc(hidden)]`) entry points and asserts what
//! must hold for any input. See the README, section Security, for how to
//! run them.

/// Splits fuzz bytes into strings at `\n`, lossily (invalid UTF-8 becomes
/// U+FFFD), for targets whose input is a list of short strings.
pub fn lines(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(str::to_owned)
        .collect()
}
