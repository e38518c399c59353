//! `herald bench --scenario e2e`: latency at a fixed rate, one event per
//! publish request, from the publish call to the consumer's receipt (and to
//! the publisher's durable reply).
//!
//! CLI layer.

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::{BenchArgs, Row, Target, consume, event, histogram, progress, row};
use crate::cli::client::connect::{Transport, connect};
use crate::proto::publisher_service_client::PublisherServiceClient;
use crate::proto::{self, PublishStreamRequest};

pub(super) async fn e2e(
    args: &BenchArgs,
    target: &Target,
    channel: Transport,
    topic: &str,
) -> anyhow::Result<Vec<Row>> {
    let total = args.rate * args.duration;
    if total == 0 {
        bail!("--rate and --duration must be positive");
    }
    consume::create_group(channel.clone(), topic, "bench-e2e", false, args.ordered).await?;
    let origin = Instant::now();
    let payload_len = args.payload.max(8);
    // The publisher gets its own connection, as a separate service would.
    let publish_channel = connect(&target.url, &target.auth, None).await?;
    let publisher = {
        let mut client = PublisherServiceClient::new(publish_channel);
        let topic = topic.to_string();
        let (rate, keys) = (args.rate, args.keys);
        tokio::spawn(async move {
            let (tx, rx) = mpsc::channel::<PublishStreamRequest>(1024);
            let mut responses = client
                .publish_stream(ReceiverStream::new(rx))
                .await?
                .into_inner();
            let drain = tokio::spawn(async move {
                let mut h = histogram();
                while let Some(r) = responses.next().await {
                    let r = r?;
                    if r.error_code != 0 {
                        anyhow::bail!("publish failed: {}", r.error_message);
                    }
                    // request_id carries the send time (ns since origin).
                    let now = origin.elapsed().as_nanos() as u64;
                    let _ = h.record((now.saturating_sub(r.request_id) / 1000).max(1));
                }
                Ok::<Histogram<u64>, anyhow::Error>(h)
            });
            // Let the consumer's stream settle first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let start = Instant::now();
            for i in 0..total {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                tokio::time::sleep_until(due.into()).await;
                let mut data = vec![0u8; payload_len];
                let sent = origin.elapsed().as_nanos() as u64;
                data[..8].copy_from_slice(&sent.to_le_bytes());
                let req = PublishStreamRequest {
                    topic: topic.clone(),
                    events: vec![proto::Event {
                        data: Bytes::from(data),
                        ..event(&Bytes::new(), i, keys)
                    }],
                    request_id: sent,
                };
                if tx.send(req).await.is_err() {
                    break;
                }
            }
            drop(tx);
            drain.await?
        })
    };
    let mut h = histogram();
    let bar = progress(total, "e2e", args.json);
    let on_batch = |deliveries: &[proto::Delivery], now: Instant| {
        let now_ns = now.duration_since(origin).as_nanos() as u64;
        for d in deliveries {
            if let Some(e) = &d.event
                && e.data.len() >= 8
            {
                let mut b = [0u8; 8];
                b.copy_from_slice(&e.data[..8]);
                let sent = u64::from_le_bytes(b);
                let _ = h.record((now_ns.saturating_sub(sent) / 1000).max(1));
            }
        }
    };
    let drained = consume::Drain {
        topic,
        group: "bench-e2e",
        total,
        on_batch,
        bar: &bar,
    };
    let api = args.consume_api.for_e2e();
    let (_, elapsed) = consume::drain(api, args, channel, drained).await?;
    bar.finish_and_clear();
    let publish_h = publisher.await??;
    Ok(vec![
        row(
            "e2e",
            target.mode,
            total,
            elapsed,
            payload_len,
            "publish→receipt",
            &h,
        ),
        row(
            "e2e-pub",
            target.mode,
            total,
            elapsed,
            payload_len,
            "publish→durable reply",
            &publish_h,
        ),
    ])
}
