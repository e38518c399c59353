//! `herald bench`: the consuming side. A consumer drains a group through one
//! of the two APIs: the Consume stream (acks on the stream, each confirmed;
//! latency from sending an ack to its confirmation), or Subscribe with
//! coalesced, pipelined unary Acks (latency per Ack call). The `consume`
//! scenario measures either or both on backlogs of the same size.
//!
//! CLI layer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::{BenchArgs, Row, Target, histogram, progress, publish_backlog, row};
use crate::cli::client::connect::Transport;
use crate::proto::admin_service_client::AdminServiceClient;
use crate::proto::consume_request::Kind;
use crate::proto::subscriber_service_client::SubscriberServiceClient;
use crate::proto::{self};

/// Which consuming API the bench uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsumeApi {
    /// The Consume stream (acks on the stream).
    Consume,
    /// Subscribe with unary Ack calls.
    Subscribe,
    /// Both, one after the other (e2e then uses Consume).
    Both,
}

impl ConsumeApi {
    /// The APIs the `consume` scenario measures, in order.
    pub(super) fn each(self) -> &'static [ConsumeApi] {
        match self {
            ConsumeApi::Consume => &[ConsumeApi::Consume],
            ConsumeApi::Subscribe => &[ConsumeApi::Subscribe],
            ConsumeApi::Both => &[ConsumeApi::Consume, ConsumeApi::Subscribe],
        }
    }

    /// The API e2e uses.
    pub(super) fn for_e2e(self) -> ConsumeApi {
        match self {
            ConsumeApi::Subscribe => ConsumeApi::Subscribe,
            _ => ConsumeApi::Consume,
        }
    }

    /// Its row in the table, and what its latency measures.
    fn label(self) -> (&'static str, &'static str) {
        match self {
            ConsumeApi::Subscribe => ("subscribe", "ack call"),
            _ => ("consume", "ack→confirmation"),
        }
    }
}

/// Ack calls a Subscribe consumer keeps in flight.
const ACKS_IN_FLIGHT: usize = 4;
/// Most ack ids per Ack call or ack request (the server's limit).
const MAX_ACKS_PER_CALL: usize = 10_000;
/// Requests a Consume consumer queues for its stream.
const REQUESTS_QUEUED: usize = 1024;

pub(super) async fn create_group(
    channel: Transport,
    topic: &str,
    group: &str,
    earliest: bool,
    ordered: bool,
) -> anyhow::Result<()> {
    let mut admin = AdminServiceClient::new(channel);
    let edge = if earliest {
        proto::Edge::Earliest
    } else {
        proto::Edge::Latest
    };
    admin
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: topic.into(),
                name: group.into(),
                start_position: Some(proto::Position {
                    kind: Some(proto::position::Kind::Edge(edge as i32)),
                }),
                ordered: Some(ordered),
                ..Default::default()
            }),
        })
        .await
        .context("creating the bench group")?;
    Ok(())
}

/// What a drain is about: where, how much, and what to call per batch.
pub(super) struct Drain<'a, F> {
    pub topic: &'a str,
    pub group: &'a str,
    /// Acks to wait for.
    pub total: u64,
    /// Called with each batch and its receipt time.
    pub on_batch: F,
    pub bar: &'a ProgressBar,
}

/// Consumes and acks everything through `api`; ends after `total` acks
/// succeeded. Returns the ack latencies and the elapsed time.
pub(super) async fn drain<F>(
    api: ConsumeApi,
    args: &BenchArgs,
    channel: Transport,
    d: Drain<'_, F>,
) -> anyhow::Result<(Histogram<u64>, Duration)>
where
    F: FnMut(&[proto::Delivery], Instant),
{
    match api {
        ConsumeApi::Subscribe => drain_subscribe(args, channel, d).await,
        _ => drain_consume(args, channel, d).await,
    }
}

/// Subscribe, with acks coalesced the way client libraries do it: ids wait
/// while ACKS_IN_FLIGHT calls are out and then go together, so acking adds
/// no delay but does not cost one call per delivery either.
async fn drain_subscribe<F>(
    args: &BenchArgs,
    channel: Transport,
    mut d: Drain<'_, F>,
) -> anyhow::Result<(Histogram<u64>, Duration)>
where
    F: FnMut(&[proto::Delivery], Instant),
{
    let mut sub =
        SubscriberServiceClient::new(channel.clone()).max_decoding_message_size(256 << 20);
    let mut stream = sub
        .subscribe(proto::SubscribeRequest {
            topic: d.topic.into(),
            group: d.group.into(),
            consumer: "bench".into(),
            max_in_flight: Some(args.max_in_flight),
        })
        .await
        .context("subscribing")?
        .into_inner();
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<anyhow::Result<(u64, u64)>>();
    let start = Instant::now();
    let mut received = 0u64;
    let mut acked = 0u64;
    let mut h = histogram();
    let ack_client = SubscriberServiceClient::new(channel);
    let mut pending: Vec<String> = Vec::new();
    let mut in_flight = 0usize;
    while acked < d.total {
        while in_flight < ACKS_IN_FLIGHT && !pending.is_empty() {
            let take = pending.len().min(MAX_ACKS_PER_CALL);
            let ids: Vec<String> = pending.drain(..take).collect();
            let mut client = ack_client.clone();
            let tx = lat_tx.clone();
            in_flight += 1;
            tokio::spawn(async move {
                let t = Instant::now();
                let r = client.ack(proto::AckRequest { ack_ids: ids }).await;
                let _ = tx.send(match r {
                    Ok(resp) => Ok((
                        u64::from(resp.into_inner().acked_count),
                        t.elapsed().as_micros().max(1) as u64,
                    )),
                    Err(e) => Err(anyhow::anyhow!("ack failed: {e}")),
                });
            });
        }
        tokio::select! {
            msg = stream.next(), if received < d.total => {
                let batch = msg.context("subscription ended early")?.context("subscription failed")?;
                (d.on_batch)(&batch.deliveries, Instant::now());
                received += batch.deliveries.len() as u64;
                pending.extend(batch.deliveries.into_iter().map(|d| d.ack_id));
            }
            lat = lat_rx.recv() => {
                let (n, us) = lat.context("ack tasks ended")??;
                let _ = h.record(us);
                in_flight -= 1;
                acked += n;
                d.bar.inc(n);
            }
        }
    }
    Ok((h, start.elapsed()))
}

/// One Consume stream: each batch is acked on the stream as it arrives,
/// with a confirmation asked for (what a careful client does), so acked
/// counts only acks the server confirmed.
async fn drain_consume<F>(
    args: &BenchArgs,
    channel: Transport,
    mut d: Drain<'_, F>,
) -> anyhow::Result<(Histogram<u64>, Duration)>
where
    F: FnMut(&[proto::Delivery], Instant),
{
    let mut client = SubscriberServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let (requests, rx) = mpsc::channel(REQUESTS_QUEUED);
    let open = proto::ConsumeOpen {
        topic: d.topic.into(),
        group: d.group.into(),
        consumer: "bench".into(),
        max_in_flight: Some(args.max_in_flight),
        max_batch: args.max_batch,
        ..Default::default()
    };
    requests
        .send(proto::ConsumeRequest {
            kind: Some(Kind::Open(open)),
        })
        .await?;
    let mut stream = client
        .consume(ReceiverStream::new(rx))
        .await
        .context("opening a Consume stream")?
        .into_inner();
    let start = Instant::now();
    let mut h = histogram();
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut next_id = 0u64;
    let mut acked = 0u64;
    let mut pending: Vec<String> = Vec::new();
    while acked < d.total {
        // Coalesced as with Subscribe: ids wait while ACKS_IN_FLIGHT acks
        // are unconfirmed, then go together.
        while sent_at.len() < ACKS_IN_FLIGHT && !pending.is_empty() {
            let take = pending.len().min(MAX_ACKS_PER_CALL);
            next_id += 1;
            sent_at.insert(next_id, Instant::now());
            let ack = proto::ConsumeAck {
                ack_ids: pending.drain(..take).collect(),
                request_id: next_id,
                confirm: true,
            };
            let request = proto::ConsumeRequest {
                kind: Some(Kind::Ack(ack)),
            };
            if requests.send(request).await.is_err() {
                bail!("Consume stream ended early");
            }
        }
        let response = stream
            .message()
            .await
            .context("Consume stream failed")?
            .context("Consume stream ended early")?;
        if let Some(c) = response.confirmation {
            if let Some(at) = sent_at.remove(&c.request_id) {
                let _ = h.record(at.elapsed().as_micros().max(1) as u64);
            }
            let ok = c
                .results
                .iter()
                .filter(|r| r.outcome == proto::LeaseOutcome::Ok as i32)
                .count() as u64;
            acked += ok;
            d.bar.inc(ok);
        }
        if !response.deliveries.is_empty() {
            (d.on_batch)(&response.deliveries, Instant::now());
            pending.extend(response.deliveries.into_iter().map(|d| d.ack_id));
        }
    }
    let elapsed = start.elapsed();
    // Closing our side ends the stream with OK.
    drop(requests);
    while let Some(r) = stream
        .message()
        .await
        .context("closing the Consume stream")?
    {
        drop(r);
    }
    Ok((h, elapsed))
}

/// The `consume` scenario for each API asked for: a backlog of
/// `--events`, drained through a group of its own.
pub(super) async fn consume(
    args: &BenchArgs,
    target: &Target,
    channel: Transport,
    run_id: &str,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &api in args.consume_api.each() {
        let (name, latency_of) = api.label();
        let topic = format!("bench-{name}-{run_id}");
        let bar = progress(args.events, "prepare", args.json);
        publish_backlog(args, channel.clone(), &topic, &bar).await?;
        bar.finish_and_clear();
        create_group(channel.clone(), &topic, "bench", true, args.ordered).await?;
        let bar = progress(args.events, name, args.json);
        let drained = Drain {
            topic: &topic,
            group: "bench",
            total: args.events,
            on_batch: |_: &[proto::Delivery], _| {},
            bar: &bar,
        };
        let (h, elapsed) = drain(api, args, channel.clone(), drained).await?;
        bar.finish_and_clear();
        rows.push(row(
            name,
            target.mode,
            args.events,
            elapsed,
            args.payload,
            latency_of,
            &h,
        ));
    }
    Ok(rows)
}
