//! `herald serve`: the only place that wires storage, broker, gRPC and
//! the HTTP console together, and the graceful shutdown sequence.
//!
//! Tests start the same server in-process through [`start`].

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::Config;

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
}

/// Opens storage, binds the listener and starts serving.
///
/// # Errors
/// The data directory or metadata cannot be opened, or the address cannot be bound.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
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
    let signal = stop.clone();
    let serve = tokio::spawn(crate::grpc::serve(
        broker.clone(),
        listener,
        config.transport(),
        async move { signal.cancelled().await },
    ));
    let http = match http_listener {
        Some(listener) => {
            let console = crate::http::Console::new(broker.clone(), None)?;
            tracing::info!(addr = ?http_addr, "console and /metrics are serving");
            Some(tokio::spawn(crate::http::serve(
                console,
                listener,
                stop.clone(),
            )))
        }
        None => None,
    };
    tracing::info!(%addr, data_dir = %config.data_dir.display(), fsync = %config.storage.fsync,
        version = env!("CARGO_PKG_VERSION"), "herald is serving");
    Ok(RunningServer {
        addr,
        broker,
        http_addr,
        stop,
        serve,
        http,
        config,
    })
}

impl RunningServer {
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
