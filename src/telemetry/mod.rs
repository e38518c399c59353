//! What Herald records about itself for OpenTelemetry: the metric
//! instruments ([`metrics`]) and W3C trace-context propagation between
//! publishers, stored events and deliveries ([`propagation`]).
//!
//! Cross-cutting, used by `grpc` (spans, propagation, publish metrics) and
//! by the broker's group task (delivery, ack and dead-letter counters).
//! Installing exporters is `cli::telemetry`'s job; until it installs a meter
//! provider every instrument here is off and costs a branch.
//!
//! Span and attribute names follow the OpenTelemetry messaging semantic
//! conventions where they exist (`messaging.*`), plus the plain `topic`,
//! `group`, `event.type` and `event.id` attributes Herald's users ask for.

pub mod metrics;
pub mod propagation;

/// `messaging.system` of every Herald span.
pub const MESSAGING_SYSTEM: &str = "herald";
