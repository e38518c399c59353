//! Behaviour tests of what a log may hold: tail cache bytes, dedup ids, and
//! the writer thread of an idle log.

use std::time::Duration;

use super::super::*;
use super::{assert_same, batch, batch_of, event, open, read_all, small_opts, with_id};
use crate::event::Event;

#[tokio::test]
async fn the_tail_cache_is_bounded_in_bytes_and_released_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let memory = TailCacheMemory::new(3 << 20);
    let opts = LogOptions {
        fsync: FsyncPolicy::Never,
        tail_cache_bytes: 1 << 20,
        tail_cache_memory: memory.clone(),
        tail_cache_idle: Duration::from_millis(300),
        ..LogOptions::default()
    };
    let mut logs = Vec::new();
    let mut written = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let log = open(&dir.path().join(name), opts.clone()).await;
        // 20 events of 256 KiB: five times the per-log limit; four logs
        // would hold 4 MiB, over the 3 MiB shared budget.
        let events: Vec<Event> = (0..20).map(|i| event(name, i, 256 << 10)).collect();
        for e in &events {
            log.append(vec![e.clone()]).await.unwrap();
            assert!(
                log.tail_cache_bytes() <= 1 << 20,
                "{}",
                log.tail_cache_bytes()
            );
            assert!(memory.used() <= 3 << 20, "{}", memory.used());
        }
        assert!(log.tail_cache_bytes() > 0, "recent events are cached");
        logs.push(log);
        written.push(events);
    }
    let cached: usize = logs.iter().map(TopicLog::tail_cache_bytes).sum();
    assert_eq!(cached, memory.used());
    for (log, events) in logs.iter().zip(&written) {
        assert_same(&read_all(log), events);
    }
    // Idle logs give all of it back, and still read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while memory.used() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "{memory:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (log, events) in logs.iter().zip(&written) {
        assert_eq!(log.tail_cache_bytes(), 0);
        assert_same(&read_all(log), events);
    }
    // The next append caches again, at the right offset.
    let more = event("a", 20, 1000);
    logs[0].append(vec![more.clone()]).await.unwrap();
    assert!(logs[0].tail_cache_bytes() > 0);
    let tail = logs[0].read(20, 10, usize::MAX).unwrap();
    assert_eq!((tail.len(), tail[0].offset), (1, 20));
    assert_eq!(tail[0].event, more);
    for log in &logs {
        log.close().await.unwrap();
    }
    drop(logs);
    assert_eq!(memory.used(), 0);
}

#[tokio::test]
async fn the_dedup_index_is_capped_and_holds_no_server_generated_ids() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        dedup_max_ids: 10,
        ..small_opts(FsyncPolicy::Never, 100)
    };
    let log = open(dir.path(), opts.clone()).await;
    log.set_dedup_window(Duration::from_secs(60));
    let client: Vec<String> = (0..10).map(|i| format!("client-{i}")).collect();
    let client_ids: Vec<&str> = client.iter().map(String::as_str).collect();
    log.append(batch_of(&client_ids)).await.unwrap();
    // 100 events whose ids the server generated take no room in the index.
    let generated: Vec<Event> = (0..100).map(|i| with_id(&format!("gen-{i}"))).collect();
    let appended = log
        .append_with_server_ids(generated, vec![true; 100])
        .await
        .unwrap();
    assert!(appended.duplicate.iter().all(|d| !d));
    let again = log.append(batch_of(&client_ids)).await.unwrap();
    assert_eq!(
        again.duplicate,
        vec![true; 10],
        "client ids are all still known"
    );
    assert_eq!(again.offsets, (0..10).collect::<Vec<u64>>());
    let end = log.end_offset();
    assert_eq!(end, 110);
    // Five more client ids push the five oldest out: the oldest go first.
    let newer: Vec<String> = (0..5).map(|i| format!("newer-{i}")).collect();
    let newer_ids: Vec<&str> = newer.iter().map(String::as_str).collect();
    log.append(batch_of(&newer_ids)).await.unwrap();
    let kept = log.append(batch_of(&client_ids[5..])).await.unwrap();
    assert_eq!(kept.duplicate, vec![true; 5]);
    let forgotten = log.append(batch_of(&client_ids[..5])).await.unwrap();
    assert_eq!(
        forgotten.duplicate,
        vec![false; 5],
        "the five oldest were forgotten"
    );
    // A flag per event, or none.
    assert!(
        log.append_with_server_ids(batch_of(&["x", "y"]), vec![true])
            .await
            .is_err()
    );
    log.close().await.unwrap();

    // Rebuilt on open from the files, subject to the cap: the newest ten.
    let log = open(dir.path(), opts).await;
    log.set_dedup_window(Duration::from_secs(60));
    let newest = log.append(batch_of(&client_ids[..5])).await.unwrap();
    assert_eq!(newest.duplicate, vec![true; 5]);
    let older = log.append(batch_of(&client_ids[5..])).await.unwrap();
    assert_eq!(older.duplicate, vec![false; 5], "beyond the cap on rebuild");
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_idle_writer_thread_exits_and_comes_back_for_the_next_command() {
    let dir = tempfile::tempdir().unwrap();
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(10)),
    ] {
        let path = dir.path().join(fsync.to_string().replace(':', "-"));
        let opts = LogOptions {
            writer_idle: Duration::from_millis(100),
            ..small_opts(fsync, 100)
        };
        let log = open(&path, opts.clone()).await;
        log.set_dedup_window(Duration::from_secs(60));
        let mut written = batch("first", 0, 5);
        log.append(written.clone()).await.unwrap();
        assert!(log.writer_running());
        wait_until("the writer parks", || !log.writer_running()).await;
        // Still parked a while later: the interval flusher does not wake it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!log.writer_running());
        assert_eq!(log.writer_starts(), 1);

        // Appends issued one after another come back in order, densely.
        let batches: Vec<Vec<Event>> = (0..10).map(|b| batch(&format!("r{b}"), 0, 3)).collect();
        let pending: Vec<_> = batches.iter().map(|b| log.append(b.clone())).collect();
        for (b, fut) in pending.into_iter().enumerate() {
            let first = 5 + 3 * b as u64;
            assert_eq!(
                fut.await.unwrap().offsets,
                vec![first, first + 1, first + 2]
            );
        }
        written.extend(batches.into_iter().flatten());
        assert_eq!(log.writer_starts(), 2);
        // The parked state kept the dedup index.
        let dup = log.append(vec![written[1].clone()]).await.unwrap();
        assert_eq!((dup.offsets, dup.duplicate), (vec![1], vec![true]));
        assert_same(&read_all(&log), &written);

        // Parked again: set_dedup_window and close still work.
        wait_until("the writer parks again", || !log.writer_running()).await;
        log.set_dedup_window(Duration::from_secs(120));
        let dup = log.append(vec![written[2].clone()]).await.unwrap();
        assert_eq!(dup.duplicate, vec![true]);
        wait_until("the writer parks before close", || !log.writer_running()).await;
        log.close().await.unwrap();
        let err = log.append(batch("late", 0, 1)).await.unwrap_err();
        assert!(matches!(err, StorageError::Closed), "{err}");
        assert!(!log.writer_running());

        let reopened = open(&path, opts).await;
        assert_same(&read_all(&reopened), &written);
        reopened.close().await.unwrap();
    }
}
