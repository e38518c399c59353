//! The console's listener: plain TCP, or TLS with the server's own
//! certificate (reloaded with it) when `tls.cert` is set.
//!
//! Edge layer, over the gRPC edge's TLS machinery (`grpc::tls`): the same
//! [`ServerTls`] hands out the config in force at accept time (ALPN
//! `http/1.1` instead of `h2`), and the handshake runs on the connection's
//! own task, so a slow client never holds up accepting. With
//! `tls.client_ca`, browsers must present a client certificate too; the
//! principal it names is kept in the connection's [`Peer`], which every
//! request carries (`ConnectInfo<Peer>`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::TcpListener;

use crate::grpc::tls::{PeerIdentity, ServerIo, ServerTls};

/// The client end of one connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
    /// What the TLS handshake established about the client.
    identity: PeerIdentity,
}

impl Peer {
    /// The principal the client's certificate names, once the handshake
    /// is done; `None` without TLS or without a usable certificate.
    pub fn certificate(&self) -> Option<Arc<str>> {
        self.identity.get().cloned().flatten()
    }
}

/// Accepts console connections, over TLS when the server has a
/// certificate.
pub struct HttpListener {
    tcp: TcpListener,
    tls: Option<Arc<ServerTls>>,
}

impl HttpListener {
    /// Serves `tcp`, over TLS with `tls` when given.
    pub fn new(tcp: TcpListener, tls: Option<Arc<ServerTls>>) -> HttpListener {
        HttpListener { tcp, tls }
    }
}

impl Listener for HttpListener {
    type Io = ServerIo;
    type Addr = Peer;

    async fn accept(&mut self) -> (ServerIo, Peer) {
        loop {
            match self.tcp.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let io = match &self.tls {
                        Some(tls) => ServerIo::tls(stream, tls.http_config(), addr),
                        None => ServerIo::Plain(stream),
                    };
                    let peer = Peer {
                        addr,
                        tls: self.tls.is_some(),
                        identity: io.identity(),
                    };
                    return (io, peer);
                }
                // Out of file descriptors and the like: wait, as the gRPC
                // accept loop does, instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "the console cannot accept a connection; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Peer> {
        Ok(Peer {
            addr: self.tcp.local_addr()?,
            tls: self.tls.is_some(),
            identity: PeerIdentity::default(),
        })
    }
}

impl Connected<IncomingStream<'_, HttpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, HttpListener>) -> Peer {
        stream.remote_addr().clone()
    }
}
