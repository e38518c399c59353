//! A log poisoned by a failed write or sync repairs itself without a
//! restart once the fault is gone: appends are refused meanwhile, then
//! continue at the next offset, nothing acknowledged is lost, and a restart
//! reads exactly the acknowledged events.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald::event::{Event, StoredEvent};
use herald::storage::StorageError;
use herald::storage::embedded::log::{FsyncPolicy, LogOptions, TopicLog};
use tokio_util::task::TaskTracker;

const BACKOFF: Duration = Duration::from_millis(200);

/// Three batches of four events (about 800 bytes each) fit in a segment;
/// the fourth seals it.
const SEGMENT: u64 = 3000;

fn event(tag: &str, i: u64) -> Event {
    Event {
        id: format!("{tag}-{i}"),
        event_type: "Repaired".into(),
        source: "storage_repair".into(),
        data: Bytes::from(format!("payload {tag} {i} {}", "x".repeat(100))),
        ..Event::default()
    }
}

fn batch(tag: &str, n: u64) -> Vec<Event> {
    (0..n).map(|i| event(tag, i)).collect()
}

fn options(fsync: FsyncPolicy, segment_bytes: u64, cache: usize) -> LogOptions {
    LogOptions {
        fsync,
        segment_bytes,
        index_interval_bytes: 256,
        tail_cache_events: cache,
        recovery_backoff: BACKOFF,
        ..LogOptions::default()
    }
}

async fn open(dir: &Path, opts: LogOptions) -> TopicLog {
    TopicLog::open(dir.to_path_buf(), opts, &TaskTracker::new())
        .await
        .expect("open log")
}

fn read_all(log: &TopicLog) -> Vec<Arc<StoredEvent>> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    loop {
        let got = log.read(from, 64, usize::MAX).expect("read");
        let Some(last) = got.last() else { break };
        from = last.offset + 1;
        out.extend(got);
    }
    out
}

fn assert_events(read: &[Arc<StoredEvent>], written: &[Event]) {
    let ids: Vec<&str> = read.iter().map(|e| e.event.id.as_str()).collect();
    let want: Vec<&str> = written.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, want);
    for (i, (r, w)) in read.iter().zip(written).enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(&r.event, w);
    }
}

fn assert_poisoned(result: Result<herald::storage::embedded::log::Appended, StorageError>) {
    match result {
        Err(StorageError::Poisoned { .. }) => {}
        other => panic!("expected Poisoned, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_sync_is_repaired_once_syncs_work_again() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(FsyncPolicy::Always, 128 << 20, 1000);
    let log = open(dir.path(), opts.clone()).await;
    let mut acked = batch("a", 5);
    log.append(acked.clone()).await.unwrap();

    log.set_io_faults(false, true);
    assert_poisoned(log.append(batch("lost", 3)).await);
    assert_eq!(
        log.end_offset(),
        5,
        "the failed batch never becomes visible"
    );
    // Refused at once while the back-off runs.
    let started = std::time::Instant::now();
    assert_poisoned(log.append(batch("early", 1)).await);
    assert!(started.elapsed() < BACKOFF);
    // An attempt while syncs still fail keeps the log poisoned.
    tokio::time::sleep(BACKOFF + Duration::from_millis(50)).await;
    assert_poisoned(log.append(batch("still-failing", 1)).await);
    assert_eq!(log.end_offset(), 5);

    // The fault clears; the next attempt after the back-off repairs the
    // log, and the append that carried it is stored.
    log.set_io_faults(false, false);
    tokio::time::sleep(BACKOFF + Duration::from_millis(50)).await;
    let b = batch("b", 4);
    let appended = log.append(b.clone()).await.unwrap();
    assert_eq!(
        appended.offsets,
        vec![5, 6, 7, 8],
        "offsets continue densely"
    );
    acked.extend(b);
    let c = batch("c", 2);
    assert_eq!(log.append(c.clone()).await.unwrap().offsets, vec![9, 10]);
    acked.extend(c);
    assert_events(&read_all(&log), &acked);
    log.close().await.unwrap();

    let reopened = open(dir.path(), opts).await;
    assert_events(&read_all(&reopened), &acked);
    assert_eq!(
        reopened.append(batch("d", 1)).await.unwrap().offsets,
        vec![11]
    );
}

#[tokio::test]
async fn a_failed_write_is_repaired_and_leaves_no_bytes_behind() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(FsyncPolicy::Always, 128 << 20, 0);
    let log = open(dir.path(), opts.clone()).await;
    let mut acked = batch("a", 3);
    log.append(acked.clone()).await.unwrap();
    log.set_io_faults(true, false);
    let err = log.append(batch("full", 2)).await.unwrap_err();
    let StorageError::Poisoned { reason, .. } = &err else {
        panic!("expected Poisoned, got {err}");
    };
    assert!(
        !err.public_message()
            .contains(&*dir.path().to_string_lossy())
    );
    assert!(reason.contains("storage I/O error"), "{reason}");
    log.set_io_faults(false, false);
    tokio::time::sleep(BACKOFF + Duration::from_millis(50)).await;
    let b = batch("b", 2);
    assert_eq!(log.append(b.clone()).await.unwrap().offsets, vec![3, 4]);
    acked.extend(b);
    log.close().await.unwrap();
    let reopened = open(dir.path(), opts).await;
    assert_events(&read_all(&reopened), &acked);
}

/// Under `interval`, events written after the last successful sync were
/// acknowledged: the repair writes them again from the tail cache.
#[tokio::test]
async fn interval_mode_rewrites_acknowledged_unsynced_events_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    // The flusher never ticks during the test; syncs happen when a segment
    // is sealed. Three batches fit in a segment, the fourth seals it.
    let opts = options(
        FsyncPolicy::Interval(Duration::from_secs(3600)),
        SEGMENT,
        1000,
    );
    let log = open(dir.path(), opts.clone()).await;
    let mut watch = log.watch_end();
    let mut acked = Vec::new();
    for b in 0..3 {
        let events = batch(&format!("a{b}"), 4);
        log.append(events.clone()).await.unwrap();
        acked.extend(events);
    }
    let seen = log.end_offset();
    assert_eq!(seen, 12);
    assert_eq!(log.stats().segments, 1, "{:?}", log.stats());
    log.set_io_faults(false, true);
    // Sealing the segment syncs it: the sync fails.
    assert_poisoned(log.append(batch("seal", 4)).await);
    log.set_io_faults(false, false);
    tokio::time::sleep(BACKOFF + Duration::from_millis(50)).await;
    let b = batch("b", 4);
    assert_eq!(
        log.append(b.clone()).await.unwrap().offsets,
        vec![12, 13, 14, 15]
    );
    acked.extend(b);
    let mut ends = vec![*watch.borrow_and_update()];
    while watch.has_changed().unwrap_or(false) {
        ends.push(*watch.borrow_and_update());
    }
    assert!(
        ends.iter().all(|&e| e >= seen),
        "the end never went back: {ends:?}"
    );
    assert_events(&read_all(&log), &acked);
    log.close().await.unwrap();
    let reopened = open(dir.path(), opts).await;
    assert_events(&read_all(&reopened), &acked);
}

/// Without the unsynced events in memory the log cannot be repaired without
/// taking back offsets readers saw: it stays poisoned, its end does not move
/// back, and a restart keeps what the disk holds.
#[tokio::test]
async fn interval_mode_without_the_events_in_memory_waits_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(FsyncPolicy::Interval(Duration::from_secs(3600)), SEGMENT, 0);
    let log = open(dir.path(), opts.clone()).await;
    let mut acked = Vec::new();
    for b in 0..3 {
        let events = batch(&format!("a{b}"), 4);
        log.append(events.clone()).await.unwrap();
        acked.extend(events);
    }
    log.set_io_faults(false, true);
    assert_poisoned(log.append(batch("seal", 4)).await);
    log.set_io_faults(false, false);
    tokio::time::sleep(BACKOFF + Duration::from_millis(50)).await;
    assert_poisoned(log.append(batch("refused", 1)).await);
    assert_eq!(log.end_offset(), 12, "the end does not move back");
    assert_events(&read_all(&log), &acked);
    drop(log);
    let reopened = open(dir.path(), opts).await;
    assert_events(&read_all(&reopened), &acked);
    assert_eq!(
        reopened.append(batch("c", 1)).await.unwrap().offsets,
        vec![12]
    );
}
