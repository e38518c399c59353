//! Herald: a standalone event-streaming service.
//!
//! Layers, dependencies pointing one way: `grpc` (and the console, [`http`])
//! → [`broker`] → [`storage`].
//! `cli` wires them into the `herald` binary; tests start the same server
//! in-process. [`auth`] sits at the edge beside `grpc`: principals and
//! permissions, checked before the broker is called.

pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod event;
pub mod grpc;
pub mod http;
pub mod model;
pub mod proto;
pub mod pubsub;
pub mod storage;
pub mod telemetry;
