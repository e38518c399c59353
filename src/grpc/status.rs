//! The one place that maps [`BrokerError`] (and [`AuthError`]) onto gRPC
//! status codes, with field-level details (`google.rpc.BadRequest`) for bad
//! input.
//!
//! gRPC layer.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::AuthError;
use crate::broker::BrokerError;

/// Maps a broker error onto a status, exhaustively.
pub fn to_status(e: BrokerError) -> Status {
    let message = e.to_string();
    match e {
        BrokerError::InvalidArgument { field, description } => Status::with_error_details(
            Code::InvalidArgument,
            message,
            ErrorDetails::with_bad_request_violation(field, description),
        ),
        BrokerError::NotFound(_) => Status::not_found(message),
        BrokerError::AlreadyExists(_) => Status::already_exists(message),
        BrokerError::FailedPrecondition(_) => Status::failed_precondition(message),
        BrokerError::ResourceExhausted(_) => Status::resource_exhausted(message),
        BrokerError::OutOfRange(_) => Status::out_of_range(message),
        BrokerError::Unavailable(_) => Status::unavailable(message),
        BrokerError::Unimplemented(_) => Status::unimplemented(message),
        BrokerError::Internal(_) => Status::internal(message),
        // `BrokerError` is non_exhaustive for other crates only; this arm
        // keeps the match total should a variant be added without a mapping.
        #[allow(unreachable_patterns)]
        _ => Status::internal(message),
    }
}

/// [`to_status`] for an error about one part of a request: the field the
/// broker names (`ack_ids[2]`) becomes a path under `part`
/// (`ack.ack_ids[2]`).
pub fn to_status_in(part: &str, e: BrokerError) -> Status {
    match e {
        BrokerError::InvalidArgument { field, description } => {
            invalid(format!("{part}.{field}"), description)
        }
        other => to_status(other),
    }
}

/// Maps an authentication or authorization refusal onto a status:
/// UNAUTHENTICATED for a missing or bad credential, PERMISSION_DENIED for a
/// principal without the right. File errors never reach a caller; they map
/// to INTERNAL should one.
pub fn auth_status(e: AuthError) -> Status {
    let message = e.to_string();
    match e {
        AuthError::Unauthenticated(_) => Status::unauthenticated(message),
        AuthError::Denied { .. }
        | AuthError::Hidden { .. }
        | AuthError::DeniedDelivery { .. }
        | AuthError::DeniedCreate { .. }
        | AuthError::NotAdmin { .. } => Status::permission_denied(message),
        AuthError::Invalid(_) | AuthError::File { .. } => Status::internal(message),
        // Non-exhaustive for other crates only (see `to_status`).
        #[allow(unreachable_patterns)]
        _ => Status::internal(message),
    }
}

/// Shorthand for request-field errors raised while converting protos.
pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Status {
    to_status(BrokerError::invalid(field, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_the_field() {
        let status = to_status(BrokerError::invalid("events[2].data", "too big"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "events[2].data: too big");
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "events[2].data");
    }
}
