//! Behaviour tests of [`TopicLog`] against real files in temp directories.
//! Memory and thread limits are tested in `tests/limits.rs`, the space
//! allocated ahead of writes in `tests/runway.rs`.

mod limits;
mod runway;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::task::TaskTracker;

use super::*;
use crate::event::{Event, StoredEvent};

fn event(tag: &str, i: u64, size: usize) -> Event {
    Event {
        id: format!("{tag}-{i}"),
        event_type: "Tested".into(),
        source: "tests".into(),
        key: format!("k{}", i % 7),
        time_us: i as i64,
        content_type: "application/octet-stream".into(),
        schema_version: "1".into(),
        data: Bytes::from(vec![(i % 251) as u8; size]),
        attributes: vec![("n".into(), i.to_string())],
    }
}

fn batch(tag: &str, from: u64, n: u64) -> Vec<Event> {
    (from..from + n)
        .map(|i| event(tag, i, 40 + (i % 50) as usize))
        .collect()
}

fn small_opts(fsync: FsyncPolicy, cache: usize) -> LogOptions {
    LogOptions {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        fsync,
        tail_cache_events: cache,
        ..LogOptions::default()
    }
}

async fn open(dir: &Path, opts: LogOptions) -> TopicLog {
    TopicLog::open(dir.to_path_buf(), opts, &TaskTracker::new())
        .await
        .unwrap()
}

fn read_all(log: &TopicLog) -> Vec<Arc<StoredEvent>> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    loop {
        let got = log.read(from, 37, usize::MAX).unwrap();
        let Some(last) = got.last() else { break };
        from = last.offset + 1;
        out.extend(got);
    }
    out
}

/// Appends 60 batches of 1..=9 events; returns what was appended.
async fn fill(log: &TopicLog) -> Vec<Event> {
    let mut all = Vec::new();
    for b in 0..60u64 {
        let events = batch("fill", all.len() as u64, 1 + b % 9);
        let appended = log.append(events.clone()).await.unwrap();
        let first = all.len() as u64;
        let dense: Vec<u64> = (first..first + events.len() as u64).collect();
        assert_eq!(appended.offsets, dense);
        assert_eq!(appended.duplicate, vec![false; events.len()]);
        all.extend(events);
    }
    all
}

fn assert_same(read: &[Arc<StoredEvent>], written: &[Event]) {
    assert_eq!(read.len(), written.len());
    for (i, (r, w)) in read.iter().zip(written).enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(&r.event, w, "event at offset {i}");
    }
}

#[tokio::test]
async fn reads_back_across_segment_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    for cache in [0, 10_000] {
        let path = dir.path().join(format!("cache-{cache}"));
        let log = open(&path, small_opts(FsyncPolicy::Never, cache)).await;
        let written = fill(&log).await;
        let stats = log.stats();
        assert!(stats.segments >= 5, "{stats:?}");
        assert_eq!(stats.end_offset, written.len() as u64);
        assert_same(&read_all(&log), &written);
        // Publish times never decrease.
        let times: Vec<i64> = read_all(&log).iter().map(|e| e.publish_time_us).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        log.close().await.unwrap();

        let reopened = open(&path, small_opts(FsyncPolicy::Never, cache)).await;
        assert_eq!(reopened.stats().segments, stats.segments);
        assert_eq!(reopened.stats().bytes, stats.bytes);
        assert_same(&read_all(&reopened), &written);
        let more = batch("more", 0, 3);
        let appended = reopened.append(more.clone()).await.unwrap();
        assert_eq!(appended.offsets[0], written.len() as u64);
        let tail = reopened.read(appended.offsets[0], 10, usize::MAX).unwrap();
        assert_eq!(tail.len(), 3);
        assert_eq!(tail[2].event, more[2]);
        reopened.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_batch_larger_than_a_segment_goes_alone_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Always, 0)).await;
    log.append(batch("a", 0, 2)).await.unwrap();
    let big: Vec<Event> = (0..3).map(|i| event("big", i, 3000)).collect();
    let appended = log.append(big.clone()).await.unwrap();
    assert_eq!(appended.offsets, vec![2, 3, 4]);
    log.append(batch("c", 5, 1)).await.unwrap();
    assert_eq!(log.stats().segments, 3);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    for base in [0, 2, 5] {
        assert!(names.contains(&format!("{base:020}.log")), "{names:?}");
    }
    let read = log.read(2, 3, usize::MAX).unwrap();
    let events: Vec<&Event> = read.iter().map(|e| &e.event).collect();
    assert_eq!(events, big.iter().collect::<Vec<_>>());
}

#[tokio::test]
async fn read_limits_are_respected_from_cache_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    for cache in [0, 1000] {
        let path = dir.path().join(format!("c{cache}"));
        let log = open(&path, small_opts(FsyncPolicy::Never, cache)).await;
        let written = fill(&log).await;
        let end = written.len() as u64;
        let size = |i: u64| written[i as usize].size();

        let got = log.read(10, 5, usize::MAX).unwrap();
        assert_eq!(
            got.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![10, 11, 12, 13, 14]
        );
        // max_bytes: stops after the event that reaches it.
        let budget = size(20) + size(21) + 1;
        let got = log.read(20, 100, budget).unwrap();
        assert_eq!(got.len(), 3, "cache={cache}");
        let got = log.read(20, 100, size(20) + size(21)).unwrap();
        assert_eq!(got.len(), 2, "cache={cache}");
        // Always at least one event.
        assert_eq!(log.read(20, 100, 0).unwrap().len(), 1);
        assert_eq!(log.read(20, 0, 100).unwrap().len(), 0);
        // Stops at the end; nothing at or past it.
        assert_eq!(log.read(end - 2, 100, usize::MAX).unwrap().len(), 2);
        assert!(log.read(end, 100, usize::MAX).unwrap().is_empty());
        assert!(log.read(end + 100, 100, usize::MAX).unwrap().is_empty());
        log.close().await.unwrap();
    }
}

#[tokio::test]
async fn offset_for_time_finds_the_first_event_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    for cache in [0, 1000] {
        let path = dir.path().join(format!("c{cache}"));
        let log = open(&path, small_opts(FsyncPolicy::Never, cache)).await;
        assert_eq!(log.offset_for_time(0).unwrap(), 0);
        for b in 0..40u64 {
            log.append(batch("t", b, 1 + b % 4)).await.unwrap();
            if b % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let all = read_all(&log);
        let end = log.end_offset();
        assert!(log.stats().segments > 2);
        let expected = |t: i64| {
            all.iter()
                .find(|e| e.publish_time_us >= t)
                .map_or(end, |e| e.offset)
        };
        let mut probes = vec![i64::MIN, 0, i64::MAX];
        for e in &all {
            probes.extend([
                e.publish_time_us - 1,
                e.publish_time_us,
                e.publish_time_us + 1,
            ]);
        }
        for t in probes {
            assert_eq!(log.offset_for_time(t).unwrap(), expected(t), "t={t}");
        }
        log.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_get_dense_disjoint_offsets_and_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        segment_bytes: 64 << 10,
        fsync: FsyncPolicy::Always,
        ..LogOptions::default()
    };
    let log = open(dir.path(), opts).await;
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for b in 0..200u64 {
                let n = 1 + (t + b) % 4;
                let tag = format!("t{t}b{b}");
                let appended = log.append(batch(&tag, 0, n)).await.unwrap();
                assert_eq!(appended.offsets.len() as u64, n);
                mine.push((appended.offsets[0], n, tag));
            }
            mine
        }));
    }
    let mut batches = Vec::new();
    for task in tasks {
        batches.extend(task.await.unwrap());
    }
    batches.sort();
    let mut next = 0;
    for (first, n, _) in &batches {
        assert_eq!(*first, next, "offsets must be dense and disjoint");
        next += n;
    }
    assert_eq!(log.end_offset(), next);
    let all = read_all(&log);
    for (first, n, tag) in &batches {
        for i in 0..*n {
            let e = &all[(first + i) as usize];
            assert_eq!(
                e.event.id,
                format!("{tag}-{i}"),
                "batch {tag} must be contiguous"
            );
        }
        let times: HashSet<i64> = (0..*n)
            .map(|i| all[(first + i) as usize].publish_time_us)
            .collect();
        assert_eq!(times.len(), 1, "one publish time per batch");
    }
    let syncs = log.sync_count();
    assert!(
        syncs > 0 && syncs < 3200,
        "group commit must share syncs: {syncs} syncs for 3200 appends"
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn dropped_append_futures_still_append_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Always, 100)).await;
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for b in 0..20u64 {
        let mut fut = Box::pin(log.append(batch(&format!("d{b}"), 0, 5)));
        // One poll hands the batch to the writer; then the caller gives up.
        let _ = fut.as_mut().poll(&mut cx);
        drop(fut);
    }
    let appended = log.append(batch("last", 0, 1)).await.unwrap();
    assert_eq!(appended.offsets, vec![100]);
    let all = read_all(&log);
    assert_eq!(all.len(), 101);
    for chunk in all[..100].chunks(5) {
        let tag = chunk[0].event.id.trim_end_matches("-0").to_owned();
        for (i, e) in chunk.iter().enumerate() {
            assert_eq!(e.event.id, format!("{tag}-{i}"));
        }
    }
}

#[tokio::test]
async fn appends_after_close_fail_and_close_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Always, 10)).await;
    log.append(batch("a", 0, 3)).await.unwrap();
    log.close().await.unwrap();
    let err = log.append(batch("b", 0, 1)).await.unwrap_err();
    assert!(matches!(err, StorageError::Closed), "{err}");
    log.close().await.unwrap();
    // Reads still work after close.
    assert_eq!(log.read(0, 10, usize::MAX).unwrap().len(), 3);
    assert_eq!(log.end_offset(), 3);
}

#[tokio::test]
async fn a_failed_sync_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Always, 100)).await;
    let mut watch = log.watch_end();
    log.append(batch("ok", 0, 4)).await.unwrap();
    assert_eq!(log.end_offset(), 4);
    log.inject_sync_failure();
    let err = log.append(batch("lost", 0, 2)).await.unwrap_err();
    let StorageError::Poisoned { path, reason } = &err else {
        panic!("expected Poisoned, got {err}");
    };
    assert_eq!(path, dir.path());
    assert!(reason.contains("injected sync failure"), "{reason}");
    assert_eq!(
        log.end_offset(),
        4,
        "the failed batch must not become visible"
    );
    assert_eq!(*watch.borrow_and_update(), 4);
    assert_eq!(read_all(&log).len(), 4);
    // Later appends are refused too until the repair back-off (1 s) has
    // passed, even though syncs would work now (`tests/storage_repair.rs`).
    let again = log.append(batch("later", 0, 1)).await.unwrap_err();
    assert!(matches!(again, StorageError::Poisoned { .. }), "{again}");
    assert_eq!(log.end_offset(), 4);
    assert!(matches!(
        log.close().await,
        Err(StorageError::Poisoned { .. })
    ));
    // Nor does the failed batch reappear after a restart.
    let reopened = open(dir.path(), small_opts(FsyncPolicy::Always, 100)).await;
    assert_eq!(reopened.end_offset(), 4);
    assert_eq!(
        reopened.append(batch("new", 0, 1)).await.unwrap().offsets,
        vec![4]
    );
}

#[tokio::test]
async fn watchers_see_the_end_move() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Always, 100)).await;
    let mut watch = log.watch_end();
    assert_eq!(*watch.borrow_and_update(), 0);
    let writer = log.clone();
    let task = tokio::spawn(async move { writer.append(batch("w", 0, 3)).await });
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*watch.borrow_and_update(), 3);
    // Visible to readers by the time the watcher hears of it.
    assert_eq!(log.read(0, 10, usize::MAX).unwrap().len(), 3);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn interval_policy_syncs_in_the_background_and_stops_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = TaskTracker::new();
    let opts = small_opts(FsyncPolicy::Interval(Duration::from_millis(10)), 100);
    let log = TopicLog::open(dir.path().to_path_buf(), opts, &tracker)
        .await
        .unwrap();
    log.append(batch("i", 0, 3)).await.unwrap();
    assert_eq!(log.end_offset(), 3, "visible once written");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while log.sync_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "flusher never synced"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        tracker.len(),
        3,
        "the flusher, retention and the idle-cache task run on the given tracker"
    );
    log.close().await.unwrap();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .expect("flusher must stop on close");
}

#[tokio::test]
async fn oversized_events_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Never, 0)).await;
    let mut huge = event("h", 0, 0);
    huge.data = Bytes::from(vec![0; MAX_PAYLOAD_LEN]);
    let err = log.append(vec![event("ok", 0, 1), huge]).await.unwrap_err();
    assert!(err.to_string().contains("maximum"), "{err}");
    assert_eq!(log.end_offset(), 0);
    assert_eq!(log.append(batch("x", 0, 1)).await.unwrap().offsets, vec![0]);
}

#[tokio::test]
async fn missing_sealed_indexes_are_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Never, 0)).await;
    let written = fill(&log).await;
    log.close().await.unwrap();
    let idx: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    assert!(idx.len() >= 4);
    let before: Vec<Vec<u8>> = idx.iter().map(|p| std::fs::read(p).unwrap()).collect();
    std::fs::remove_file(&idx[0]).unwrap();
    std::fs::write(&idx[1], b"garbage").unwrap();
    let reopened = open(dir.path(), small_opts(FsyncPolicy::Never, 0)).await;
    assert_same(&read_all(&reopened), &written);
    let after: Vec<Vec<u8>> = idx.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after, "rebuilt indexes equal the originals");
}

#[test]
fn handles_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<TopicLog>();
}

fn ids(events: &[Arc<StoredEvent>]) -> Vec<&str> {
    events.iter().map(|e| e.event.id.as_str()).collect()
}

fn with_id(id: &str) -> Event {
    Event {
        id: id.into(),
        ..event("x", 0, 16)
    }
}

fn batch_of(ids: &[&str]) -> Vec<Event> {
    ids.iter().map(|id| with_id(id)).collect()
}

#[tokio::test]
async fn dedup_skips_ids_repeated_in_a_batch_and_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Always, 100)).await;
    log.set_dedup_window(Duration::from_secs(60));
    let first = log.append(batch_of(&["a", "b", "a"])).await.unwrap();
    assert_eq!(first.offsets, vec![0, 1, 0]);
    assert_eq!(first.duplicate, vec![false, false, true]);
    assert_eq!(log.end_offset(), 2);

    let second = log.append(batch_of(&["b", "c", "c"])).await.unwrap();
    assert_eq!(second.offsets, vec![1, 2, 2]);
    assert_eq!(second.duplicate, vec![true, false, true]);
    assert_eq!(log.end_offset(), 3);

    let mut watch = log.watch_end();
    watch.borrow_and_update();
    let syncs = log.sync_count();
    let none = log.append(batch_of(&["c", "a"])).await.unwrap();
    assert_eq!(none.offsets, vec![2, 0]);
    assert_eq!(none.duplicate, vec![true, true]);
    assert_eq!(log.end_offset(), 3, "a batch of duplicates stores nothing");
    assert!(!watch.has_changed().unwrap(), "and does not move the end");
    assert_eq!(log.sync_count(), syncs, "nor costs a sync");
    assert_eq!(ids(&read_all(&log)), vec!["a", "b", "c"]);

    // The stored part of a mixed batch gets consecutive offsets.
    let mixed = log.append(batch_of(&["d", "a", "e"])).await.unwrap();
    assert_eq!(mixed.offsets, vec![3, 0, 4]);
    assert_eq!(mixed.duplicate, vec![false, true, false]);
    let stored = read_all(&log);
    assert_eq!(ids(&stored), vec!["a", "b", "c", "d", "e"]);
    assert_eq!(stored[3].publish_time_us, stored[4].publish_time_us);
    assert_eq!(stored[3].publish_time_us, mixed.publish_time_us);
    log.close().await.unwrap();
}

#[tokio::test]
async fn dedup_off_stores_duplicates_and_turning_it_on_learns_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Never, 0)).await;
    let off = log.append(batch_of(&["a", "a"])).await.unwrap();
    assert_eq!(off.offsets, vec![0, 1]);
    assert_eq!(off.duplicate, vec![false, false]);
    // Turned on later: ids stored while it was off count, the first copy
    // being the original.
    log.set_dedup_window(Duration::from_secs(60));
    let on = log.append(batch_of(&["a", "b"])).await.unwrap();
    assert_eq!(on.offsets, vec![0, 2]);
    assert_eq!(on.duplicate, vec![true, false]);
    // Off again: everything is stored.
    log.set_dedup_window(Duration::ZERO);
    let again = log.append(batch_of(&["a", "b"])).await.unwrap();
    assert_eq!(again.offsets, vec![3, 4]);
    assert_eq!(again.duplicate, vec![false, false]);
    // Empty ids are never duplicates.
    log.set_dedup_window(Duration::from_secs(60));
    let anonymous = log.append(batch_of(&["", ""])).await.unwrap();
    assert_eq!(anonymous.offsets, vec![5, 6]);
    assert_eq!(log.end_offset(), 7);
}

#[tokio::test]
async fn dedup_survives_a_restart_within_the_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(FsyncPolicy::Always, 0);
    let window = Duration::from_millis(1500);
    let log = open(dir.path(), opts.clone()).await;
    log.set_dedup_window(window);
    let old: Vec<String> = (0..40).map(|i| format!("old-{i}")).collect();
    let old_ids: Vec<&str> = old.iter().map(String::as_str).collect();
    log.append(batch_of(&old_ids)).await.unwrap();
    // Older than the window by the time the log is reopened.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut recent = Vec::new();
    for b in 0..30u64 {
        // Several segments' worth, so the rebuild crosses sealed segments.
        let events = batch(&format!("new{b}"), 0, 3);
        let appended = log.append(events.clone()).await.unwrap();
        recent.extend(events.into_iter().zip(appended.offsets));
    }
    let end = log.end_offset();
    log.close().await.unwrap();
    drop(log);

    let log = open(dir.path(), opts).await;
    assert!(log.stats().segments > 3, "{:?}", log.stats());
    log.set_dedup_window(window);
    let again: Vec<Event> = recent.iter().map(|(e, _)| e.clone()).collect();
    let appended = log.append(again).await.unwrap();
    let originals: Vec<u64> = recent.iter().map(|(_, o)| *o).collect();
    assert_eq!(appended.offsets, originals);
    assert!(appended.duplicate.iter().all(|d| *d));
    assert_eq!(
        log.end_offset(),
        end,
        "nothing stored twice after a restart"
    );
    // Ids published longer ago than the window are stored again.
    let stale = log.append(batch_of(&old_ids[..2])).await.unwrap();
    assert_eq!(stale.offsets, vec![end, end + 1]);
    assert_eq!(stale.duplicate, vec![false, false]);
}

#[tokio::test]
async fn an_id_is_accepted_again_once_the_window_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Never, 100)).await;
    log.set_dedup_window(Duration::from_millis(200));
    assert_eq!(log.append(batch_of(&["x"])).await.unwrap().offsets, vec![0]);
    let dup = log.append(batch_of(&["x"])).await.unwrap();
    assert_eq!((dup.offsets, dup.duplicate), (vec![0], vec![true]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = log.append(batch_of(&["x"])).await.unwrap();
    assert_eq!((fresh.offsets, fresh.duplicate), (vec![1], vec![false]));
    let dup = log.append(batch_of(&["x"])).await.unwrap();
    assert_eq!(
        (dup.offsets, dup.duplicate),
        (vec![1], vec![true]),
        "the new copy is the original now"
    );
    // Narrowing the window forgets what falls out of it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    log.set_dedup_window(Duration::from_millis(10));
    let narrowed = log.append(batch_of(&["x"])).await.unwrap();
    assert_eq!(narrowed.duplicate, vec![false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_of_one_id_store_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_opts(FsyncPolicy::Always, 1000)).await;
    log.set_dedup_window(Duration::from_secs(60));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..50 {
                let shared = format!("shared-{i}");
                let own = format!("t{t}-{i}");
                let appended = log.append(batch_of(&[&shared, &own])).await.unwrap();
                assert!(!appended.duplicate[1]);
                seen.push((shared, appended.offsets[0]));
            }
            seen
        }));
    }
    let mut original = std::collections::HashMap::new();
    for task in tasks {
        for (id, offset) in task.await.unwrap() {
            assert_eq!(
                *original.entry(id.clone()).or_insert(offset),
                offset,
                "{id}"
            );
        }
    }
    let all = read_all(&log);
    assert_eq!(all.len(), 50 + 8 * 50, "each shared id stored exactly once");
    for (id, offset) in original {
        assert_eq!(all[offset as usize].event.id, id);
    }
}

#[test]
fn durations_become_saturating_microseconds() {
    assert_eq!(micros(Duration::from_millis(2)), 2_000);
    assert_eq!(micros(Duration::MAX), i64::MAX);
}
