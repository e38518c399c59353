//! The audit log: topic, group and dead-letter management actions, with
//! who asked, as structured `tracing` events under the target
//! `herald::audit`.
//!
//! gRPC layer. Each event has `principal` (`-` with authentication off),
//! `credential` (`token:<id>`, `certificate` or `none`), `peer`, `action`
//! (the RPC, e.g. `AdminService/DeleteTopic`, or `implicit_create` for an
//! auto-create), `topic`, `group` when there is one, and `outcome` (`ok`,
//! the gRPC code of a failure, or `denied`). Done and failed actions are
//! logged at INFO, refusals at WARN. Route them with a filter such as
//! `RUST_LOG=info,herald::audit=info` and the JSON log format.

use tonic::Status;

use super::guard::{Caller, Credential, Target};
use crate::auth::AuthError;

/// The audit target.
pub const TARGET: &str = "herald::audit";

fn credential(caller: &Caller) -> String {
    match caller.credential() {
        Credential::None => "none".into(),
        Credential::Token(id) => format!("token:{id}"),
        Credential::Certificate => "certificate".into(),
    }
}

fn short(method: &str) -> &str {
    method.strip_prefix("herald.v1.").unwrap_or(method)
}

/// Logs a management action that ran: `outcome` is its result.
pub fn done<T>(
    caller: &Caller,
    method: &str,
    topic: &str,
    group: Option<&str>,
    outcome: &Result<T, Status>,
) {
    let outcome = match outcome {
        Ok(_) => "ok".to_string(),
        Err(status) => format!("{:?}", status.code()),
    };
    tracing::info!(target: TARGET, principal = caller.name(), credential = credential(caller),
        peer = ?caller.peer(), action = short(method), topic, group, outcome, "audit");
}

/// Logs a topic or group created implicitly by a publish or subscribe.
pub fn implicit_create(caller: &Caller, method: &str, topic: &str, group: Option<&str>) {
    tracing::info!(target: TARGET, principal = caller.name(), credential = credential(caller),
        peer = ?caller.peer(), action = "implicit_create", via = short(method), topic, group,
        outcome = "ok", "audit");
}

/// Logs a refused management action.
pub fn denied(caller: &Caller, method: &str, target: Target<'_>, error: &AuthError) {
    let topic = match target {
        Target::Topic(t) | Target::Listing(Some(t)) => t,
        _ => "",
    };
    let topic = crate::broker::error::echo(topic);
    tracing::warn!(target: TARGET, principal = caller.name(), credential = credential(caller),
        peer = ?caller.peer(), action = short(method), topic, outcome = "denied",
        reason = %error, "audit");
}
