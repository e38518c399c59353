//! The HTTP listener beside gRPC (`http.listen`): the web console and
//! Prometheus `/metrics`.
//!
//! Edge layer, a sibling of `grpc/`: every page and action makes one call
//! (or a few) on the [`Broker`], the same operations the gRPC services
//! call, so there is no second copy of any rule here. What this module
//! keeps of its own is small: publish and delivery rate samples
//! (`rates.rs`), the key that signs session and CSRF cookies
//! (`session.rs`), and an optional [`auth::Authorizer`] that says who is
//! calling and what they may do (without one, everything is allowed; the
//! listener binds to loopback by default). With `auth.mode = "required"`
//! the server plugs in its own auth file ([`ServerAuth`], `policy.rs`), so
//! the console and gRPC share one policy; with `tls.cert` the listener
//! speaks HTTPS with the server's certificate (`listener.rs`).
//!
//! Pages are rendered on the server (maud); the one script (`assets/`)
//! only adds the live tail (server-sent events) and confirmation dialogs,
//! and every action also works without it. Files: one per page group
//! (`overview`, `topics`, `topic`, `tail`, `group`, `dead_letters`,
//! `metrics`), plus `layout` (the page shell and formatting), `form`
//! (CSRF-checked form bodies), `session`, `auth`, `policy`, `listener`,
//! `assets` and `error`.

mod assets;
pub mod auth;
mod dead_letters;
mod error;
mod form;
mod group;
mod layout;
pub mod listener;
pub mod metrics;
mod overview;
pub mod policy;
pub mod rates;
mod session;
mod tail;
mod topic;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::{DEFAULT_HTTP_LISTEN, HttpConfig};
use crate::grpc::tls::ServerTls;

pub use auth::{Action, AuthError, Authorizer, Principal};
pub use error::HttpError;
pub use listener::{HttpListener, Peer};
pub use policy::ServerAuth;
pub use rates::Rates;

/// How often the rate sampler looks at the broker's counters.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Everything a page handler needs; a cheap `Clone` handle.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    /// `None`: authentication is off and every action is allowed.
    auth: Option<Arc<dyn Authorizer>>,
    /// Signs session and CSRF cookies; random per process, so a restart
    /// logs everyone out.
    keys: session::Keys,
    rates: Rates,
}

impl Console {
    /// A console over `broker`, asking `auth` (when given) who is calling
    /// and what they may do.
    ///
    /// # Errors
    /// The operating system gave no random bytes for the cookie key.
    pub fn new(broker: Broker, auth: Option<Arc<dyn Authorizer>>) -> Result<Console, HttpError> {
        Ok(Console {
            inner: Arc::new(Inner {
                broker,
                auth,
                keys: session::Keys::generate()?,
                rates: Rates::default(),
            }),
        })
    }

    /// The broker every page calls.
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    /// The publish and delivery rate samples.
    pub fn rates(&self) -> &Rates {
        &self.inner.rates
    }

    /// Every page, action, asset and `/metrics`.
    pub fn router(&self) -> Router {
        let group = "/topics/{topic}/groups/{group}";
        Router::new()
            .route("/", get(overview::page))
            .route("/topics", get(topics::page).post(topics::create))
            .route("/topics/{topic}", get(topic::page))
            .route("/topics/{topic}/delete", post(topics::delete))
            .route("/topics/{topic}/publish", post(topic::publish))
            .route("/topics/{topic}/groups", post(topic::create_group))
            .route("/topics/{topic}/tail", get(tail::stream))
            .route(group, get(group::page))
            .route(&format!("{group}/settings"), post(group::update))
            .route(&format!("{group}/seek"), post(group::seek))
            .route(&format!("{group}/delete"), post(group::delete))
            .route(&format!("{group}/dead-letters"), get(dead_letters::page))
            .route(
                &format!("{group}/dead-letters/replay"),
                post(dead_letters::replay),
            )
            .route(
                &format!("{group}/dead-letters/purge"),
                post(dead_letters::purge),
            )
            .route("/metrics", get(metrics::page))
            .route("/login", get(auth::login_page).post(auth::login))
            .route("/logout", post(auth::logout))
            .route("/assets/{file}", get(assets::file))
            .fallback(error::not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                session::identify,
            ))
            .with_state(self.clone())
    }
}

/// Binds the listener `config` asks for: `None` when it is turned off, or
/// when it is left at the default address and that port is taken (logged
/// as a warning: the server runs without a console).
///
/// # Errors
/// An address set in the configuration cannot be bound.
pub async fn bind(config: &HttpConfig) -> Result<Option<TcpListener>, HttpError> {
    bind_or(config, DEFAULT_HTTP_LISTEN).await
}

/// [`bind`] with `default` for an unset `http.listen`.
async fn bind_or(
    config: &HttpConfig,
    default: SocketAddr,
) -> Result<Option<TcpListener>, HttpError> {
    if !config.enabled {
        return Ok(None);
    }
    let (addr, explicit) = match config.listen {
        Some(addr) => (addr, true),
        None => (default, false),
    };
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if !explicit => {
            tracing::warn!(%addr, error = %e,
                "the console and /metrics are off: their default address cannot be bound (set http.listen to another address, or http.enabled = false)");
            Ok(None)
        }
        Err(source) => Err(HttpError::Bind { addr, source }),
    }
}

/// Serves the console on `listener` (over TLS with `tls`) until
/// `shutdown` is cancelled, and samples rates every [`SAMPLE_INTERVAL`]
/// meanwhile. Open streams (the live tail) end when the broker stops its
/// readers at shutdown.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    console: Console,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    if console.inner.auth.is_none() && addr.is_some_and(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            ?addr,
            "the console and /metrics listen beyond loopback with authentication off: anyone who reaches this address can delete topics and replay dead letters"
        );
    }
    let sampler = {
        let console = console.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { rates::run(console, SAMPLE_INTERVAL, stop).await })
    };
    let app = console
        .router()
        .into_make_service_with_connect_info::<Peer>();
    let stop = shutdown.clone();
    let result = axum::serve(HttpListener::new(listener, tls), app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    sampler.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_default_port_is_skipped_but_a_configured_one_is_an_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let unset = HttpConfig {
            enabled: true,
            listen: None,
        };
        assert!(
            bind_or(&unset, addr).await.unwrap().is_none(),
            "default taken: run without"
        );
        let set = HttpConfig {
            enabled: true,
            listen: Some(addr),
        };
        let err = bind_or(&set, addr).await.unwrap_err().to_string();
        assert!(
            err.contains("http.listen") && err.contains(&addr.to_string()),
            "{err}"
        );
        let off = HttpConfig {
            enabled: false,
            listen: Some(addr),
        };
        assert!(
            bind_or(&off, addr).await.unwrap().is_none(),
            "off binds nothing"
        );
        drop(taken);
        let free = bind_or(&unset, addr).await.unwrap().expect("bound");
        assert_eq!(free.local_addr().unwrap(), addr);
    }
}
