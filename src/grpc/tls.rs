//! TLS at the transport edge: the server certificate (reloaded without a
//! restart), mutual TLS, and the principal a client certificate names.
//!
//! gRPC layer, over rustls (ring) through tokio-rustls; no OpenSSL.
//!
//! - **Handshake.** The accept loop (`accept.rs`) wraps each socket in a
//!   [`ServerIo`] holding the [`ServerConfig`] in force at accept time; the
//!   handshake runs on the connection's own task the first time hyper reads
//!   or writes, so a slow client never holds up the accept loop. The
//!   handshake timeout of `connection.rs` covers it (it ends with the
//!   HTTP/2 preface, which comes after the TLS handshake).
//! - **Reload.** [`ServerTls`] keeps the current config behind a lock and
//!   swaps in a new one when the files change (polled) or on SIGHUP.
//!   Connections already open keep the session they negotiated, so open
//!   streams are not disturbed; new connections get the new certificate.
//!   A file that does not load is logged and the previous config stays.
//! - **Mutual TLS.** With `tls.client_ca`, a client must present a
//!   certificate that chains to one of those CAs, or the handshake fails.
//!   Its principal is the first DNS, URI or email subject alternative name,
//!   else the subject's common name ([`principal_of`]); it is put in the
//!   connection's [`PeerIdentity`] for the authentication layer.
//! - **The console** (`http::listener`) accepts with the same files and
//!   reloads: [`ServerTls::http_config`] is the gRPC config with ALPN
//!   `http/1.1` instead of `h2`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::auth::watch::FileStamp;

/// Why the TLS files could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM item.
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// rustls refused the certificate, key or CAs (e.g. a key that does not
    /// belong to the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The TLS files of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CAs of client certificates (mutual TLS), if required.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// The server's TLS configuration, reloadable.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Configs>,
    /// Stamps of the files last read, loadable or not.
    stamps: Mutex<Vec<Option<FileStamp>>>,
}

/// The configs in force, from the same files: gRPC's (ALPN `h2`) and the
/// console's (ALPN `http/1.1`).
#[derive(Debug, Clone)]
struct Configs {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
}

impl Configs {
    fn build(files: &TlsFiles) -> Result<Configs, TlsError> {
        let grpc = build(files)?;
        let mut http = grpc.clone();
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Configs {
            grpc: Arc::new(grpc),
            http: Arc::new(http),
        })
    }
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// Builds a rustls server config from the files.
///
/// # Errors
/// A file is unreadable or not PEM, or rustls refuses its contents.
pub fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("tls.cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_error("tls.key", &files.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("tls.client_ca", path)? {
                roots
                    .add(ca)
                    .map_err(|e| file_error("tls.client_ca", path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| file_error("tls.client_ca", path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("tls.cert and tls.key: {e}")))?;
    // gRPC is HTTP/2 only; clients (grpc-go, grpc-js) insist on ALPN "h2".
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl ServerTls {
    /// Loads the files.
    ///
    /// # Errors
    /// As [`build`].
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let stamps = FileStamp::of_all(files.paths());
        let configs = Configs::build(&files)?;
        Ok(ServerTls {
            files,
            current: RwLock::new(configs),
            stamps: Mutex::new(stamps),
        })
    }

    fn configs(&self) -> Configs {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The config new gRPC connections get.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.configs().grpc
    }

    /// The config new connections of the console (HTTP/1.1) get: the same
    /// certificate and client verification.
    pub fn http_config(&self) -> Arc<ServerConfig> {
        self.configs().http
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Loads the files again if one changed since they were last read
    /// (always, with `force`), and puts them in force if they load. Returns
    /// whether a new config is in force; logs either way.
    ///
    /// # Errors
    /// The new files do not load: the previous config stays in force.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let now = FileStamp::of_all(self.files.paths());
        {
            let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *stamps == now {
                return Ok(false);
            }
            *stamps = now;
        }
        match Configs::build(&self.files) {
            Ok(configs) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = configs;
                tracing::info!(cert = %self.files.cert.display(),
                    "TLS certificate reloaded; new connections use it");
                Ok(true)
            }
            Err(e) => {
                tracing::error!(error = %e,
                    "the TLS files do not load; the previous certificate stays in force");
                Err(e)
            }
        }
    }

    /// Checks the files every `interval` until `stop`.
    pub async fn watch(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        if interval.is_zero() {
            return;
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                // Errors were logged by `reload`.
                _ = ticks.tick() => { let _ = self.reload(false); }
            }
        }
    }
}

/// The principal named by a client certificate (DER): its first DNS, URI
/// or email subject alternative name, else its subject's common name;
/// `None` when it names none usable as a principal.
pub fn principal_of(cert: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, x509) = x509_parser::parse_x509_certificate(cert).ok()?;
    let usable = |name: &str| crate::auth::file::check_principal_name(name).is_ok();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) = name
                && usable(s)
            {
                return Some((*s).to_string());
            }
        }
    }
    let cn = x509.subject().iter_common_name().next()?.as_str().ok()?;
    usable(cn).then(|| cn.to_string())
}

/// What the TLS handshake of a connection established about its client:
/// unset until the handshake ends, then the principal of its certificate
/// (`None` without one). Shared by the connection and its calls.
pub type PeerIdentity = Arc<OnceLock<Option<Arc<str>>>>;

/// A connection's byte stream: plain TCP, or TLS over it.
pub enum ServerIo {
    /// No TLS.
    Plain(TcpStream),
    /// TLS, handshaking until the first read or write completes it.
    Tls(Box<TlsIo>),
}

/// A TLS server stream with a lazy handshake.
pub struct TlsIo {
    state: TlsState,
    identity: PeerIdentity,
    peer: SocketAddr,
}

enum TlsState {
    Handshake(tokio_rustls::Accept<TcpStream>),
    Ready(tokio_rustls::server::TlsStream<TcpStream>),
    Failed,
}

impl ServerIo {
    /// TLS over `stream` from `peer`, with `config`.
    pub fn tls(stream: TcpStream, config: Arc<ServerConfig>, peer: SocketAddr) -> ServerIo {
        let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
        ServerIo::Tls(Box::new(TlsIo {
            state: TlsState::Handshake(accept),
            identity: PeerIdentity::default(),
            peer,
        }))
    }

    /// What the handshake established (never set for plain TCP).
    pub fn identity(&self) -> PeerIdentity {
        match self {
            ServerIo::Plain(_) => PeerIdentity::default(),
            ServerIo::Tls(tls) => tls.identity.clone(),
        }
    }
}

impl TlsIo {
    /// Drives the handshake to its end.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let TlsState::Handshake(accept) = &mut self.state else {
            return Poll::Ready(match self.state {
                TlsState::Failed => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the TLS handshake failed",
                )),
                _ => Ok(()),
            });
        };
        match ready!(Pin::new(accept).poll(cx)) {
            Ok(stream) => {
                let principal = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| principal_of(leaf.as_ref()))
                    .map(Arc::from);
                let _ = self.identity.set(principal);
                self.state = TlsState::Ready(stream);
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                self.state = TlsState::Failed;
                Poll::Ready(Err(e))
            }
        }
    }

    fn stream(&mut self) -> Option<Pin<&mut tokio_rustls::server::TlsStream<TcpStream>>> {
        match &mut self.state {
            TlsState::Ready(s) => Some(Pin::new(s)),
            _ => None,
        }
    }
}

/// Runs `op` on the stream under `io`, driving a TLS handshake first.
macro_rules! with_stream {
    ($io:expr, $cx:expr, |$s:ident| $op:expr) => {
        match $io.get_mut() {
            ServerIo::Plain(tcp) => {
                let $s = Pin::new(tcp);
                $op
            }
            ServerIo::Tls(tls) => {
                ready!(tls.poll_handshake($cx))?;
                match tls.stream() {
                    Some($s) => $op,
                    None => Poll::Ready(Err(io::Error::from(io::ErrorKind::NotConnected))),
                }
            }
        }
    };
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        with_stream!(self, cx, |s| s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        with_stream!(self, cx, |s| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        with_stream!(self, cx, |s| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerIo::Plain(tcp) => tcp.is_write_vectored(),
            // tokio-rustls takes vectored writes; one made during the
            // handshake finishes the handshake first.
            ServerIo::Tls(_) => true,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with_stream!(self, cx, |s| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            ServerIo::Tls(tls) => match tls.stream() {
                Some(s) => s.poll_shutdown(cx),
                // Nothing was established: there is nothing to close politely.
                None => Poll::Ready(Ok(())),
            },
        }
    }
}
