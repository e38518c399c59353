//! Compiles `proto/herald/v1/*.proto`, and the vendored Google Pub/Sub API
//! (`proto/google/`, for the Pub/Sub front door), into Rust with protox (a
//! pure-Rust protobuf compiler), so building needs no system `protoc`. Also
//! writes the encoded descriptor sets used by gRPC server reflection, one
//! per API.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/herald/v1/event.proto",
        "proto/herald/v1/publisher.proto",
        "proto/herald/v1/subscriber.proto",
        "proto/herald/v1/admin.proto",
        "proto/herald/v1/dead_letter.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("herald_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .bytes(".herald.v1.Event.data")
        .compile_fds(descriptors)?;

    let pubsub = protox::compile(["proto/google/pubsub/v1/pubsub.proto"], ["proto"])?;
    std::fs::write(
        out_dir.join("pubsub_descriptor.bin"),
        pubsub.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .bytes(".google.pubsub.v1.PubsubMessage.data")
        .compile_fds(pubsub)?;
    Ok(())
}
