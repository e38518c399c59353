//! The Pub/Sub front door: `google.pubsub.v1` served on Herald's port, so
//! that Google's official Pub/Sub clients run unchanged against Herald
//! (`PUBSUB_EMULATOR_HOST`), on either storage backend.
//!
//! Pub/Sub layer, a sibling of `grpc/` and as thin: names and messages in,
//! one broker call, messages out. Topics are Herald topics and a
//! subscription is a group on its topic, named by the reversible mapping
//! of [`names`].
//!
//! Built so far: the vendored API (`proto/google/`, compiled by `build.rs`
//! into [`crate::proto::google`]) and the name mapping. The services are
//! not served yet.

pub mod names;
