//! The interval flusher behind [`FsyncPolicy::Interval`]: a named periodic
//! task that asks the writer to sync written data once per interval.
//!
//! Going through the writer's queue (rather than syncing from here) keeps one
//! owner for the active segment and for the poisoned state. The task is
//! spawned on the caller's `TaskTracker` and ends on `close()` or when the
//! last handle of the log is dropped.
//!
//! [`FsyncPolicy::Interval`]: super::FsyncPolicy::Interval

use std::sync::Weak;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span};

use super::Handle;

/// Starts the flusher of the log behind `handle`.
pub fn spawn(
    tracker: &TaskTracker,
    handle: Weak<Handle>,
    every: Duration,
    stop: CancellationToken,
    dir: String,
) {
    // tokio's interval panics on a zero period.
    let every = every.max(Duration::from_millis(1));
    let span = info_span!("log_flusher", dir, interval_ms = every.as_millis() as u64);
    tracker.spawn(run(handle, every, stop).instrument(span));
}

async fn run(handle: Weak<Handle>, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick completes at once; nothing is written yet.
    ticks.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let Some(handle) = handle.upgrade() else {
            break;
        };
        // A parked writer has nothing unsynced and stays parked.
        if !handle.writer.sync() {
            break;
        }
    }
    debug!("log flusher stopped");
}
