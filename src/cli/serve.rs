//! `herald serve`: the only place that wires storage, broker, gRPC and
//! the HTTP console together, and the graceful shutdown sequence.
//!
//! Tests start the same server in-process through [`start`].
//!
//! Security wiring: the TLS files and the auth file are loaded at start
//! (a bad one stops the server), then checked for changes every
//! `tls.reload_interval` / `auth.reload_interval` and reloaded on SIGHUP;
//! a bad new version is logged and the previous one kept.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::AuthState;
use crate::broker::Broker;
use crate::config::{AuthMode, Config};
use crate::grpc::Security;
use crate::grpc::tls::{ServerTls, TlsFiles};

/// A running server.
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The core, for in-process inspection.
    pub broker: Broker,
    /// The console's bound address; `None` when it is off.
    pub http_addr: Option<SocketAddr>,
    stop: CancellationToken,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    config: Config,
    security: Security,
}

/// Loads the TLS and auth files the configuration names.
///
/// # Errors
/// A file cannot be read or is not valid.
pub fn load_security(config: &Config) -> anyhow::Result<Security> {
    let tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.tls.client_ca.clone(),
            };
            Some(Arc::new(ServerTls::load(files)?))
        }
        _ => None,
    };
    let auth = match (&config.auth.mode, &config.auth.file) {
        (AuthMode::Required, Some(file)) => {
            Some(Arc::new(AuthState::load(file, config.auth.cache_size)?))
        }
        _ => None,
    };
    Ok(Security {
        tls,
        auth,
        reflection: config.server.reflection,
    })
}

/// Reloads the TLS and auth files now (SIGHUP); errors are logged.
fn reload(security: &Security) {
    if let Some(tls) = &security.tls {
        let _ = tls.reload(true);
    }
    if let Some(auth) = &security.auth {
        let _ = auth.reload(true);
    }
}

/// Reloads on every SIGHUP until `stop`.
async fn reload_on_hangup(security: Security, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; TLS and auth files reload on their intervals only");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            got = hangups.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP received: reloading the TLS and auth files");
                reload(&security);
            }
        }
    }
}

/// Opens storage, binds the listener and starts serving.
///
/// # Errors
/// The data directory or metadata cannot be opened, or the address cannot be bound.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let security = load_security(&config)?;
    let broker =
        Broker::open(config.broker())
            .await
            .with_context(|| match config.storage.backend {
                crate::config::BackendKind::Embedded => {
                    format!("opening data directory {}", config.data_dir.display())
                }
                crate::config::BackendKind::Redis => "connecting to Redis (redis.url)".to_string(),
            })?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let http_listener = crate::http::bind(&config.http).await?;
    let http_addr = http_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    super::telemetry::observe_groups(&broker);
    let open_files = crate::grpc::accept::raise_open_files_limit();
    if let Some(limit) = open_files
        && limit < config.server.max_connections as u64
    {
        tracing::warn!(
            open_files = limit,
            max_connections = config.server.max_connections,
            "the open file limit is below server.max_connections: accepting will fail (and back off) before the connection limit is reached"
        );
    }
    let stop = CancellationToken::new();
    if let Some(tls) = &security.tls {
        tokio::spawn(tls.clone().watch(config.tls.reload_interval, stop.clone()));
    }
    if let Some(auth) = &security.auth {
        tokio::spawn(
            auth.clone()
                .watch(config.auth.reload_interval, stop.clone()),
        );
    }
    if security.tls.is_some() || security.auth.is_some() {
        tokio::spawn(reload_on_hangup(security.clone(), stop.clone()));
    }
    let signal = stop.clone();
    let serve = tokio::spawn(crate::grpc::serve(
        broker.clone(),
        listener,
        config.transport(),
        security.clone(),
        config.pubsub.options(),
        async move { signal.cancelled().await },
    ));
    let http = match http_listener {
        Some(listener) => {
            // One policy: with authentication on, the console asks the
            // same auth file; with TLS, it serves HTTPS with the same
            // (reloaded) certificate.
            let auth = security.auth.clone().map(|state| {
                Arc::new(crate::http::ServerAuth::new(state)) as Arc<dyn crate::http::Authorizer>
            });
            let console = crate::http::Console::new(broker.clone(), auth)?;
            let scheme = if security.tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!(addr = ?http_addr, scheme, "console and /metrics are serving");
            Some(tokio::spawn(crate::http::serve(
                console,
                listener,
                security.tls.clone(),
                stop.clone(),
            )))
        }
        None => None,
    };
    let tls = match &security.tls {
        Some(t) if t.mutual() => "mutual",
        Some(_) => "on",
        None => "off",
    };
    let auth = if security.auth.is_some() {
        "required"
    } else {
        "off"
    };
    tracing::info!(%addr, data_dir = %config.data_dir.display(), fsync = %config.storage.fsync,
        tls, auth, version = env!("CARGO_PKG_VERSION"), "herald is serving");
    Ok(RunningServer {
        addr,
        broker,
        http_addr,
        stop,
        serve,
        http,
        config,
        security,
    })
}

impl RunningServer {
    /// Reloads the TLS and auth files now, as SIGHUP does.
    pub fn reload(&self) {
        reload(&self.security);
    }

    /// Graceful shutdown: stop accepting, end consumer streams (persisting
    /// group progress), let open calls finish (up to `shutdown_timeout`),
    /// then flush and sync every log.
    ///
    /// # Errors
    /// The transport ended with an error.
    pub async fn stop(self) -> anyhow::Result<()> {
        tracing::info!("shutting down: draining calls and flushing storage");
        self.stop.cancel();
        self.broker.stop_groups().await;
        let mut serve = self.serve;
        let result = match tokio::time::timeout(self.config.shutdown_timeout, &mut serve).await {
            Ok(joined) => joined
                .context("server task failed")?
                .map_err(anyhow::Error::from),
            Err(_) => {
                tracing::warn!(timeout = ?self.config.shutdown_timeout, "calls still open at the shutdown timeout; closing them");
                serve.abort();
                Ok(())
            }
        };
        if let Some(mut http) = self.http {
            // Live tails ended with the broker's readers; a browser that
            // keeps a connection open longer is cut off.
            match tokio::time::timeout(self.config.shutdown_timeout, &mut http).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the console listener failed"),
                Ok(_) => {}
                Err(_) => http.abort(),
            }
        }
        self.broker.shutdown().await;
        tracing::info!("shutdown complete");
        result
    }
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully.
///
/// # Errors
/// Start-up failed, or shutdown reported an error.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = start(config).await?;
    wait_for_signal().await?;
    server.stop().await
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
    Ok(())
}
