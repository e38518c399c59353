//! `HttpError`: what a console page or action can fail with, and the page
//! (or status) each failure answers with.
//!
//! Edge layer. Broker errors keep their meaning: the HTTP status follows
//! the gRPC code the same error gets over gRPC.

use std::net::SocketAddr;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use crate::broker::BrokerError;

/// A failure of the HTTP listener or of one request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// `http.listen` is set to an address that cannot be bound.
    #[error("binding the console's http.listen address {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// No random bytes for the cookie signing key.
    #[error("no randomness for the console's cookie key: {0}")]
    Random(String),
    /// The broker refused or failed the operation.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A form field or query parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No such page.
    #[error("{0}")]
    NotFound(String),
    /// Authentication is on and the caller has not logged in; `next` is
    /// where to come back to after logging in.
    #[error("log in first")]
    LoginRequired {
        /// Path and query of the request.
        next: String,
    },
    /// Authentication is on and a request that cannot log in (a scraper)
    /// came without a valid bearer token: 401 with `WWW-Authenticate`.
    #[error("{0}")]
    Unauthenticated(String),
    /// The authorizer refused the action.
    #[error("{0}")]
    Forbidden(String),
    /// A POST without a valid CSRF token, or from another origin.
    #[error("this form is stale or was sent from another site; reload the page and try again")]
    Csrf,
    /// `/metrics` has no registry (the meter provider was installed without it).
    #[error("{0}")]
    MetricsOff(String),
}

impl HttpError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Broker(e) => broker_status(e),
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::LoginRequired { .. } => StatusCode::SEE_OTHER,
            HttpError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) | HttpError::Csrf => StatusCode::FORBIDDEN,
            HttpError::MetricsOff(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Bind { .. } | HttpError::Random(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The HTTP counterpart of the gRPC code each broker error maps to.
fn broker_status(e: &BrokerError) -> StatusCode {
    match e {
        BrokerError::InvalidArgument { .. } | BrokerError::OutOfRange(_) => StatusCode::BAD_REQUEST,
        BrokerError::NotFound(_) => StatusCode::NOT_FOUND,
        BrokerError::AlreadyExists(_) | BrokerError::FailedPrecondition(_) => StatusCode::CONFLICT,
        BrokerError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
        BrokerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        BrokerError::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if let HttpError::LoginRequired { next } = &self {
            let target = format!("/login?next={}", super::layout::query_escape(next));
            return Redirect::to(&target).into_response();
        }
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "console request failed");
        }
        let title = status.canonical_reason().unwrap_or("Error");
        let body = html! {
            h1 { (status.as_u16()) " " (title) }
            p.error { (self.to_string()) }
            p { a href="javascript:history.back()" { "Back" } " · " a href="/" { "Overview" } }
        };
        let page = super::layout::bare(title, body);
        let mut response = (status, [(header::CACHE_CONTROL, "no-store")], page).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"herald\""),
            );
        }
        response
    }
}

/// The fallback for unknown paths.
pub(super) async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError::NotFound(format!("there is no page at {}", uri.path()))
}
