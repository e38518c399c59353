//! The writer thread of a log and its lifecycle: a dedicated OS thread per
//! active log (appends never hop through anything else), which exits after
//! [`LogOptions::writer_idle`] without commands, leaving the writer's state
//! parked here, and is started again by the next command. Idle logs cost no
//! thread.
//!
//! Storage layer. Senders and the exiting thread synchronise on one
//! read-write lock around the channel sender: senders send under the read
//! lock (they do not exclude each other); a thread about to exit takes the
//! write lock, so no sender can be in the middle of a send, and checks its
//! queue once more before it parks. A command is therefore either received
//! by the running thread or sent to a thread started for it, never lost.
//!
//! A parked writer has nothing staged and nothing written but unsynced, so
//! the interval flusher has nothing to ask of it; `close()` finishes it
//! without a thread; other commands start a thread for it.
//!
//! [`LogOptions::writer_idle`]: super::LogOptions::writer_idle

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::writer::{Command, Writer};
use super::{read_guard, write_guard};
use crate::storage::StorageError;

/// The writer of one log: running on its thread, or parked.
pub struct WriterSlot {
    state: RwLock<SlotState>,
    /// How long a thread waits for a command before it parks (zero: never).
    idle: Duration,
    /// Threads started for this log (the first included), for tests.
    starts: AtomicU64,
}

#[derive(Default)]
struct SlotState {
    /// Set while a thread runs.
    tx: Option<Sender<Command>>,
    /// The running thread, joined by `close()`.
    thread: Option<JoinHandle<()>>,
    /// The writer while no thread owns it (and, briefly, while a thread
    /// just started has not taken it yet).
    parked: Option<Box<Writer>>,
    /// `close()` ran or the last handle was dropped: nothing starts again.
    stopped: bool,
}

/// Why a command could not be handed to the writer.
pub enum SendError {
    /// The writer was closed, or its thread died.
    Stopped,
    /// A thread for the parked writer could not be started.
    Spawn(StorageError),
}

/// What `close()` has to do.
pub enum Closing {
    /// Send `Close` on `tx`, then join `thread`.
    Running(Sender<Command>, Option<JoinHandle<()>>),
    /// No thread: finish this writer.
    Parked(Box<Writer>),
    /// Already closed.
    Done,
}

impl WriterSlot {
    /// Parks `writer`; its first thread starts with the first command that
    /// needs one (opening a log starts no thread).
    ///
    /// # Errors
    /// None today; kept for writers that must start at once.
    pub fn start(writer: Writer, idle: Duration) -> Result<Arc<WriterSlot>, StorageError> {
        Ok(Arc::new(WriterSlot {
            state: RwLock::new(SlotState {
                parked: Some(Box::new(writer)),
                ..SlotState::default()
            }),
            idle,
            starts: AtomicU64::new(0),
        }))
    }

    /// Hands `cmd` to the writer, starting a thread if it is parked.
    ///
    /// # Errors
    /// [`SendError::Stopped`] after close or when the thread died;
    /// [`SendError::Spawn`] when a thread cannot be started.
    pub fn send(self: &Arc<Self>, cmd: Command) -> Result<(), SendError> {
        let cmd = {
            let state = read_guard(&self.state);
            match &state.tx {
                Some(tx) => return tx.send(cmd).map_err(|_| SendError::Stopped),
                None if state.stopped => return Err(SendError::Stopped),
                None => cmd,
            }
        };
        let mut state = write_guard(&self.state);
        if state.tx.is_none() {
            if state.stopped {
                return Err(SendError::Stopped);
            }
            let Some(parked) = state.parked.as_mut() else {
                return Err(SendError::Stopped);
            };
            // A new dedup window waits for the next real work: no thread
            // (and no index rebuild) for a log nobody writes to.
            if let Command::SetDedupWindow(window) = cmd {
                parked.pending_window = Some(window);
                return Ok(());
            }
            self.spawn(&mut state).map_err(SendError::Spawn)?;
        }
        match &state.tx {
            Some(tx) => tx.send(cmd).map_err(|_| SendError::Stopped),
            None => Err(SendError::Stopped),
        }
    }

    /// Asks a running writer to sync (the interval flusher's tick). A parked
    /// writer has nothing unsynced. Returns false once the writer is stopped.
    pub fn sync(&self) -> bool {
        let state = read_guard(&self.state);
        match &state.tx {
            Some(tx) => tx.send(Command::Sync).is_ok(),
            None => !state.stopped,
        }
    }

    /// Stops the slot for `close()`: nothing starts after this.
    pub fn close(&self) -> Closing {
        let mut state = write_guard(&self.state);
        state.stopped = true;
        match state.tx.take() {
            // A thread just started takes the parked writer itself.
            Some(tx) => Closing::Running(tx, state.thread.take()),
            None => state.parked.take().map_or(Closing::Done, Closing::Parked),
        }
    }

    /// Stops the slot when the last handle is dropped: a running thread
    /// commits and syncs what is queued and exits once its queue is empty; a
    /// parked writer is clean and is simply dropped.
    pub fn detach(&self) {
        let mut state = write_guard(&self.state);
        state.stopped = true;
        let running = state.tx.take().is_some();
        state.thread = None;
        if !running {
            state.parked = None;
        }
    }

    /// Whether a writer thread is running now (for tests).
    pub fn running(&self) -> bool {
        read_guard(&self.state).tx.is_some()
    }

    /// Threads started so far, the first included (for tests).
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// Starts a thread for the parked writer; the thread takes it from the
    /// slot (so a failed start leaves it parked).
    fn spawn(self: &Arc<Self>, state: &mut SlotState) -> Result<(), StorageError> {
        let (tx, rx) = mpsc::channel();
        let slot = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("herald-log-wr".into())
            .spawn(move || {
                let writer = write_guard(&slot.state).parked.take();
                if let Some(mut writer) = writer {
                    if let Some(window) = writer.pending_window.take() {
                        writer.set_dedup_window(window);
                    }
                    slot.run(writer, &rx);
                }
            })
            .map_err(|e| {
                let dir = state.parked.as_ref().map(|w| w.dir().display().to_string());
                StorageError::io(
                    format!("start writer thread for {}", dir.unwrap_or_default()),
                    e,
                )
            })?;
        self.starts.fetch_add(1, Ordering::Relaxed);
        state.tx = Some(tx);
        state.thread = Some(thread);
        Ok(())
    }

    /// The thread's body: group commits until `Close`, until every sender is
    /// gone (committing and syncing on the way out), or until it parks.
    fn run(&self, mut writer: Box<Writer>, rx: &mpsc::Receiver<Command>) {
        let mut queue = Vec::new();
        // Flusher syncs do not count as work: an interval-synced log parks
        // all the same.
        let mut last_work = Instant::now();
        loop {
            let wait = self.idle.saturating_sub(last_work.elapsed());
            let received = if self.idle.is_zero() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else if wait.is_zero() {
                Err(RecvTimeoutError::Timeout)
            } else {
                rx.recv_timeout(wait)
            };
            let first = match received {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => match self.park(writer, rx) {
                    Ok(()) => return,
                    Err((w, cmd)) => {
                        writer = w;
                        match cmd {
                            Some(cmd) => cmd,
                            None => {
                                let _ = writer.finish();
                                return;
                            }
                        }
                    }
                },
                Err(RecvTimeoutError::Disconnected) => {
                    // Every handle was dropped without close(); errors are
                    // already logged by `poison`.
                    let _ = writer.finish();
                    return;
                }
            };
            match writer.run_group(first, rx, &mut queue) {
                None => return,
                Some(true) => last_work = Instant::now(),
                Some(false) => {}
            }
        }
    }

    /// Parks `writer` unless a command arrived meanwhile (returned, with the
    /// writer) or every sender is gone (`None`: the caller finishes).
    #[allow(clippy::type_complexity)]
    fn park(
        &self,
        mut writer: Box<Writer>,
        rx: &mpsc::Receiver<Command>,
    ) -> Result<(), (Box<Writer>, Option<Command>)> {
        writer.prepare_to_park();
        // No sender holds the read lock now, so none is mid-send: what the
        // queue holds is all that was sent.
        let mut state = write_guard(&self.state);
        match rx.try_recv() {
            Ok(cmd) => Err((writer, Some(cmd))),
            Err(TryRecvError::Empty) if state.tx.is_some() => {
                state.tx = None;
                // Detached: this thread ends right after.
                state.thread = None;
                state.parked = Some(writer);
                Ok(())
            }
            Err(_) => Err((writer, None)),
        }
    }
}
