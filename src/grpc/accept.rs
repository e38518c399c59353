//! The accept loop: admits connections up to `server.max_connections`,
//! sets their socket options and wraps each in a [`Conn`]; backs off when
//! accepting fails instead of spinning.
//!
//! gRPC layer. [`Incoming`] is the stream of connections tonic serves.
//! Two failures matter under load:
//! - **Too many connections.** Past the limit, a connection is accepted and
//!   closed at once (it never reaches HTTP/2), so the backlog drains and
//!   clients fail fast instead of hanging in it. A warning says so, at most
//!   once every [`WARN_EVERY`], with the number refused since the last one.
//! - **Accept errors.** `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM` leave the
//!   pending connection in the backlog, so retrying at once spins a core.
//!   The loop sleeps instead, 5 ms doubling to 1 s, reset by the next
//!   accepted connection; warnings are rate-limited the same way. Errors
//!   that only concern the connection being accepted (reset or aborted by
//!   the client) are skipped at once.
//!
//! With TLS on, each connection is handed on with the certificate in force
//! at that moment; its handshake runs on the connection's own task
//! (`tls.rs`).
//!
//! Each accepted socket gets `TCP_NODELAY` (small frames such as acks and
//! single-event publishes must leave at once: Nagle's algorithm would hold
//! them for the peer's delayed ACK, tens of milliseconds) and TCP
//! keepalive.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;

use tonic::transport::server::TcpConnectInfo;

use super::connection::{Conn, ConnSettings, Slot};
use super::tls::{ServerIo, ServerTls};

/// First pause after a failed accept.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause after failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning of a kind per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Idle time before the kernel probes a silent peer (TCP keepalive).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Accepted connections, within the connection limit.
pub struct Incoming {
    listener: TcpListener,
    /// TLS of new connections, if on (its config can change between two).
    tls: Option<Arc<ServerTls>>,
    settings: ConnSettings,
    max_connections: usize,
    /// Connections open now; each [`Conn`] holds one.
    open: Arc<AtomicUsize>,
    backoff: Backoff,
    /// The pause after a failed accept, while it lasts.
    pause: Option<Pin<Box<Sleep>>>,
    accept_failures: Throttle,
    refusals: Throttle,
}

impl Incoming {
    /// Accepts from `listener`, at most `max_connections` open at once,
    /// each speaking TLS when `tls` is given.
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<ServerTls>>,
        max_connections: usize,
        settings: ConnSettings,
    ) -> Self {
        Incoming {
            listener,
            tls,
            settings,
            max_connections,
            open: Arc::default(),
            backoff: Backoff::default(),
            pause: None,
            accept_failures: Throttle::default(),
            refusals: Throttle::default(),
        }
    }
}

impl Stream for Incoming {
    // Never an error: failures are handled (and logged) here.
    type Item = Result<Conn, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            // Tokio's cooperative budget makes this return `Pending` now and
            // then, so refusing a flood of connections cannot starve the
            // runtime.
            let (stream, peer) = match ready!(this.listener.poll_accept(cx)) {
                Ok(accepted) => accepted,
                Err(e) if concerns_one_connection(&e) => continue,
                Err(e) => {
                    let delay = this.backoff.next();
                    if let Some(suppressed) = this.accept_failures.pass() {
                        tracing::warn!(error = %e, retry_in = ?delay, suppressed,
                            "accepting connections failed; backing off");
                    }
                    this.pause = Some(Box::pin(tokio::time::sleep(delay)));
                    continue;
                }
            };
            this.backoff.reset();
            let Some(slot) = Slot::take(&this.open, this.max_connections) else {
                drop(stream);
                if let Some(suppressed) = this.refusals.pass() {
                    tracing::warn!(%peer, max_connections = this.max_connections, suppressed,
                        "connection limit reached; closing new connections");
                }
                continue;
            };
            tune(&stream);
            let tcp = TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(peer),
            };
            let io = match &this.tls {
                Some(tls) => ServerIo::tls(stream, tls.config(), peer),
                None => ServerIo::Plain(stream),
            };
            return Poll::Ready(Some(Ok(Conn::new(io, tcp, slot, &this.settings))));
        }
    }
}

/// Whether a failed accept concerns only the connection being accepted,
/// so that the next accept may succeed at once.
fn concerns_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Sets `TCP_NODELAY` and TCP keepalive on an accepted socket.
fn tune(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

/// Exponential backoff of the accept loop.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: MIN_BACKOFF }
    }
}

impl Backoff {
    /// The pause to take now; the next one is twice as long, up to the cap.
    fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(MAX_BACKOFF);
        pause
    }

    fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }
}

/// Lets one event through per [`WARN_EVERY`] and counts the others.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(events suppressed since the last one let through)` when this
    /// one may be logged.
    fn pass(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + WARN_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Raises the soft limit of open files to the hard limit (every connection
/// holds a file descriptor) and logs it. Returns the limit in force, `None`
/// when unlimited.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let shown =
        |limit: Option<u64>| limit.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        tracing::info!(open_files = %shown(limit.current), "open file limit");
        return limit.current;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(open_files = %shown(limit.maximum), was = %shown(limit.current),
                "raised the open file limit");
            limit.maximum
        }
        Err(e) => {
            tracing::warn!(error = %e, open_files = %shown(limit.current),
                hard_limit = %shown(limit.maximum), "cannot raise the open file limit");
            limit.current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..10).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), MIN_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let mut t = Throttle::default();
        assert_eq!(t.pass(), Some(0));
        assert_eq!(t.pass(), None);
        assert_eq!(t.pass(), None);
        tokio::time::advance(WARN_EVERY).await;
        assert_eq!(t.pass(), Some(2));
        assert_eq!(t.pass(), None);
    }
}
