//! Generated protobuf and gRPC types of `herald.v1`. Only `grpc/` and the CLI
//! use these; the broker and storage never do.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("herald.v1");

/// Encoded `FileDescriptorSet` of the Herald API, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("herald_descriptor");
