// The semantics files, included by `semantics.rs` (embedded backend) and
// `redis_semantics.rs` (Redis backend); not a test binary of its own.

#[path = "ack_ids.rs"]
mod ack_ids;
#[path = "admin.rs"]
mod admin;
#[path = "bad_input.rs"]
mod bad_input;
#[path = "competing_consumers.rs"]
mod competing_consumers;
#[path = "console.rs"]
mod console;
#[path = "console_groups.rs"]
mod console_groups;
#[path = "consume_bad_input.rs"]
mod consume_bad_input;
#[path = "consume_batches.rs"]
mod consume_batches;
#[path = "consume_stream.rs"]
mod consume_stream;
#[path = "dead_letter_forwarding.rs"]
mod dead_letter_forwarding;
#[path = "dead_letters.rs"]
mod dead_letters;
#[path = "dedup_retention.rs"]
mod dedup_retention;
#[path = "fanout.rs"]
mod fanout;
#[path = "filters_seek_read.rs"]
mod filters_seek_read;
#[path = "large_events.rs"]
mod large_events;
#[path = "leases.rs"]
mod leases;
#[path = "ordering.rs"]
mod ordering;
#[path = "restart.rs"]
mod restart;
#[path = "stream_endings.rs"]
mod stream_endings;
#[path = "temporary_groups.rs"]
mod temporary_groups;
#[path = "pubsub_clients.rs"]
mod pubsub_clients;
#[path = "pubsub_exactly_once.rs"]
mod pubsub_exactly_once;
#[path = "pubsub_flow.rs"]
mod pubsub_flow;
#[path = "pubsub_races.rs"]
mod pubsub_races;
#[path = "pubsub_streaming.rs"]
mod pubsub_streaming;
