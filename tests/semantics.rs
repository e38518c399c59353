//! The semantics suite over the embedded backend, in one test binary: the
//! same files as `redis_semantics.rs` (which runs them again over Redis).
//! One binary instead of one per file keeps the test build small (each
//! binary links the whole server). Each included file brings its own copy
//! of `common`, hence the allowance.
#![allow(clippy::duplicate_mod)]

include!("semantics_files.rs");
