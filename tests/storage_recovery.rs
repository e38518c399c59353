//! Recovery of the embedded event log from damaged tails: torn records,
//! garbage, damage in a multi-segment log, and a writer process killed
//! mid-append.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use herald::event::{Event, StoredEvent};
use herald::storage::StorageError;
use herald::storage::embedded::log::{FsyncPolicy, LogOptions, TopicLog};
use tokio_util::task::TaskTracker;

fn event(tag: &str, i: u64) -> Event {
    Event {
        id: format!("{tag}-{i}"),
        event_type: "Recovered".into(),
        source: "storage_recovery".into(),
        key: format!("key-{}", i % 3),
        time_us: 1_000 + i as i64,
        content_type: "text/plain".into(),
        schema_version: "1".into(),
        data: Bytes::from(format!("payload {tag} {i} {}", "x".repeat(60))),
        attributes: vec![("attempt".into(), i.to_string())],
    }
}

fn options(segment_bytes: u64, fsync: FsyncPolicy) -> LogOptions {
    LogOptions {
        segment_bytes,
        index_interval_bytes: 256,
        fsync,
        tail_cache_events: 0,
        ..LogOptions::default()
    }
}

/// For tests that read a segment's file length while the log is open:
/// without a runway the file is exactly its records.
fn exact(opts: LogOptions) -> LogOptions {
    LogOptions {
        runway_bytes: 0,
        ..opts
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

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

/// Everything logged by this test binary; recovery runs on blocking-pool
/// threads, so the subscriber has to be global.
fn captured_logs() -> String {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("install subscriber");
        buf
    });
    String::from_utf8_lossy(&buf.lock().expect("log buffer")).into_owned()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The truncation warnings logged for `file`.
fn truncation_warnings(file: &Path) -> Vec<String> {
    logged(file, "WARN")
}

/// The lines of `level` logged about `file`.
fn logged(file: &Path, level: &str) -> Vec<String> {
    captured_logs()
        .lines()
        .filter(|l| l.contains(level) && l.contains(&format!("file={}", file.display())))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn truncated_tail_drops_only_the_torn_record() {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let opts = exact(options(128 << 20, FsyncPolicy::Always));
    let log = open(dir.path(), opts.clone()).await;
    const N: u64 = 12;
    let written: Vec<Event> = (0..N).map(|i| event("torn", i)).collect();
    let segment = segment_files(dir.path()).remove(0);
    let mut before_last = 0;
    for (i, e) in written.iter().enumerate() {
        before_last = file_len(&segment);
        let appended = log.append(vec![e.clone()]).await.unwrap();
        assert_eq!(appended.offsets, vec![i as u64]);
    }
    log.close().await.unwrap();
    let full = file_len(&segment);
    let cut = before_last + (full - before_last) / 2;
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let log = open(dir.path(), opts.clone()).await;
    assert_eq!(log.end_offset(), N - 1);
    assert_events(&read_all(&log), &written[..(N - 1) as usize]);
    assert_eq!(
        file_len(&segment),
        before_last,
        "cut back to the last whole record"
    );
    let warnings = truncation_warnings(&segment);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("position={before_last}")),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains(&format!("dropped_bytes={}", cut - before_last)),
        "{}",
        warnings[0]
    );

    let again = event("after", 0);
    assert_eq!(
        log.append(vec![again.clone()]).await.unwrap().offsets,
        vec![N - 1]
    );
    log.close().await.unwrap();

    let log = open(dir.path(), opts).await;
    let mut expected = written[..(N - 1) as usize].to_vec();
    expected.push(again);
    assert_events(&read_all(&log), &expected);
    assert_eq!(
        truncation_warnings(&segment).len(),
        1,
        "second reopen is clean"
    );
    log.close().await.unwrap();
}

/// Writes events, appends `tail` to the segment, reopens: every event must
/// be intact, the file cut back to the last valid record (with a warning,
/// or at `INFO` when `tail` is all zeros), appends continue.
async fn garbage_tail_is_dropped(tail: &[u8]) {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(128 << 20, FsyncPolicy::Always);
    let log = open(dir.path(), opts.clone()).await;
    let written: Vec<Event> = (0..20).map(|i| event("valid", i)).collect();
    for chunk in written.chunks(6) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    log.close().await.unwrap();
    let segment = segment_files(dir.path()).remove(0);
    let valid_len = file_len(&segment);
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .write_all_at(tail, valid_len)
        .unwrap();

    let log = open(dir.path(), opts.clone()).await;
    assert_eq!(file_len(&segment), valid_len, "garbage must be gone");
    assert_events(&read_all(&log), &written);
    let zeros = tail.iter().all(|&b| b == 0);
    let warnings = logged(&segment, if zeros { "INFO" } else { "WARN" });
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(truncation_warnings(&segment).is_empty(), zeros);
    assert!(
        warnings[0].contains(&format!("position={valid_len}")),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains(&format!("dropped_bytes={}", tail.len())),
        "{}",
        warnings[0]
    );
    let next = event("next", 0);
    assert_eq!(
        log.append(vec![next.clone()]).await.unwrap().offsets,
        vec![20]
    );
    log.close().await.unwrap();

    let log = open(dir.path(), opts).await;
    let mut expected = written;
    expected.push(next);
    assert_events(&read_all(&log), &expected);
}

#[tokio::test]
async fn random_garbage_tail_is_dropped() {
    // A fixed xorshift stream: random-looking, reproducible.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let garbage: Vec<u8> = (0..3000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    garbage_tail_is_dropped(&garbage).await;
}

#[tokio::test]
async fn valid_looking_header_with_wrong_crc_is_dropped() {
    let payload = vec![0x5a; 120];
    let mut tail = Vec::new();
    tail.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    tail.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
    tail.extend_from_slice(&payload);
    garbage_tail_is_dropped(&tail).await;
}

#[tokio::test]
async fn zero_filled_tail_is_dropped() {
    // What some file systems leave after a crash (the size grew, data did
    // not), and the unused runway of a writer that did not close.
    garbage_tail_is_dropped(&[0; 4096]).await;
}

#[tokio::test]
async fn torn_record_in_a_multi_segment_log_only_affects_the_last_segment() {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let opts = exact(options(2048, FsyncPolicy::Never));
    let log = open(dir.path(), opts.clone()).await;
    // (segment file, start, end) of every record.
    let mut records: Vec<(PathBuf, u64, u64)> = Vec::new();
    let written: Vec<Event> = (0..80).map(|i| event("multi", i)).collect();
    for e in &written {
        log.append(vec![e.clone()]).await.unwrap();
        let file = segment_files(dir.path()).pop().unwrap();
        let start = match records.last() {
            Some((prev, _, end)) if *prev == file => *end,
            _ => 0,
        };
        records.push((file.clone(), start, file_len(&file)));
    }
    log.close().await.unwrap();
    let files = segment_files(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    let last = files.last().unwrap().clone();
    let in_last: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].0 == last)
        .collect();
    assert!(in_last.len() >= 3, "{in_last:?}");
    let victim = in_last[in_last.len() / 2];
    let (_, start, end) = records[victim].clone();
    let sealed_before: Vec<Vec<u8>> = files[..files.len() - 1]
        .iter()
        .map(|f| fs::read(f).unwrap())
        .collect();
    // Flip one payload byte in the middle of the victim record.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&last)
        .unwrap();
    let at = start + (end - start) / 2;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], at).unwrap();

    let log = open(dir.path(), opts.clone()).await;
    assert_eq!(log.end_offset(), victim as u64);
    assert_events(&read_all(&log), &written[..victim]);
    let sealed_after: Vec<Vec<u8>> = files[..files.len() - 1]
        .iter()
        .map(|f| fs::read(f).unwrap())
        .collect();
    assert!(sealed_before == sealed_after, "sealed segments untouched");
    assert_eq!(file_len(&last), start);
    let warnings = truncation_warnings(&last);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("CRC mismatch"), "{}", warnings[0]);
    for sealed in &files[..files.len() - 1] {
        assert!(truncation_warnings(sealed).is_empty());
    }
    let appended = log.append(vec![event("resumed", 0)]).await.unwrap();
    assert_eq!(appended.offsets, vec![victim as u64]);
    log.close().await.unwrap();
}

#[tokio::test]
async fn damage_in_a_sealed_segment_is_reported_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(2048, FsyncPolicy::Never);
    let log = open(dir.path(), opts.clone()).await;
    let written: Vec<Event> = (0..60).map(|i| event("sealed", i)).collect();
    for chunk in written.chunks(3) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    log.close().await.unwrap();
    let files = segment_files(dir.path());
    let first = files[0].clone();
    let len = file_len(&first);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&first)
        .unwrap();
    file.write_all_at(b"\xff\xff", len / 2).unwrap();

    let log = open(dir.path(), opts).await;
    assert_eq!(log.end_offset(), 60, "sealed segments are trusted on open");
    assert_eq!(file_len(&first), len, "and never truncated");
    let err = read_all_result(&log).unwrap_err();
    match err {
        StorageError::Corrupt { path, reason } => {
            assert_eq!(path, first);
            assert!(reason.contains("at byte"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    // The rest of the log still reads.
    let last_base: u64 = files
        .last()
        .unwrap()
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let tail = log.read(last_base, 1000, usize::MAX).unwrap();
    assert_eq!(tail.len() as u64, 60 - last_base);
}

fn read_all_result(log: &TopicLog) -> Result<Vec<Arc<StoredEvent>>, StorageError> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let got = log.read(from, 64, usize::MAX)?;
        let Some(last) = got.last() else {
            return Ok(out);
        };
        from = last.offset + 1;
        out.extend(got);
    }
}

const CRASH_DIR_ENV: &str = "HERALD_CRASH_CHILD_DIR";

/// Child half of `killed_writer_loses_no_acknowledged_event`: appends
/// batches forever, printing each acknowledged batch. Does nothing when run
/// as an ordinary test.
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let log = open(Path::new(&dir), options(16 << 10, FsyncPolicy::Always)).await;
    let mut stdout = std::io::stdout().lock();
    for b in 0u64.. {
        let batch: Vec<Event> = (0..5).map(|i| event(&format!("b{b}"), i)).collect();
        let appended = log.append(batch).await.unwrap();
        writeln!(stdout, "acked {b} {}", appended.offsets[0]).unwrap();
        stdout.flush().unwrap();
    }
}

#[tokio::test]
async fn killed_writer_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 300 {
        let line = lines.next().expect("child output").unwrap();
        let Some(rest) = line.strip_prefix("acked ") else {
            continue;
        };
        let mut parts = rest.split(' ');
        let batch: u64 = parts.next().unwrap().parse().unwrap();
        let first: u64 = parts.next().unwrap().parse().unwrap();
        acked.push((batch, first));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Give the killed process's page cache writes no special treatment: the
    // log must reopen from whatever is on disk.
    tokio::time::sleep(Duration::from_millis(10)).await;

    let log = open(dir.path(), options(16 << 10, FsyncPolicy::Always)).await;
    assert!(
        segment_files(dir.path()).len() > 1,
        "the child rolled segments"
    );
    let all = read_all(&log);
    assert_eq!(all.len() as u64, log.end_offset());
    assert_eq!(all.len() % 5, 0, "batches are all or nothing");
    for (batch, first) in acked {
        for i in 0..5u64 {
            let stored = &all[(first + i) as usize];
            assert_eq!(stored.event, event(&format!("b{batch}"), i));
        }
    }
    let appended = log.append(vec![event("after-crash", 0)]).await.unwrap();
    assert_eq!(appended.offsets, vec![all.len() as u64]);
}
