//! The append path of a topic log: validate a batch, hand it to the writer
//! (`slot.rs`) in call order, and await its answer; what an append returns.
//!
//! Storage layer. A poisoned log refuses appends at once, except that the
//! first append after [`LogOptions::recovery_backoff`] also asks the writer
//! to repair the log first (`writer/recover.rs`).
//!
//! [`LogOptions::recovery_backoff`]: super::LogOptions::recovery_backoff

use std::io;

use tokio::sync::oneshot;

use super::codec::{self, MAX_PAYLOAD_LEN};
use super::slot::SendError;
use super::writer::Command;
use std::sync::atomic::Ordering;

use super::TopicLog;
use crate::event::{Event, now_us};
use crate::storage::StorageError;

/// Where an appended batch landed: one entry per input event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Server time of the append, shared by every event the batch stored
    /// (also set when it stored none).
    pub publish_time_us: i64,
    /// Offset of each event: the new one for a stored event (the stored
    /// events of a batch get consecutive offsets), the original's for a
    /// duplicate.
    pub offsets: Vec<u64>,
    /// Whether each event was a duplicate (an id the log already held
    /// within the dedup window, or repeated earlier in the batch) and so was
    /// not stored again. All false while dedup is off.
    pub duplicate: Vec<bool>,
}

impl Appended {
    /// The result of a batch stored whole at `first_offset..`.
    pub(super) fn dense(first_offset: u64, len: usize, publish_time_us: i64) -> Self {
        Appended {
            publish_time_us,
            offsets: (first_offset..first_offset + len as u64).collect(),
            duplicate: vec![false; len],
        }
    }
}

/// A batch handed to the writer, or nothing to do.
enum Queued {
    Empty(Appended),
    Waiting(oneshot::Receiver<Result<Appended, StorageError>>),
}

impl TopicLog {
    /// Appends a batch atomically: all events or none, at consecutive
    /// offsets, with one publish time. Returns once the batch is written and,
    /// under [`FsyncPolicy::Always`], synced; concurrent appends share the
    /// write and the sync (group commit). An empty batch appends nothing.
    ///
    /// With a dedup window set ([`set_dedup_window`](Self::set_dedup_window)),
    /// events whose id the log stored within the window, or that repeat an
    /// id earlier in the batch, are not stored: [`Appended`] marks them and
    /// gives the original's offset. The rest are stored as above; a batch of
    /// duplicates only stores nothing and leaves the end offset where it
    /// was, and still returns only once the originals are as durable as
    /// their own appends promised. Events with an empty id are never
    /// duplicates. The index holds at most [`LogOptions::dedup_max_ids`]
    /// ids, the oldest going first, so under a high enough publish rate it
    /// covers less than the window.
    ///
    /// The batch is handed to the writer before this returns (so appends
    /// issued one after another get offsets in that order) and is appended
    /// whole even if the returned future is dropped.
    ///
    /// # Errors
    /// [`StorageError::Closed`] after [`close`](Self::close);
    /// [`StorageError::Poisoned`] if this or an earlier write or sync failed
    /// and the log has not been repaired since (the first append after
    /// [`LogOptions::recovery_backoff`](super::LogOptions::recovery_backoff)
    /// tries to repair it first); an `InvalidInput` [`StorageError::Io`] for an event whose encoding
    /// exceeds [`MAX_PAYLOAD_LEN`].
    pub fn append(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Appended, StorageError>> + Send + 'static {
        self.append_with_server_ids(events, Vec::new())
    }

    /// [`append`](Self::append), saying which events carry an id the server
    /// generated (`server_ids[i]` for event `i`; empty: none): such an id is
    /// unique by construction (a UUIDv7), so dedup neither checks nor
    /// indexes it, which keeps the dedup index for ids clients chose. (After
    /// a restart the files do not say which ids were generated, and the
    /// rebuilt index holds them all.)
    ///
    /// # Errors
    /// As [`append`](Self::append); an `InvalidInput` [`StorageError::Io`]
    /// when `server_ids` is neither empty nor one flag per event.
    pub fn append_with_server_ids(
        &self,
        events: Vec<Event>,
        server_ids: Vec<bool>,
    ) -> impl Future<Output = Result<Appended, StorageError>> + Send + 'static {
        let queued = self.enqueue(events, server_ids);
        let log = self.clone();
        async move {
            match queued? {
                Queued::Empty(appended) => Ok(appended),
                Queued::Waiting(answer) => answer.await.unwrap_or_else(|_| Err(log.stopped())),
            }
        }
    }

    /// The synchronous half of [`append`](Self::append): validate and hand
    /// the batch to the writer now, so calls made one after another are
    /// appended in call order.
    fn enqueue(&self, events: Vec<Event>, server_ids: Vec<bool>) -> Result<Queued, StorageError> {
        let shared = &self.inner.shared;
        let recover = self.check_writable()?;
        if !server_ids.is_empty() && server_ids.len() != events.len() {
            return Err(StorageError::io(
                format!("append to {}", shared.dir.display()),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} server-id flags for {} events",
                        server_ids.len(),
                        events.len()
                    ),
                ),
            ));
        }
        let mut bytes = 0u64;
        for event in &events {
            let len = codec::payload_len(event);
            if len > MAX_PAYLOAD_LEN {
                return Err(StorageError::io(
                    format!("append to {}", shared.dir.display()),
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "event {:?} encodes to {len} bytes, more than the {MAX_PAYLOAD_LEN}-byte maximum",
                            event.id
                        ),
                    ),
                ));
            }
            bytes += (codec::HEADER_LEN + len) as u64;
        }
        if recover {
            self.send(Command::Recover)?;
        }
        if events.is_empty() {
            return Ok(Queued::Empty(Appended::dense(
                self.end_offset(),
                0,
                now_us(),
            )));
        }
        let (reply, answer) = oneshot::channel();
        let cmd = Command::Append {
            events,
            server_ids,
            bytes,
            reply,
        };
        self.send(cmd)?;
        Ok(Queued::Waiting(answer))
    }

    /// Whether appends are taken now: `Ok(false)` normally, `Ok(true)` for
    /// the append that claimed a recovery attempt of a poisoned log (it goes
    /// to the writer behind a [`Command::Recover`]), else the error.
    fn check_writable(&self) -> Result<bool, StorageError> {
        let shared = &self.inner.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        match shared.poisoned() {
            None => Ok(false),
            Some(_) if shared.claim_recovery() => Ok(true),
            Some(err) => Err(err),
        }
    }

    /// Hands a command to the writer (starting its thread if parked).
    fn send(&self, cmd: Command) -> Result<(), StorageError> {
        match self.inner.writer.send(cmd) {
            Ok(()) => Ok(()),
            Err(SendError::Stopped) => Err(self.stopped()),
            Err(SendError::Spawn(e)) => Err(e),
        }
    }

    /// Why the writer stopped answering.
    fn stopped(&self) -> StorageError {
        let shared = &self.inner.shared;
        if shared.closed.load(Ordering::Acquire) {
            return StorageError::Closed;
        }
        shared.poisoned().unwrap_or_else(|| {
            shared.poisoned_error("the log writer thread stopped unexpectedly".into())
        })
    }
}
