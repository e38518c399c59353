//! The thin tonic adapter: one service per file, conversions in
//! `convert.rs`, error mapping in `status.rs`. Nothing else in the crate
//! knows `tonic::Status`.

pub mod admin;
pub mod convert;
pub mod dead_letter;
pub mod publisher;
pub mod status;
pub mod subscriber;

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::broker::Broker;
use crate::proto::admin_service_server::AdminServiceServer;
use crate::proto::dead_letter_service_server::DeadLetterServiceServer;
use crate::proto::publisher_service_server::PublisherServiceServer;
use crate::proto::subscriber_service_server::SubscriberServiceServer;

/// Serves every Herald service plus health and reflection on `listener`
/// until `shutdown` completes, then waits for open calls to finish.
///
/// # Errors
/// The transport failed.
pub async fn serve(
    broker: Broker,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // Leave headroom over the request limit so oversized batches reach the
    // broker's own check and get a precise INVALID_ARGUMENT.
    let max_message = broker.config().limits.max_request_bytes + (1 << 20);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<PublisherServiceServer<publisher::PublisherApi>>()
        .await;
    health
        .set_serving::<SubscriberServiceServer<subscriber::SubscriberApi>>()
        .await;
    health
        .set_serving::<AdminServiceServer<admin::AdminApi>>()
        .await;
    health
        .set_serving::<DeadLetterServiceServer<dead_letter::DeadLetterApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| {
            tracing::error!(error = %e, "reflection descriptors are invalid");
            e
        });
    let mut router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(
            PublisherServiceServer::new(publisher::PublisherApi::new(broker.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(
            SubscriberServiceServer::new(subscriber::SubscriberApi::new(broker.clone()))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(AdminServiceServer::new(admin::AdminApi::new(
            broker.clone(),
        )))
        .add_service(DeadLetterServiceServer::new(
            dead_letter::DeadLetterApi::new(broker.clone()),
        ));
    if let Ok(reflection) = reflection {
        router = router.add_service(reflection);
    }
    // Small frames (acks, single-event publishes, deliveries) must leave at
    // once: without TCP_NODELAY, Nagle's algorithm holds them for the peer's
    // delayed ACK (tens of milliseconds). `tcp_nodelay` on the builder only
    // applies to listeners it binds itself, so set it on the incoming stream.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(60)));
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
