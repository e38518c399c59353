//! `BrokerError`: every failure the core reports, one variant per gRPC code
//! (the model's [`crate::model::Error`], named for the layer that answers it).
//!
//! Broker layer.

pub use crate::model::Error as BrokerError;
pub use crate::model::echo;
