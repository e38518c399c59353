//! Retention of the embedded event log: whole sealed segments are deleted by
//! size and by age (never the active one), the start offset moves and stays
//! moved across a restart, reads below it fail with `OutOfRange`, readers
//! running during a deletion keep working, and the dedup index forgets
//! originals that retention deleted.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use herald::event::{Event, StoredEvent};
use herald::storage::StorageError;
use herald::storage::embedded::log::{FsyncPolicy, LogOptions, TopicLog};
use tokio_util::task::TaskTracker;

const SEGMENT_BYTES: u64 = 4096;

/// Event `i` of a test: its id and payload say which it is.
fn event(i: u64) -> Event {
    Event {
        id: format!("ev-{i}"),
        event_type: "Retained".into(),
        source: "storage_retention".into(),
        key: format!("key-{}", i % 5),
        data: Bytes::from(format!("payload {i} {}", "r".repeat(100))),
        ..Event::default()
    }
}

/// Small segments, reads from the files; the periodic task is off unless a
/// test turns it on. No runway: the tests compare file sizes with the
/// log's byte counts while it is open.
fn options() -> LogOptions {
    LogOptions {
        runway_bytes: 0,
        segment_bytes: SEGMENT_BYTES,
        index_interval_bytes: 512,
        fsync: FsyncPolicy::Never,
        tail_cache_events: 0,
        retention_interval: Duration::ZERO,
        ..LogOptions::default()
    }
}

/// As [`options`], with the tail cache holding every event of a test.
fn cached() -> LogOptions {
    LogOptions {
        tail_cache_events: 10_000,
        ..options()
    }
}

async fn open(dir: &Path, opts: LogOptions) -> TopicLog {
    TopicLog::open(dir.to_path_buf(), opts, &TaskTracker::new())
        .await
        .expect("open log")
}

/// Appends events `from..to` in batches of 4.
async fn append_range(log: &TopicLog, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let batch: Vec<Event> = (i..to.min(i + 4)).map(event).collect();
        let appended = log.append(batch).await.expect("append");
        assert_eq!(appended.offsets[0], i);
        i = to.min(i + 4);
    }
}

/// Segment files on disk: base offset → bytes of the `.log` file.
fn segments_on_disk(dir: &Path) -> BTreeMap<u64, u64> {
    std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry"))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let base = name.strip_suffix(".log")?.parse().ok()?;
            Some((base, e.metadata().ok()?.len()))
        })
        .collect()
}

fn index_exists(dir: &Path, base: u64) -> bool {
    dir.join(format!("{base:020}.idx")).exists()
}

/// Reads `[from, end)` and checks every event is the one written there.
fn assert_readable_from(log: &TopicLog, from: u64) {
    let end = log.end_offset();
    let mut next = from;
    while next < end {
        let got = log
            .read(next, 50, usize::MAX)
            .expect("read retained events");
        assert!(
            !got.is_empty(),
            "read at {next} returned nothing before {end}"
        );
        for e in &got {
            assert_eq!(e.offset, next);
            assert_eq!(e.event, event(next));
            next += 1;
        }
    }
}

fn assert_out_of_range(log: &TopicLog, requested: u64, start: u64) {
    match log.read(requested, 10, usize::MAX) {
        Err(StorageError::OutOfRange {
            requested: r,
            first,
        }) => assert_eq!((r, first), (requested, start)),
        other => panic!("read at {requested}: expected OutOfRange, got {other:?}"),
    }
}

#[tokio::test]
async fn retention_by_bytes_deletes_the_oldest_sealed_segments() {
    for opts in [options(), cached()] {
        by_bytes(opts).await;
    }
}

async fn by_bytes(opts: LogOptions) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), opts.clone()).await;
    append_range(&log, 0, 300).await;
    let before = segments_on_disk(dir.path());
    assert!(before.len() >= 8, "{before:?}");
    let end = log.end_offset();

    // Expected: oldest first while the total exceeds the limit, never the
    // last (active) segment.
    let max_bytes = 5 * SEGMENT_BYTES;
    let mut total: u64 = before.values().sum();
    let mut expected = before.clone();
    let active = *before.keys().last().unwrap();
    for (&base, &len) in &before {
        if total <= max_bytes || base == active {
            break;
        }
        total -= len;
        expected.remove(&base);
    }
    let start = *expected.keys().next().unwrap();
    assert!(start > 0);

    log.set_retention(None, Some(max_bytes));
    let report = log.enforce_retention().unwrap();
    assert_eq!(segments_on_disk(dir.path()), expected);
    for base in before.keys().filter(|b| !expected.contains_key(b)) {
        assert!(!index_exists(dir.path(), *base), "index of {base} left");
    }
    assert_eq!(report.segments_removed, before.len() - expected.len());
    assert_eq!(report.events_removed, start);
    assert_eq!(report.start_offset, start);
    assert_eq!(
        report.bytes_removed,
        before.values().sum::<u64>() - expected.values().sum::<u64>()
    );
    assert_eq!(log.start_offset(), start);
    let stats = log.stats();
    assert_eq!(stats.start_offset, start);
    assert_eq!(stats.segments, expected.len());
    assert_eq!(stats.bytes, expected.values().sum::<u64>());
    assert_eq!(log.end_offset(), end, "retention never touches the end");

    assert_out_of_range(&log, 0, start);
    assert_out_of_range(&log, start - 1, start);
    assert_readable_from(&log, start);
    assert_eq!(log.offset_for_time(i64::MIN).unwrap(), start);
    assert_eq!(log.offset_for_time(0).unwrap(), start);

    // A second pass finds nothing more to do.
    let again = log.enforce_retention().unwrap();
    assert_eq!(again.segments_removed, 0);
    assert_eq!(again.start_offset, start);

    // The new start survives a restart.
    log.close().await.unwrap();
    let log = open(dir.path(), opts).await;
    assert_eq!(log.start_offset(), start);
    assert_out_of_range(&log, start - 1, start);
    assert_readable_from(&log, start);
    append_range(&log, end, end + 3).await;
    assert_readable_from(&log, start);

    // Even a zero limit keeps the active segment.
    log.set_retention(None, Some(0));
    log.enforce_retention().unwrap();
    let left = segments_on_disk(dir.path());
    assert_eq!(left.len(), 1, "{left:?}");
    let active = *left.keys().next().unwrap();
    assert_eq!(log.start_offset(), active);
    assert!(active < log.end_offset(), "the active segment holds events");
    assert_readable_from(&log, active);
    log.close().await.unwrap();
}

#[tokio::test]
async fn retention_by_age_deletes_segments_whose_newest_event_is_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), options()).await;
    append_range(&log, 0, 200).await;
    // Wide margins: the old events are > 3 s old at the check, the recent
    // ones well under the 2 s limit even on a loaded machine.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    append_range(&log, 200, 300).await;
    // The newest publish times of sealed segments come back from the files.
    log.close().await.unwrap();
    let log = open(dir.path(), options()).await;
    let before = segments_on_disk(dir.path());
    // The segment holding offset 200 has a recent event, so it and every
    // later one stay; every one before it holds only old events.
    let start = *before.range(..=200).next_back().unwrap().0;
    assert!(start > 0);

    log.set_retention(Some(Duration::from_millis(2000)), None);
    let report = log.enforce_retention().unwrap();
    let after = segments_on_disk(dir.path());
    let kept: BTreeMap<u64, u64> = before.range(start..).map(|(b, l)| (*b, *l)).collect();
    assert_eq!(after, kept);
    assert_eq!(report.start_offset, start);
    assert_eq!(log.start_offset(), start);
    assert_out_of_range(&log, start - 1, start);
    assert_readable_from(&log, start);
    let first_recent = log.offset_for_time(i64::MIN).unwrap();
    assert_eq!(first_recent, start);

    // Once everything is too old, only the active segment is left.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    log.enforce_retention().unwrap();
    let left = segments_on_disk(dir.path());
    assert_eq!(
        left.keys().copied().collect::<Vec<_>>(),
        vec![*before.keys().last().unwrap()]
    );
    assert_readable_from(&log, log.start_offset());
    log.close().await.unwrap();
    let log = open(dir.path(), options()).await;
    assert_eq!(log.start_offset(), *left.keys().next().unwrap());
}

#[tokio::test]
async fn the_retention_task_runs_on_its_interval_and_stops_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = TaskTracker::new();
    let opts = LogOptions {
        retention_interval: Duration::from_millis(20),
        ..options()
    };
    let log = TopicLog::open(dir.path().to_path_buf(), opts, &tracker)
        .await
        .unwrap();
    append_range(&log, 0, 100).await;
    assert!(segments_on_disk(dir.path()).len() > 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(log.start_offset(), 0, "no limits, nothing removed");
    log.set_retention(None, Some(SEGMENT_BYTES));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // Files go first, then the start offset moves: wait for both.
    while segments_on_disk(dir.path()).len() > 2 || log.start_offset() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retention task never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    log.close().await.unwrap();
    assert!(matches!(log.enforce_retention(), Err(StorageError::Closed)));
    tracker.close();
    tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .expect("the retention task must stop on close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_keep_working_while_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), options()).await;
    append_range(&log, 0, 200).await;
    log.set_retention(None, Some(3 * SEGMENT_BYTES));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (log, done) = (log.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let (mut reads, mut out_of_range) = (0u64, 0u64);
                while !done.load(Ordering::Acquire) {
                    // Start at the oldest offset known, which retention may
                    // delete at any moment, and read forward.
                    let mut next = log.start_offset();
                    loop {
                        let got: Vec<Arc<StoredEvent>> = match log.read(next, 7, usize::MAX) {
                            Ok(got) => got,
                            Err(StorageError::OutOfRange { requested, first }) => {
                                assert_eq!(requested, next);
                                assert!(first > next);
                                out_of_range += 1;
                                next = first;
                                continue;
                            }
                            Err(e) => panic!("read at {next}: {e}"),
                        };
                        let Some(last) = got.last() else { break };
                        for e in &got {
                            assert_eq!(e.event, event(e.offset), "offset {}", e.offset);
                        }
                        next = last.offset + 1;
                        reads += 1;
                    }
                }
                (reads, out_of_range)
            })
        })
        .collect();
    let mut end = log.end_offset();
    for _ in 0..40 {
        append_range(&log, end, end + 40).await;
        end += 40;
        let shared = log.clone();
        tokio::task::spawn_blocking(move || shared.enforce_retention())
            .await
            .unwrap()
            .unwrap();
    }
    done.store(true, Ordering::Release);
    let mut total_reads = 0;
    for reader in readers {
        let (reads, _) = reader.join().expect("reader must not panic");
        total_reads += reads;
    }
    assert!(total_reads > 0);
    assert!(log.start_offset() > 1000, "start {}", log.start_offset());
    assert_readable_from(&log, log.start_offset());
}

#[tokio::test]
async fn dedup_forgets_originals_that_retention_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), options()).await;
    log.set_dedup_window(Duration::from_secs(600));
    append_range(&log, 0, 100).await;
    let dup = log.append(vec![event(1)]).await.unwrap();
    assert_eq!((dup.offsets, dup.duplicate), (vec![1], vec![true]));
    log.set_retention(None, Some(0));
    log.enforce_retention().unwrap();
    let start = log.start_offset();
    assert!(start > 1);
    let end = log.end_offset();
    let again = log.append(vec![event(1), event(99)]).await.unwrap();
    assert_eq!(again.offsets, vec![end, 99]);
    assert_eq!(again.duplicate, vec![false, true]);
}
