//! The named periodic task "tail_cache_idle": a log whose end offset has
//! not moved for [`LogOptions::tail_cache_idle`] releases its tail cache, so
//! idle topics hold no cached events (their consumers, if any, read the
//! files; the next append starts filling the cache again).
//!
//! Storage layer. The task watches the end offset instead of asking the
//! writer, so it adds nothing to the append path. It is spawned on the
//! caller's `TaskTracker` and ends on `close()` or when the last handle of
//! the log is dropped.
//!
//! [`LogOptions::tail_cache_idle`]: super::LogOptions::tail_cache_idle

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span};

use super::{Handle, Shared, write_guard};

/// Starts the idle-release task of the log behind `handle`.
pub fn spawn(
    tracker: &TaskTracker,
    handle: Weak<Handle>,
    idle: Duration,
    stop: CancellationToken,
    dir: String,
) {
    let span = info_span!("tail_cache_idle", dir, idle_ms = idle.as_millis() as u64);
    tracker.spawn(run(handle, idle, stop).instrument(span));
}

async fn run(handle: Weak<Handle>, idle: Duration, stop: CancellationToken) {
    // A quarter of the idle time: a log is released at most 25 % late.
    let mut ticks = tokio::time::interval((idle / 4).max(Duration::from_millis(5)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_end = None;
    let mut since = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let Some(handle) = handle.upgrade() else {
            break;
        };
        let shared = Arc::clone(&handle.shared);
        drop(handle);
        let end = shared.end.load(Ordering::Acquire);
        if last_end != Some(end) {
            last_end = Some(end);
            since = Instant::now();
        } else if since.elapsed() >= idle {
            release(&shared, end);
        }
    }
    debug!("tail cache idle task stopped");
}

/// Empties the cache of `shared` unless the end moved past `end` meanwhile.
fn release(shared: &Shared, end: u64) {
    let mut cache = write_guard(&shared.cache);
    if cache.bytes() == 0 || shared.end.load(Ordering::Acquire) != end {
        return;
    }
    let released = cache.bytes();
    let events = cache.release_all();
    drop(cache);
    debug!(
        events = events.len(),
        bytes = released,
        "released the tail cache of an idle log"
    );
}
