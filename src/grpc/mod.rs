//! The thin tonic adapter: one service per file, conversions in
//! `convert.rs`, error mapping in `status.rs`. Nothing else in the crate
//! knows `tonic::Status`.
//!
//! The transport edge: the accept loop and connection limit in `accept.rs`,
//! handshake and idle timeouts in `connection.rs`, TLS and its reload in
//! `tls.rs`, the codes of requests tonic rejects itself in `codes.rs`.
//!
//! Security at the edge: `authn.rs` authenticates each call (token or
//! client certificate) before its message is decoded; each handler then
//! authorizes it by the table in `guard.rs` before it calls the broker, and
//! logs management actions in `audit.rs`. The conversion step of each
//! handler is in `requests.rs`.

pub mod accept;
pub mod admin;
pub mod audit;
pub mod authn;
pub mod codes;
pub mod connection;
mod consume;
pub mod convert;
pub mod dead_letter;
pub mod guard;
mod publish_stream;
pub mod publisher;
pub mod requests;
pub mod status;
pub mod subscriber;
pub mod tls;
pub mod visible;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::AuthState;
use crate::broker::Broker;
use crate::proto::admin_service_server::AdminServiceServer;
use crate::proto::dead_letter_service_server::DeadLetterServiceServer;
use crate::proto::publisher_service_server::PublisherServiceServer;
use crate::proto::subscriber_service_server::SubscriberServiceServer;

/// Connection limits and timeouts of the server (`[server]` in the
/// configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// Most connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Time a new connection has to send the HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Time with no open call before a connection is closed; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Interval of the server's HTTP/2 PINGs; `None` = no PINGs.
    pub keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
}

/// What protects the server: TLS, authentication, and whether reflection
/// is served.
#[derive(Debug, Clone)]
pub struct Security {
    /// TLS of every connection, when on.
    pub tls: Option<Arc<tls::ServerTls>>,
    /// The auth file in force, when `auth.mode = "required"`.
    pub auth: Option<Arc<AuthState>>,
    /// Serve gRPC server reflection.
    pub reflection: bool,
}

impl Security {
    /// No TLS, no authentication, reflection on: the loopback default.
    pub fn open() -> Security {
        Security {
            tls: None,
            auth: None,
            reflection: true,
        }
    }
}

/// Keeps the health service in step with storage: every Herald service
/// (and the server as a whole, `""`) is SERVING while storage takes writes
/// and NOT_SERVING while it refuses them.
async fn follow_health(
    reporter: tonic_health::server::HealthReporter,
    mut healthy: tokio::sync::watch::Receiver<bool>,
) {
    while healthy.changed().await.is_ok() {
        let now = *healthy.borrow_and_update();
        if !now {
            tracing::warn!("health: NOT_SERVING (storage refuses writes)");
        }
        set_health(&reporter, now).await;
    }
}

async fn set_health(reporter: &tonic_health::server::HealthReporter, healthy: bool) {
    use tonic::server::NamedService;
    use tonic_health::ServingStatus;
    let status = if healthy {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in [
        "",
        <PublisherServiceServer<publisher::PublisherApi> as NamedService>::NAME,
        <SubscriberServiceServer<subscriber::SubscriberApi> as NamedService>::NAME,
        <AdminServiceServer<admin::AdminApi> as NamedService>::NAME,
        <DeadLetterServiceServer<dead_letter::DeadLetterApi> as NamedService>::NAME,
    ] {
        reporter.set_service_status(name, status).await;
    }
}

/// Serves every Herald service plus health (and reflection, unless turned
/// off) on `listener`, with `security`, until `shutdown` completes, then
/// waits for open calls to finish.
///
/// # Errors
/// The transport failed.
pub async fn serve(
    broker: Broker,
    listener: TcpListener,
    transport: TransportOptions,
    security: Security,
    pubsub: Option<crate::pubsub::Options>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // Leave headroom over the request limit so oversized batches reach the
    // broker's own check and get a precise INVALID_ARGUMENT.
    let max_message = broker.config().limits.max_request_bytes + (1 << 20);
    let (health, health_service) = tonic_health::server::health_reporter();
    let mut healthy = broker.health();
    let now = *healthy.borrow_and_update();
    set_health(&health, now).await;
    tokio::spawn(follow_health(health, healthy));
    // Reflection in both versions: v1, and v1alpha for the tools that speak
    // only that (grpcio-reflection, Postman, older grpcurl and evans).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                crate::proto::google::pubsub::v1::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection = reflection()
        .build_v1()
        .and_then(|v1| Ok((v1, reflection().build_v1alpha()?)))
        .map_err(|e| {
            tracing::error!(error = %e, "reflection descriptors are invalid");
            e
        });
    let guard = guard::Guard::new(broker.clone(), security.auth.is_some());
    let mut router = tonic::transport::Server::builder()
        .http2_keepalive_interval(transport.keepalive_interval)
        .http2_keepalive_timeout(Some(transport.keepalive_timeout))
        .layer(connection::TrackCallsLayer)
        .layer(codes::EdgeCodesLayer)
        .layer(authn::AuthnLayer::new(security.auth.clone()))
        .add_service(health_service)
        .add_service(
            PublisherServiceServer::new(publisher::PublisherApi::new(
                broker.clone(),
                guard.clone(),
            ))
            .max_decoding_message_size(max_message),
        )
        .add_service(
            SubscriberServiceServer::new(subscriber::SubscriberApi::new(
                broker.clone(),
                guard.clone(),
            ))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
        )
        .add_service(AdminServiceServer::new(admin::AdminApi::new(
            broker.clone(),
            guard.clone(),
        )))
        .add_service(DeadLetterServiceServer::new(
            dead_letter::DeadLetterApi::new(broker.clone(), guard.clone()),
        ));
    if let Some(options) = pubsub {
        use crate::proto::google::pubsub::v1::publisher_server::PublisherServer;
        use crate::proto::google::pubsub::v1::subscriber_server::SubscriberServer;
        let front = crate::pubsub::Front::new(broker.clone(), guard, &options);
        router = router
            .add_service(
                PublisherServer::new(crate::pubsub::publisher::PublisherApi::new(front.clone()))
                    .max_decoding_message_size(max_message),
            )
            .add_service(
                SubscriberServer::new(crate::pubsub::subscriber::SubscriberApi::new(front))
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(usize::MAX),
            );
    }
    if security.reflection
        && let Ok((v1, v1alpha)) = reflection
    {
        router = router.add_service(v1).add_service(v1alpha);
    }
    // `tcp_nodelay` on the builder only applies to listeners it binds
    // itself: `Incoming` sets TCP_NODELAY (see `accept.rs`).
    let stopping = CancellationToken::new();
    let settings = connection::ConnSettings {
        handshake_timeout: transport.handshake_timeout,
        idle_timeout: transport.idle_timeout,
        stopping: stopping.clone(),
    };
    let incoming = accept::Incoming::new(
        listener,
        security.tls.clone(),
        transport.max_connections,
        settings,
    );
    let shutdown = async move {
        shutdown.await;
        stopping.cancel();
    };
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
