//! Idle topic logs cost no OS thread: their writer threads exit after the
//! idle period and come back on the next append. Alone in its test binary so
//! that no other test starts or stops threads while it counts them.

use std::time::Duration;

use bytes::Bytes;
use herald::event::Event;
use herald::storage::embedded::log::{FsyncPolicy, LogOptions, TopicLog};
use tokio_util::task::TaskTracker;

/// Threads of this process, from `/proc/self/task`.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("list /proc/self/task")
        .count()
}

fn event(topic: usize, i: u64) -> Event {
    Event {
        id: format!("t{topic}-{i}"),
        event_type: "Idle".into(),
        data: Bytes::from(vec![7; 64]),
        ..Event::default()
    }
}

async fn settle(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_logs_release_their_writer_threads() {
    const LOGS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        fsync: FsyncPolicy::Always,
        writer_idle: Duration::from_millis(1000),
        ..LogOptions::default()
    };
    let tracker = TaskTracker::new();
    // Start the blocking pool used by open() before counting.
    let warm = TopicLog::open(dir.path().join("warm"), opts.clone(), &tracker)
        .await
        .unwrap();
    warm.close().await.unwrap();
    let base = threads();
    let mut logs = Vec::new();
    for t in 0..LOGS {
        let path = dir.path().join(format!("t{t}"));
        logs.push(TopicLog::open(path, opts.clone(), &tracker).await.unwrap());
    }
    for (t, log) in logs.iter().enumerate() {
        assert_eq!(
            log.append(vec![event(t, 0)]).await.unwrap().offsets,
            vec![0]
        );
    }
    let busy = threads();
    assert!(
        busy >= base + LOGS,
        "{busy} threads with {LOGS} busy logs, {base} before"
    );
    settle("writers park", || logs.iter().all(|l| !l.writer_running())).await;
    // The OS threads are gone too, not just marked idle.
    settle("threads exit", || threads() + LOGS <= busy).await;
    let idle = threads();
    eprintln!("threads: {base} before, {busy} with {LOGS} busy logs, {idle} once idle");

    // Every log takes appends again, at the next offset.
    for (t, log) in logs.iter().enumerate() {
        assert_eq!(
            log.append(vec![event(t, 1)]).await.unwrap().offsets,
            vec![1]
        );
    }
    assert!(threads() >= idle + LOGS);
    for log in &logs {
        log.close().await.unwrap();
    }
    for (t, _) in logs.iter().enumerate() {
        let reopened = TopicLog::open(dir.path().join(format!("t{t}")), opts.clone(), &tracker)
            .await
            .unwrap();
        let read = reopened.read(0, 10, usize::MAX).unwrap();
        let ids: Vec<&str> = read.iter().map(|e| e.event.id.as_str()).collect();
        assert_eq!(ids, vec![format!("t{t}-0"), format!("t{t}-1")]);
        reopened.close().await.unwrap();
    }
}
