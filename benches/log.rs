//! Throughput of the embedded event log: appends (single appender with
//! `fsync = never`; 32 concurrent appenders with `fsync = always`, where group
//! commit shares syncs) and sequential reads (from the files with the tail
//! cache off, and from the tail cache).
//!
//! Kept short on purpose: small sample sizes and a few seconds per bench.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald::event::Event;
use herald::storage::embedded::log::{FsyncPolicy, LogOptions, TailCacheMemory, TopicLog};
use tokio::runtime::Runtime;
use tokio_util::task::TaskTracker;

const EVENT_BYTES: usize = 256;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn event(i: u64, data: &Bytes) -> Event {
    Event {
        id: format!("0192f0c4-7d1e-7000-8000-{i:012}"),
        event_type: "OrderPlaced".into(),
        source: "bench".into(),
        key: format!("order-{}", i % 1024),
        time_us: 0,
        content_type: "application/octet-stream".into(),
        schema_version: "1".into(),
        data: data.clone(),
        attributes: Vec::new(),
    }
}

fn batch(n: u64, data: &Bytes) -> Vec<Event> {
    (0..n).map(|i| event(i, data)).collect()
}

/// A log with the default options but `fsync` and the tail cache's event
/// limit; `cache_all` lifts the cache's byte limits too, so that a read
/// bench measures reads from the cache rather than the default 16 MiB.
fn open(
    rt: &Runtime,
    dir: &Path,
    fsync: FsyncPolicy,
    tail_cache_events: usize,
    cache_all: bool,
) -> TopicLog {
    let mut opts = LogOptions {
        fsync,
        tail_cache_events,
        ..LogOptions::default()
    };
    if cache_all {
        opts.tail_cache_bytes = 1 << 30;
        opts.tail_cache_memory = TailCacheMemory::new(1 << 30);
    }
    rt.block_on(TopicLog::open(dir.to_path_buf(), opts, &TaskTracker::new()))
        .expect("open log")
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let data = Bytes::from(vec![0xab; EVENT_BYTES]);
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // One appender, batches of 100 x 256 B, fsync never. It runs in a
    // spawned task, as a request handler would; batches are built outside
    // the timed section, so only `append` is measured.
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(&rt, dir.path(), FsyncPolicy::Never, 65_536, false);
    group.throughput(Throughput::Elements(100));
    group.bench_function("batch100x256B_fsync_never", |b| {
        b.iter_custom(|iters| {
            let (log, data) = (log.clone(), data.clone());
            rt.block_on(rt.spawn(async move {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(256);
                    left -= n;
                    let batches: Vec<Vec<Event>> = (0..n).map(|_| batch(100, &data)).collect();
                    let start = Instant::now();
                    for events in batches {
                        log.append(events).await.expect("append");
                    }
                    total += start.elapsed();
                }
                total
            }))
            .expect("appender")
        });
    });
    rt.block_on(log.close()).expect("close");
    drop(dir);

    // Concurrent appenders: group commit shares one write (and, under
    // `always`, one fdatasync) among every batch queued meanwhile.
    concurrent(&rt, &mut group, 4, 100, FsyncPolicy::Never);
    concurrent(&rt, &mut group, 32, 10, FsyncPolicy::Always);
    group.finish();
}

/// `appenders` tasks appending batches of `batch_len` x 256 B until the
/// iteration count (one iteration = one batch) is reached.
fn concurrent(
    rt: &Runtime,
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    appenders: u64,
    batch_len: u64,
    fsync: FsyncPolicy,
) {
    let data = Bytes::from(vec![0xab; EVENT_BYTES]);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(rt, dir.path(), fsync, 65_536, false);
    let mut appends = 0;
    group.throughput(Throughput::Elements(batch_len));
    let name = format!("{appenders}_appenders_batch{batch_len}x256B_fsync_{fsync}");
    group.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            appends += iters;
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..appenders)
                    .map(|t| {
                        let log = log.clone();
                        let data = data.clone();
                        let mine = iters / appenders + u64::from(t < iters % appenders);
                        tokio::spawn(async move {
                            for _ in 0..mine {
                                log.append(batch(batch_len, &data)).await.expect("append");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("appender");
                }
                start.elapsed()
            })
        });
    });
    if fsync == FsyncPolicy::Always {
        let syncs = log.sync_count().max(1);
        eprintln!(
            "append/{name}: {appends} appends shared {syncs} fdatasyncs ({:.1} appends per sync)",
            appends as f64 / syncs as f64
        );
    }
    rt.block_on(log.close()).expect("close");
}

fn read(c: &mut Criterion) {
    const EVENTS: u64 = 100_000;
    let rt = runtime();
    let data = Bytes::from(vec![0xcd; EVENT_BYTES]);
    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(EVENTS));

    for (name, cache) in [
        ("sequential_100k_from_disk", 0),
        ("sequential_100k_from_cache", EVENTS as usize),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = open(&rt, dir.path(), FsyncPolicy::Never, cache, cache > 0);
        rt.block_on(async {
            for _ in 0..EVENTS / 100 {
                log.append(batch(100, &data)).await.expect("append");
            }
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut from = 0;
                let mut count = 0;
                loop {
                    let got = log.read(from, 1000, 1 << 20).expect("read");
                    let Some(last) = got.last() else { break };
                    from = last.offset + 1;
                    count += got.len();
                }
                assert_eq!(count as u64, EVENTS);
                count
            });
        });
        rt.block_on(log.close()).expect("close");
    }
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
