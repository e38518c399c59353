//! The runway (`writer/runway.rs`): space allocated ahead of the active
//! segment's writes is never part of a sealed segment, is cut when the
//! writer parks idle and at close, and is cut by the next open after a
//! crash.

use std::path::PathBuf;

use super::super::*;
use super::{assert_same, fill, open, read_all, small_opts};

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

/// Whether `bytes` is a chain of whole frames with nothing after the last
/// (a zero header, as the runway would leave, is not a record).
fn whole_records_only(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        match codec::parse_frame(&bytes[at..]) {
            Ok(codec::Frame::Complete { total_len }) if total_len > codec::HEADER_LEN => {
                at += total_len;
            }
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn sealed_segments_end_with_their_last_record_while_the_log_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        runway_bytes: 1024,
        ..small_opts(FsyncPolicy::Always, 0)
    };
    let log = open(dir.path(), opts.clone()).await;
    let written = fill(&log).await;
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    let (active, sealed) = files.split_last().unwrap();
    for file in sealed {
        let bytes = std::fs::read(file).unwrap();
        assert!(whole_records_only(&bytes), "{} has a tail", file.display());
    }
    // The active segment has its runway: allocated up to the next 1 KiB.
    let len = std::fs::metadata(active).unwrap().len();
    assert_eq!(len % 1024, 0, "{len}");
    log.close().await.unwrap();
    let bytes = std::fs::read(active).unwrap();
    assert!(whole_records_only(&bytes), "close cuts the runway");
    let log = open(dir.path(), opts).await;
    assert_same(&read_all(&log), &written);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_leaves_the_runway_and_the_next_open_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(FsyncPolicy::Always, 0);
    let opts = LogOptions {
        segment_bytes: 1 << 20,
        ..opts
    };
    let log = open(dir.path(), opts.clone()).await;
    let written = fill(&log).await;
    // What a crash leaves: the files as they are while the log is open.
    let copy = tempfile::tempdir().unwrap();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let crashed = copy.path().join(files[0].file_name().unwrap());
    std::fs::copy(&files[0], &crashed).unwrap();
    let with_runway = std::fs::metadata(&crashed).unwrap().len();
    log.close().await.unwrap();
    let records = std::fs::metadata(&files[0]).unwrap().len();
    assert!(with_runway > records, "{with_runway} <= {records}");
    assert_eq!(with_runway, opts.runway_bytes.min(opts.segment_bytes));

    let log = open(copy.path(), opts).await;
    assert_same(&read_all(&log), &written);
    assert_eq!(std::fs::metadata(&crashed).unwrap().len(), records);
    let next = log.append(super::batch("after", 0, 3)).await.unwrap();
    assert_eq!(next.offsets[0], written.len() as u64);
    log.close().await.unwrap();
}

#[tokio::test]
async fn an_idle_log_gives_its_runway_back() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        segment_bytes: 1 << 20,
        writer_idle: std::time::Duration::from_millis(50),
        ..small_opts(FsyncPolicy::Always, 0)
    };
    let log = open(dir.path(), opts.clone()).await;
    let mut written = super::batch("idle", 0, 5);
    log.append(written.clone()).await.unwrap();
    let file = segment_files(dir.path()).remove(0);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 1 << 20);
    // The writer parks after 50 ms without commands and cuts the runway.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !whole_records_only(&std::fs::read(&file).unwrap()) {
        assert!(std::time::Instant::now() < deadline, "the runway stayed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The next append starts a writer, and a runway, again.
    let more = super::batch("idle", 5, 5);
    log.append(more.clone()).await.unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 1 << 20);
    written.extend(more);
    assert_same(&read_all(&log), &written);
    log.close().await.unwrap();
}
