//! Minimal Herald consumer: joins the `billing` group of the `orders` topic
//! over one Consume stream, prints every event and acknowledges it on the
//! same stream. Stop it with Ctrl-C.
//!
//! ```text
//! cargo run --example rust_consumer [-- HOST:PORT]
//! ```
//!
//! The address is the first argument, else `HERALD_ADDR`, else
//! `127.0.0.1:50051`. With `HERALD_CA` (the CA that signed the server's
//! certificate) it connects over TLS; `HERALD_TOKEN` (from `herald auth
//! token create`) is sent with every call.

use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::consume_request::Kind;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use herald::proto::{
    ConsumeAck, ConsumeOpen, ConsumeRequest, CreateGroupRequest, Edge, Group, Position, position,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("HERALD_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:50051".to_string());
    // One connection shared by both clients: TLS when HERALD_CA names the
    // CA file (the host must be on the server's certificate).
    let channel = match std::env::var("HERALD_CA") {
        Ok(ca) => {
            let tls =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca)?));
            Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls)?
        }
        Err(_) => Endpoint::from_shared(format!("http://{addr}"))?,
    }
    .connect()
    .await?;
    // The bearer token goes in the `authorization` metadata of every call.
    let token = std::env::var("HERALD_TOKEN")
        .ok()
        .map(|t| MetadataValue::try_from(format!("Bearer {t}")))
        .transpose()?;
    let with_token = move |mut request: tonic::Request<()>| {
        if let Some(token) = &token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    };
    let mut admin = AdminServiceClient::with_interceptor(channel.clone(), with_token.clone());
    let mut subscriber = SubscriberServiceClient::with_interceptor(channel, with_token);

    // Subscribe alone would create the group at the end of the topic (only
    // new events). Create it first to start from the earliest event; on later
    // runs it already exists and keeps its progress.
    let group = Group {
        topic: "orders".to_string(),
        name: "billing".to_string(),
        start_position: Some(Position {
            kind: Some(position::Kind::Edge(Edge::Earliest.into())),
        }),
        ..Default::default()
    };
    match admin
        .create_group(CreateGroupRequest { group: Some(group) })
        .await
    {
        Ok(_) => println!("created group billing"),
        Err(status) if status.code() == Code::AlreadyExists => {}
        Err(status) => return Err(status.into()),
    }

    // One bidirectional stream: the first request opens the subscription,
    // later ones ack deliveries (no round trip each). The server keeps up to
    // max_in_flight deliveries out, in batches of at most max_batch.
    let (requests, outgoing) = mpsc::channel(16);
    requests
        .send(ConsumeRequest {
            kind: Some(Kind::Open(ConsumeOpen {
                topic: "orders".to_string(),
                group: "billing".to_string(),
                consumer: "rust-example".to_string(),
                max_in_flight: Some(100),
                max_batch: Some(20),
                ..Default::default()
            })),
        })
        .await?;
    let mut stream = subscriber
        .consume(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    println!("waiting for events on orders/billing at {addr}");
    while let Some(response) = stream.message().await? {
        if response.deliveries.is_empty() {
            continue;
        }
        let mut ack_ids = Vec::new();
        for delivery in response.deliveries {
            let event = delivery.event.unwrap_or_default();
            println!(
                "{} #{} key={} attempt={}: {}",
                event.r#type,
                event.offset,
                event.key,
                delivery.delivery_attempt,
                String::from_utf8_lossy(&event.data)
            );
            // Handle the event here, then acknowledge it. An event that is
            // not acked before the group's ack deadline is delivered again.
            ack_ids.push(delivery.ack_id);
        }
        let ack = ConsumeAck {
            ack_ids,
            ..Default::default()
        };
        requests
            .send(ConsumeRequest {
                kind: Some(Kind::Ack(ack)),
            })
            .await?;
    }
    Ok(())
}
