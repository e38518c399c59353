//! Tuning knobs of one topic log: the durability mode ([`FsyncPolicy`]) and
//! the sizes that shape segments, the sparse index and the tail cache, and
//! how often retention runs ([`LogOptions`]). Pure configuration; nothing here
//! touches the disk.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use super::cache::TailCacheMemory;

/// When the writer calls `fdatasync` on the active segment, and therefore what
/// a successful [`append`](super::TopicLog::append) promises.
///
/// The string form (used by config files, flags and serde) is `always`,
/// `never` or `interval:<ms>` with `ms > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every group commit is written and `fdatasync`'ed before any of its
    /// appends is answered or becomes visible to readers. An acknowledged
    /// event survives `kill -9` and power loss. Concurrent appends share one
    /// sync (group commit), so throughput grows with concurrency.
    #[default]
    Always,
    /// Appends are answered (and visible) once written to the OS; a named
    /// periodic flusher syncs dirty data every interval. An acknowledged event
    /// survives a process crash; a power loss may drop up to one interval of
    /// acknowledged events. Sub-millisecond parts are not representable in the
    /// string form. After a failed write or sync, the repair writes the
    /// events acknowledged since the last successful sync again from the
    /// tail cache; when the cache no longer holds them the log refuses
    /// writes until a restart, which may lose them.
    Interval(Duration),
    /// Appends are answered once written to the OS, which decides when to
    /// write back. Segments are still synced when they are sealed and on
    /// close. Survives a process crash, not a power loss. A failed write
    /// or sync is repaired in place only while the tail cache holds every
    /// event written since the segment was last synced; otherwise the log
    /// refuses writes until a restart.
    Never,
}

/// A string that is not `always`, `never` or `interval:<ms>` with `ms > 0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid fsync policy {input:?}: expected \"always\", \"never\" or \"interval:<ms>\" with a whole number of milliseconds > 0"
)]
pub struct ParseFsyncPolicyError {
    /// The rejected text, as given.
    pub input: String,
}

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFsyncPolicyError {
            input: s.to_owned(),
        };
        let text = s.trim();
        if text.eq_ignore_ascii_case("always") {
            return Ok(FsyncPolicy::Always);
        }
        if text.eq_ignore_ascii_case("never") {
            return Ok(FsyncPolicy::Never);
        }
        let (word, ms) = text.split_once(':').ok_or_else(err)?;
        if !word.eq_ignore_ascii_case("interval") || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        match ms.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(FsyncPolicy::Interval(Duration::from_millis(ms))),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval(every) => write!(f, "interval:{}", every.as_millis()),
        }
    }
}

impl serde::Serialize for FsyncPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How one topic log lays out and keeps its data.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A segment is sealed and a new one started when the next batch would
    /// push it past this many bytes. Bounds recovery time (only the last
    /// segment is scanned on open) and is the unit retention deletes. A batch
    /// larger than this goes alone into its own segment. Default 128 MiB.
    pub segment_bytes: u64,
    /// One sparse-index entry per this many bytes of records: a read seeks
    /// to the nearest entry, then scans at most about this much. Smaller means
    /// faster seeks and a larger index. Default 4096.
    pub index_interval_bytes: u64,
    /// Durability mode; see [`FsyncPolicy`]. Default `always`.
    pub fsync: FsyncPolicy,
    /// How many of the most recent events to keep decoded in memory, so that
    /// consumers that keep up never read the files. 0 disables the cache.
    /// Default 65536.
    pub tail_cache_events: usize,
    /// At most this many bytes of cached events per log (by
    /// [`footprint`](super::cache::footprint): the event's strings, payload
    /// and fixed overhead), whichever of this and `tail_cache_events` is
    /// reached first. 0 disables the cache. Default 16 MiB.
    pub tail_cache_bytes: usize,
    /// The byte budget shared by the tail caches of every log opened with a
    /// clone of these options (the server passes one to all topics). A
    /// commit that would exceed it evicts the committing log's own oldest
    /// events first and, when that is not enough, leaves its oldest new
    /// events out of the cache; readers of those go to the files. Default
    /// 256 MiB (a fresh budget per `LogOptions::default()`).
    pub tail_cache_memory: TailCacheMemory,
    /// A log whose end offset has not moved for this long releases its tail
    /// cache (the named periodic task "tail_cache_idle"), so idle topics
    /// hold no cached events. Zero keeps caches forever. Default 60 s.
    pub tail_cache_idle: Duration,
    /// A log's writer thread exits after this long without commands (its
    /// state stays in memory) and is started again by the next one, so idle
    /// topics cost no thread; the first append after that pays for starting
    /// a thread (tens of microseconds). Zero keeps the thread for good.
    /// Default 30 s.
    pub writer_idle: Duration,
    /// After a failed write or sync the log refuses appends; the first
    /// append at least this long after the failure, or after the last
    /// repair attempt, first repairs the active segment in place
    /// (`writer/recover.rs`) and is stored if that works. Default 1 s.
    pub recovery_backoff: Duration,
    /// Most ids one log's dedup index keeps (about 40 bytes each): past it
    /// the oldest are forgotten first, so a topic publishing more than this
    /// many client-chosen ids per dedup window is deduplicated over a
    /// shorter time than the window (a warning says so). Default 1,500,000
    /// (about 56 MiB when full).
    pub dedup_max_ids: usize,
    /// How often the background task "retention" applies the limits set
    /// with [`set_retention`](super::TopicLog::set_retention), deleting whole
    /// sealed segments. A pass without limits costs nothing; a shorter
    /// interval keeps the log closer to its limits. Zero disables the task
    /// ([`enforce_retention`](super::TopicLog::enforce_retention) still
    /// works). Default 30 s.
    pub retention_interval: Duration,
    /// The active segment's file is allocated this many bytes at a time
    /// ahead of its writes (`fallocate`), so that a sync does not also
    /// write the file's new size; the unused part is cut off when the
    /// segment is sealed, the writer parks idle or the log closes, and by
    /// recovery after a crash
    /// (`writer/runway.rs`). Zero allocates nothing ahead: the file is
    /// always exactly its records. Default 1 MiB.
    pub runway_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 128 << 20,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Always,
            tail_cache_events: 65_536,
            tail_cache_bytes: 16 << 20,
            tail_cache_memory: TailCacheMemory::new(256 << 20),
            tail_cache_idle: Duration::from_secs(60),
            dedup_max_ids: 1_500_000,
            writer_idle: Duration::from_secs(30),
            recovery_backoff: Duration::from_secs(1),
            retention_interval: Duration::from_secs(30),
            runway_bytes: 1 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_policies() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!(" Always ".parse(), Ok(FsyncPolicy::Always));
        assert_eq!(
            "interval:250".parse(),
            Ok(FsyncPolicy::Interval(Duration::from_millis(250)))
        );
    }

    #[test]
    fn rejects_bad_policies_with_clear_text() {
        for bad in [
            "",
            "sometimes",
            "interval",
            "interval:",
            "interval:0",
            "interval:-5",
            "interval:+5",
            "interval:1.5",
            "interval:5ms",
            "interval: 5",
            "every:5",
            "interval:99999999999999999999999",
        ] {
            let err = bad.parse::<FsyncPolicy>().expect_err(bad);
            assert_eq!(err.input, bad);
            let text = err.to_string();
            assert!(text.contains("interval:<ms>"), "{text}");
            assert!(text.contains(&format!("{bad:?}")), "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for policy in [
            FsyncPolicy::Always,
            FsyncPolicy::Never,
            FsyncPolicy::Interval(Duration::from_millis(1)),
            FsyncPolicy::Interval(Duration::from_secs(3)),
        ] {
            assert_eq!(policy.to_string().parse(), Ok(policy));
        }
        assert_eq!(
            FsyncPolicy::Interval(Duration::from_millis(20)).to_string(),
            "interval:20"
        );
    }

    #[test]
    fn serde_uses_the_string_form() {
        let policy = FsyncPolicy::Interval(Duration::from_millis(50));
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(json, "\"interval:50\"");
        assert_eq!(serde_json::from_str::<FsyncPolicy>(&json).unwrap(), policy);
        let err = serde_json::from_str::<FsyncPolicy>("\"interval:0\"").unwrap_err();
        assert!(err.to_string().contains("invalid fsync policy"), "{err}");
    }

    #[test]
    fn defaults_match_the_documentation() {
        let opts = LogOptions::default();
        assert_eq!(opts.segment_bytes, 128 * 1024 * 1024);
        assert_eq!(opts.index_interval_bytes, 4096);
        assert_eq!(opts.fsync, FsyncPolicy::Always);
        assert_eq!(opts.tail_cache_events, 65_536);
        assert_eq!(opts.tail_cache_bytes, 16 << 20);
        assert_eq!(opts.tail_cache_memory.limit(), 256 << 20);
        assert_eq!(opts.tail_cache_idle, Duration::from_secs(60));
        assert_eq!(opts.dedup_max_ids, 1_500_000);
        assert_eq!(opts.writer_idle, Duration::from_secs(30));
        assert_eq!(opts.recovery_backoff, Duration::from_secs(1));
        assert_eq!(opts.retention_interval, Duration::from_secs(30));
    }
}
