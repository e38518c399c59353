//! Generated protobuf and gRPC types of `herald.v1`. Only `grpc/` and the CLI
//! use these; the broker and storage never do.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("herald.v1");

/// Encoded `FileDescriptorSet` of the Herald API, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("herald_descriptor");

/// Generated types of the vendored Google APIs (`proto/google/`): the
/// Pub/Sub front door's wire format. Only `pubsub/` uses these.
pub mod google {
    #![allow(clippy::all, missing_docs)]

    /// `google.api`: annotations the Pub/Sub API's files import.
    pub mod api {
        tonic::include_proto!("google.api");
    }

    /// `google.pubsub.v1`: Publisher, Subscriber and SchemaService.
    pub mod pubsub {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("google.pubsub.v1");

            /// Encoded `FileDescriptorSet` of the Pub/Sub API, for server reflection.
            pub const FILE_DESCRIPTOR_SET: &[u8] =
                tonic::include_file_descriptor_set!("pubsub_descriptor");
        }
    }
}
