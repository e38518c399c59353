//! Minimal Herald publisher: sends a batch of `OrderPlaced` events to the
//! `orders` topic with the tonic client generated from `proto/`.
//!
//! ```text
//! cargo run --example rust_publisher [-- HOST:PORT]
//! ```
//!
//! The address is the first argument, else `HERALD_ADDR`, else
//! `127.0.0.1:50051`. With `HERALD_CA` (the CA that signed the server's
//! certificate) it connects over TLS; `HERALD_TOKEN` (from `herald auth
//! token create`) is sent with every call. In your own crate, generate the
//! same client from `proto/` with `tonic-prost-build` (see this
//! repository's `build.rs`); tonic needs its `tls-ring` feature for TLS.

use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::{Event, PublishRequest};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("HERALD_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:50051".to_string());
    // TLS when HERALD_CA names the CA file (the host must be a name or
    // address on the server's certificate), plaintext otherwise.
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
    let mut publisher =
        PublisherServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            if let Some(token) = &token {
                request
                    .metadata_mut()
                    .insert("authorization", token.clone());
            }
            Ok(request)
        });

    let events = (1..=3)
        .map(|n| Event {
            // Leave `id` empty for a server-assigned UUIDv7, or set your own
            // so that a retried publish is recognised as a duplicate.
            id: String::new(),
            r#type: "OrderPlaced".to_string(),
            source: "examples/rust_publisher".to_string(),
            // The ordering key: typically the aggregate id.
            key: format!("order-{n}"),
            content_type: "application/json".to_string(),
            data: format!(r#"{{"order_id":"order-{n}","amount_cents":{}}}"#, n * 1250).into(),
            ..Default::default()
        })
        .collect();

    // One request is one all-or-nothing batch; the reply comes once it is
    // durably stored. The topic is created on first use.
    let response = publisher
        .publish(PublishRequest {
            topic: "orders".to_string(),
            events,
        })
        .await?
        .into_inner();
    for result in response.results {
        println!("published {} at offset {}", result.id, result.offset);
    }
    Ok(())
}
