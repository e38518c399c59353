//! One client connection at the transport edge: the handshake and idle
//! timeouts, and the count of open calls that tells an idle connection from
//! a quiet one.
//!
//! gRPC layer. Every accepted socket (see `accept.rs`) is wrapped in a
//! [`Conn`], and the [`TrackCallsLayer`] on the server counts the calls open
//! on it, through the [`ConnInfo`] that tonic puts in each request's
//! extensions. A call counts as open until its response body ends or is
//! dropped, so a Subscribe or Consume stream keeps its connection open
//! however long it waits for events.
//!
//! - **Handshake:** until the client has sent the 24-byte HTTP/2 preface, the
//!   connection is closed once `handshake_timeout` has passed, or at once
//!   when the server starts shutting down (hyper's graceful shutdown would
//!   otherwise wait for the handshake).
//! - **Idle:** afterwards, it is closed once no call has been open on it for
//!   `idle_timeout`. HTTP/2 PINGs are traffic, not calls: they neither keep
//!   a connection alive nor count as one.
//!
//! A connection is closed by failing the read or write that finds the
//! socket quiet: hyper then drops the connection and the socket.
//!
//! With TLS (`tls.rs`), the socket is a [`ServerIo`] whose handshake runs on
//! the first read or write: it counts towards the handshake timeout, and
//! the principal of a client certificate reaches the calls through
//! [`ConnInfo::peer_principal`].
//!
//! Cost on the hot path: a read or write that makes progress does no extra
//! work. One that would block registers the connection task's waker (two
//! atomic operations) and loads the call count; only a connection with no
//! open call goes on to poll its timer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::tls::{PeerIdentity, ServerIo};

/// The client connection preface of HTTP/2 (RFC 9113, section 3.4) is
/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: this many bytes.
const PREFACE_LEN: usize = 24;

/// Timeouts of every connection.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// Time from accept to the end of the client preface.
    pub handshake_timeout: Duration,
    /// Time with no open call after which a connection is closed; `None`
    /// keeps idle connections open.
    pub idle_timeout: Option<Duration>,
    /// Cancelled when the server stops accepting: connections still in
    /// their handshake close at once.
    pub stopping: CancellationToken,
}

/// What the calls of a connection share with its [`Conn`].
#[derive(Debug, Default)]
struct Calls {
    /// Calls open now.
    open: AtomicUsize,
    /// Calls ended so far; bumped before `open` drops, so a reader that sees
    /// `open == 0` also sees the end that made it so.
    ended: AtomicU64,
    /// The connection task, woken when the last open call ends so that it
    /// starts the idle timer.
    reader: AtomicWaker,
}

/// The connect info of a [`Conn`], put by tonic in each request's
/// extensions: the addresses, and the handle [`TrackCallsLayer`] counts
/// calls through.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    tcp: TcpConnectInfo,
    calls: Arc<Calls>,
    identity: PeerIdentity,
    tls: bool,
}

impl ConnInfo {
    /// The client's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.tcp.remote_addr
    }

    /// The principal named by the client's TLS certificate, if it
    /// presented one that names a principal.
    pub fn peer_principal(&self) -> Option<&str> {
        self.identity.get().and_then(|p| p.as_deref())
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

/// A slot of the server's connection limit, given back on drop.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a slot of `count` unless `max` are taken.
    pub fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a connection is in its life.
enum Phase {
    /// Before the end of the client preface; `seen` bytes of it so far.
    Handshake {
        seen: usize,
        stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    },
    /// Serving; closed after `idle` with no open call. `seen_ended` is the
    /// value of [`Calls::ended`] the idle timer was last started for.
    Serving { idle: Duration, seen_ended: u64 },
    /// Serving with no idle timeout: nothing to watch.
    Unwatched,
}

/// An accepted connection with handshake and idle timeouts.
pub struct Conn {
    stream: ServerIo,
    info: ConnInfo,
    phase: Phase,
    /// The handshake deadline, then the idle deadline.
    deadline: Pin<Box<Sleep>>,
    idle_timeout: Option<Duration>,
    /// Set once the connection has been failed, so that it is logged once.
    closing: bool,
    _slot: Slot,
}

impl Conn {
    /// Wraps `stream`, accepted with the addresses `tcp`, holding `slot`
    /// until the connection is dropped.
    pub fn new(stream: ServerIo, tcp: TcpConnectInfo, slot: Slot, settings: &ConnSettings) -> Conn {
        let info = ConnInfo {
            tcp,
            calls: Arc::default(),
            identity: stream.identity(),
            tls: matches!(stream, ServerIo::Tls(_)),
        };
        Conn {
            stream,
            info,
            phase: Phase::Handshake {
                seen: 0,
                stopping: Box::pin(settings.stopping.clone().cancelled_owned()),
            },
            deadline: Box::pin(tokio::time::sleep(settings.handshake_timeout)),
            idle_timeout: settings.idle_timeout,
            closing: false,
            _slot: slot,
        }
    }

    /// Counts `n` bytes read towards the preface; past it, starts serving.
    fn read_preface(&mut self, n: usize) {
        let Phase::Handshake { seen, .. } = &mut self.phase else {
            return;
        };
        *seen += n;
        if *seen < PREFACE_LEN {
            return;
        }
        self.phase = match self.idle_timeout {
            Some(idle) => {
                self.deadline.as_mut().reset(Instant::now() + idle);
                Phase::Serving {
                    idle,
                    seen_ended: self.info.calls.ended.load(Ordering::Acquire),
                }
            }
            None => Phase::Unwatched,
        };
    }

    /// Called when the socket would block: the error that closes the
    /// connection once it has timed out, else `Pending` with this task
    /// woken at the deadline (and when the last open call ends).
    fn poll_timed_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let reason = match &mut self.phase {
            Phase::Unwatched => return Poll::Pending,
            Phase::Handshake { stopping, .. } => {
                if stopping.as_mut().poll(cx).is_ready() {
                    "the server is shutting down"
                } else {
                    ready!(self.deadline.as_mut().poll(cx));
                    "no HTTP/2 preface within the handshake timeout"
                }
            }
            Phase::Serving { idle, seen_ended } => {
                let calls = &self.info.calls;
                // Register before loading, so that a call ending after the
                // load wakes this task.
                calls.reader.register(cx.waker());
                if calls.open.load(Ordering::Acquire) != 0 {
                    return Poll::Pending;
                }
                let ended = calls.ended.load(Ordering::Acquire);
                if ended != *seen_ended {
                    *seen_ended = ended;
                    self.deadline.as_mut().reset(Instant::now() + *idle);
                }
                ready!(self.deadline.as_mut().poll(cx));
                "no open call within the idle timeout"
            }
        };
        if !self.closing {
            self.closing = true;
            tracing::debug!(peer = ?self.info.remote_addr(), reason, "closing connection");
        }
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, reason))
    }

    /// Passes `polled` through unless it is `Pending` and the connection
    /// has timed out.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.poll_timed_out(cx).map(Err),
            ready => ready,
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && let Phase::Handshake { .. } = this.phase
        {
            this.read_preface(buf.filled().len() - before);
        }
        this.check(cx, polled)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.check(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.check(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// One open call of a connection, from the request until the response
/// body ends or is dropped.
#[derive(Debug)]
pub struct OpenCall(Arc<Calls>);

impl OpenCall {
    fn new(calls: &Arc<Calls>) -> OpenCall {
        calls.open.fetch_add(1, Ordering::AcqRel);
        OpenCall(calls.clone())
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        let calls = &self.0;
        calls.ended.fetch_add(1, Ordering::AcqRel);
        if calls.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            calls.reader.wake();
        }
    }
}

/// Takes the [`ConnInfo`] that tonic put in `extensions`, if any, and
/// opens a call on its connection. Also puts the plain [`TcpConnectInfo`]
/// there, so `tonic::Request::remote_addr` keeps working.
pub fn open_call(extensions: &mut http::Extensions) -> Option<OpenCall> {
    let info = extensions.get::<ConnInfo>()?;
    let call = OpenCall::new(&info.calls);
    let tcp = info.tcp.clone();
    extensions.insert(tcp);
    Some(call)
}

/// Counts the calls open on each connection (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackCallsLayer;

impl<S> tower::Layer<S> for TrackCallsLayer {
    type Service = TrackCalls<S>;

    fn layer(&self, inner: S) -> TrackCalls<S> {
        TrackCalls { inner }
    }
}

/// The service of [`TrackCallsLayer`].
#[derive(Debug, Clone)]
pub struct TrackCalls<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for TrackCalls<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<CallBody<ResBody>>;
    type Error = S::Error;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let call = open_call(request.extensions_mut());
        CallFuture {
            inner: self.inner.call(request),
            call,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TrackCalls`]: hands the open call on to
    /// the response body.
    pub struct CallFuture<F> {
        #[pin]
        inner: F,
        call: Option<OpenCall>,
    }
}

impl<F, B, E> Future for CallFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<CallBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let call = this.call.take();
        Poll::Ready(Ok(response.map(|inner| CallBody { inner, call })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call open until it ends or is dropped.
    pub struct CallBody<B> {
        #[pin]
        inner: B,
        call: Option<OpenCall>,
    }
}

impl<B: http_body::Body> http_body::Body for CallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // The body has ended (or failed): the call is over.
            this.call.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
