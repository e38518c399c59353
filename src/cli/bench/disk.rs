//! The disk's floor beside `herald bench --scenario e2e`: a bare loop of
//! append + `fdatasync` on the data directory's file system, the least a
//! durable publish can cost there, measured in the same run so Herald's
//! percentiles can be read against it.
//!
//! CLI layer.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Mode, Row, histogram, row};

/// Most writes of one probe.
const WRITES: u64 = 2_000;
/// Longest a probe runs.
const LIMIT: Duration = Duration::from_secs(5);

/// Appends `payload` bytes and `fdatasync`s, up to `WRITES` times (at most
/// `LIMIT`), in a scratch file under `dir`; one row of per-write latency.
///
/// # Errors
/// The scratch file cannot be created, written or synced.
pub(super) async fn probe(dir: &Path, payload: usize, mode: Mode) -> anyhow::Result<Row> {
    let dir = dir.to_path_buf();
    let (h, n, elapsed) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut file = tempfile::NamedTempFile::new_in(&dir)
            .with_context(|| format!("a scratch file in {}", dir.display()))?;
        let data = vec![0xa5u8; payload.max(1)];
        let mut h = histogram();
        let start = Instant::now();
        let mut n = 0;
        while n < WRITES && start.elapsed() < LIMIT {
            let t = Instant::now();
            file.write_all(&data)?;
            file.as_file().sync_data()?;
            let _ = h.record((t.elapsed().as_micros() as u64).max(1));
            n += 1;
        }
        Ok::<_, anyhow::Error>((h, n, start.elapsed()))
    })
    .await??;
    Ok(row(
        "disk",
        mode,
        n,
        elapsed,
        payload,
        "bare write+fdatasync on the data dir (the floor)",
        &h,
    ))
}
