//! `herald bench`: end-to-end measurements over real gRPC.
//!
//! - `publish`: batches over PublishStream with many requests in flight;
//!   latency is per batch (send → durable response).
//! - `consume`: drain a pre-published backlog through one group, with the
//!   Consume stream (acks on the stream; latency from an ack to its
//!   confirmation) and/or Subscribe + batched, pipelined Ack calls (latency
//!   per call); see `bench/consume.rs`.
//! - `e2e`: publish at a fixed rate, one event per request; latency is
//!   publish call → consumer receipt, per event (consumed with Consume,
//!   or Subscribe with `--consume-api subscribe`).
//!
//! Without `--server` it starts its own server on a temporary directory
//! (fsync per `--fsync`, default `always`), in this process: plain, or with
//! TLS and token authentication (`--secure`), or both one after the other
//! with a comparison (`--compare`, see `bench/secure.rs`). With `--server`
//! it takes the client commands' `--tls-ca`, `--tls-cert`/`--tls-key` and
//! `--token`.

mod consume;
mod disk;
mod e2e;
mod secure;

pub use consume::ConsumeApi;

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::connect::{ClientAuth, Transport, connect, server_url};
use crate::config::Config;
use crate::proto::publisher_service_client::PublisherServiceClient;
use crate::proto::{self, PublishStreamRequest};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Which measurement to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// publish, consume and e2e.
    All,
    /// Pipelined batch publishing.
    Publish,
    /// Draining a backlog through one group.
    Consume,
    /// Latency at a fixed rate.
    E2e,
}

/// Flags of `herald bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Server to measure, e.g. http://127.0.0.1:50051. Default: start one on a temp dir.
    #[arg(long)]
    pub server: Option<String>,
    /// Scenario.
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: Scenario,
    /// Events for publish and consume.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    /// Events per publish request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Publish requests in flight on the stream.
    #[arg(long, default_value_t = 64)]
    pub pipeline: usize,
    /// Consumer max_in_flight for consume and e2e.
    #[arg(long, default_value_t = 5_000)]
    pub max_in_flight: u32,
    /// Consuming API of consume (both: one row each) and e2e (both: Consume).
    #[arg(long, value_enum, default_value = "both")]
    pub consume_api: ConsumeApi,
    /// Consume stream: most deliveries per batch [default: the server's batching].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: Option<u32>,
    /// e2e publish rate, events per second.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// e2e duration, seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// With --server and the e2e scenario: a directory on the server's data
    /// disk, where a bare write+fdatasync loop measures the disk's floor
    /// (with bench's own server: its data directory, always).
    #[arg(long, value_name = "DIR", requires = "server")]
    pub disk_probe_dir: Option<std::path::PathBuf>,
    /// fsync policy of the server bench starts itself.
    #[arg(long, default_value = "always")]
    pub fsync: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Distinct event keys (event i gets key i mod N); 0: every event its own key.
    #[arg(long, default_value_t = 0)]
    pub keys: u64,
    /// Create the consume and e2e groups with per-key ordering.
    #[arg(long)]
    pub ordered: bool,
    /// Run the bench's own server with TLS and token authentication (a
    /// throwaway CA and a principal allowed publish, consume and manage).
    #[arg(long, conflicts_with = "server")]
    pub secure: bool,
    /// Run every scenario on a plain server and on a TLS + token one, and
    /// compare their throughput.
    #[arg(long, conflicts_with_all = ["server", "secure"])]
    pub compare: bool,
    /// With --compare: rounds of (plain, secure); the comparison takes each side's median.
    #[arg(long, default_value_t = 1, requires = "compare")]
    pub rounds: u32,
}

/// How the measured server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The bench's own server, plaintext, no authentication.
    Plain,
    /// The bench's own server, TLS and a bearer token on every call.
    TlsToken,
    /// A server given with --server, as the flags say.
    Server,
}

/// One result row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// How the server was reached.
    pub transport: Mode,
    /// Events measured.
    pub events: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Throughput.
    pub events_per_sec: f64,
    /// Payload throughput, MB/s (10^6 bytes).
    pub mb_per_sec: f64,
    /// What the percentiles measure.
    pub latency_of: String,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!("3 digits is valid")))
}

fn row(
    scenario: &str,
    transport: Mode,
    events: u64,
    elapsed: Duration,
    payload: usize,
    latency_of: &str,
    h: &Histogram<u64>,
) -> Row {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Row {
        scenario: scenario.into(),
        transport,
        events,
        seconds: secs,
        events_per_sec: events as f64 / secs,
        mb_per_sec: events as f64 * payload as f64 / secs / 1e6,
        latency_of: latency_of.into(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1000.0,
    }
}

fn progress(len: u64, label: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>8} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

fn event(payload: &Bytes, i: u64, keys: u64) -> proto::Event {
    let key = if keys > 0 { i % keys } else { i };
    proto::Event {
        r#type: "BenchEvent".into(),
        source: "herald-bench".into(),
        key: format!("k{key}"),
        data: payload.clone(),
        ..Default::default()
    }
}

/// Where the measured server is and how to reach it.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    auth: ClientAuth,
    mode: Mode,
}

/// Runs the benchmark and prints the results.
///
/// # Errors
/// The server cannot be started or reached, or a call fails.
pub async fn run(args: BenchArgs, auth: ClientAuth) -> anyhow::Result<()> {
    if args.batch == 0 || args.events == 0 || args.pipeline == 0 {
        bail!("--events, --batch and --pipeline must be positive");
    }
    if args.rounds == 0 {
        bail!("--rounds must be positive");
    }
    let modes: &[Mode] = match (&args.server, args.compare, args.secure) {
        (Some(_), ..) => &[Mode::Server],
        (None, true, _) => &[Mode::Plain, Mode::TlsToken],
        (None, false, true) => &[Mode::TlsToken],
        (None, false, false) => &[Mode::Plain],
    };
    let rounds = if args.compare { args.rounds } else { 1 };
    let mut rows = Vec::new();
    for _ in 0..rounds {
        for &mode in modes {
            rows.extend(run_once(&args, &auth, mode).await?);
        }
    }
    if args.compare {
        return secure::print_comparison(&rows, &args);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows, &args);
    }
    Ok(())
}

/// The bench's own server on a temporary directory, tuned by `HERALD_*`
/// variables like `serve`.
async fn own_config(args: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<Config> {
    let mut config = Config::load(None, figment::Figment::new())?;
    config.listen = "127.0.0.1:0".parse()?;
    config.data_dir = dir.to_path_buf();
    config.storage.fsync = args
        .fsync
        .parse()
        .map_err(|e| anyhow::anyhow!("--fsync: {e}"))?;
    config.limits.max_in_flight = config.limits.max_in_flight.max(args.max_in_flight);
    config.http.enabled = false;
    Ok(config)
}

/// Runs the scenarios once against a server reached in `mode`.
async fn run_once(args: &BenchArgs, auth: &ClientAuth, mode: Mode) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let (target, own) = match &args.server {
        Some(url) => {
            let target = Target {
                url: server_url(url, auth)?,
                auth: auth.clone(),
                mode,
            };
            (target, None)
        }
        None => {
            let mut config = own_config(args, &dir.path().join("data")).await?;
            let client = if mode == Mode::TlsToken {
                secure::secure(&mut config, dir.path())?
            } else {
                ClientAuth::default()
            };
            let server = crate::cli::serve::start(config).await?;
            let scheme = if mode == Mode::TlsToken {
                "https"
            } else {
                "http"
            };
            let target = Target {
                url: format!("{scheme}://{}", server.addr),
                auth: client,
                mode,
            };
            (target, Some(server))
        }
    };
    let url = &target.url;
    let channel = connect(url, &target.auth, None)
        .await
        .with_context(|| format!("connecting to {url}; is `herald serve` running?"))?;
    let mut rows = Vec::new();
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    if matches!(args.scenario, Scenario::All | Scenario::Publish) {
        let topic = format!("bench-publish-{run_id}");
        rows.push(publish(args, &target, channel.clone(), &topic).await?);
    }
    if matches!(args.scenario, Scenario::All | Scenario::Consume) {
        rows.extend(consume::consume(args, &target, channel.clone(), &run_id).await?);
    }
    if matches!(args.scenario, Scenario::All | Scenario::E2e) {
        let probe_dir = match &args.disk_probe_dir {
            Some(d) => Some(d.clone()),
            None => own.is_some().then(|| dir.path().join("data")),
        };
        if let Some(d) = probe_dir {
            rows.push(disk::probe(&d, args.payload.max(8), mode).await?);
        }
        let topic = format!("bench-e2e-{run_id}");
        rows.extend(e2e::e2e(args, &target, channel.clone(), &topic).await?);
    }
    if let Some(server) = own {
        server.stop().await?;
    }
    Ok(rows)
}

fn print_table(rows: &[Row], args: &BenchArgs) {
    println!(
        "herald bench: {} B payloads, batch {}, fsync {}, {} keys, {}{}",
        args.payload,
        args.batch,
        args.fsync,
        if args.keys == 0 {
            "unique".to_string()
        } else {
            args.keys.to_string()
        },
        if args.ordered {
            "ordered groups"
        } else {
            "unordered groups"
        },
        match (&args.server, rows.first().map(|r| r.transport)) {
            (Some(s), _) => format!(", server {s}"),
            (None, Some(Mode::TlsToken)) => ", own server with TLS + token".to_string(),
            _ => ", own server, plaintext".to_string(),
        }
    );
    println!(
        "{:<9} {:>9} {:>8} {:>12} {:>8} {:>9} {:>9} {:>9} {:>9}  latency of",
        "scenario",
        "events",
        "seconds",
        "events/s",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "max ms"
    );
    for r in rows {
        println!(
            "{:<9} {:>9} {:>8.2} {:>12.0} {:>8.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3}  {}",
            r.scenario,
            r.events,
            r.seconds,
            r.events_per_sec,
            r.mb_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            r.latency_of
        );
    }
}

/// Publishes `events` in batches over one PublishStream with `pipeline`
/// requests in flight; returns per-request latencies (µs) and the elapsed time.
async fn publish_backlog(
    args: &BenchArgs,
    channel: Transport,
    topic: &str,
    bar: &ProgressBar,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let payload = Bytes::from(vec![b'x'; args.payload]);
    let mut client = PublisherServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let requests = args.events.div_ceil(args.batch as u64);
    let (tx, rx) = mpsc::channel::<PublishStreamRequest>(args.pipeline);
    let permits = Arc::new(Semaphore::new(args.pipeline));
    let sent_at = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        u64,
        Instant,
    >::new()));
    let start = Instant::now();
    let mut responses = client
        .publish_stream(ReceiverStream::new(rx))
        .await
        .context("opening PublishStream")?
        .into_inner();
    let producer = {
        let permits = permits.clone();
        let sent_at = sent_at.clone();
        let topic = topic.to_string();
        let (events, batch, keys) = (args.events, args.batch as u64, args.keys);
        tokio::spawn(async move {
            for r in 0..requests {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                permit.forget();
                let n = batch.min(events - r * batch);
                let req = PublishStreamRequest {
                    topic: topic.clone(),
                    events: (0..n)
                        .map(|i| event(&payload, r * batch + i, keys))
                        .collect(),
                    request_id: r,
                };
                sent_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(r, Instant::now());
                if tx.send(req).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut h = histogram();
    let mut done = 0u64;
    while done < requests {
        let resp = responses
            .next()
            .await
            .context("PublishStream ended early")?
            .context("PublishStream failed")?;
        if resp.error_code != 0 {
            bail!(
                "publish failed: {} (code {})",
                resp.error_message,
                resp.error_code
            );
        }
        let at = sent_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&resp.request_id);
        if let Some(at) = at {
            let _ = h.record(at.elapsed().as_micros().max(1) as u64);
        }
        bar.inc(resp.results.len() as u64);
        permits.add_permits(1);
        done += 1;
    }
    let elapsed = start.elapsed();
    producer.await?;
    Ok((h, elapsed))
}

async fn publish(
    args: &BenchArgs,
    target: &Target,
    channel: Transport,
    topic: &str,
) -> anyhow::Result<Row> {
    let bar = progress(args.events, "publish", args.json);
    let (h, elapsed) = publish_backlog(args, channel, topic, &bar).await?;
    bar.finish_and_clear();
    Ok(row(
        "publish",
        target.mode,
        args.events,
        elapsed,
        args.payload,
        "batch",
        &h,
    ))
}
