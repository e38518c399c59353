//! Authentication at the transport edge: with `auth.mode = "required"`,
//! every call to a Herald service must carry a valid bearer token
//! (`authorization: Bearer <token>`) or come over a connection whose TLS
//! client certificate names a principal.
//!
//! gRPC layer. [`AuthnLayer`] runs before tonic decodes the request, so a
//! caller without a credential costs no decoding (a 10 MB publish from a
//! stranger is refused from its headers). It puts the [`Caller`] in the
//! request's extensions for the handlers' authorization step
//! (`guard.rs`). Health and reflection are not Herald services and stay
//! open. A token wins over a certificate when a call has both.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;

use super::connection::ConnInfo;
use super::guard::{Caller, Credential};
use super::status::auth_status;
use crate::auth::{AuthError, AuthState};

/// Paths of the services that need a credential: Herald's and the Pub/Sub
/// front door's (health and reflection stay open).
const GUARDED_PREFIXES: [&str; 2] = ["/herald.v1.", "/google.pubsub.v1."];

/// Authenticates `headers` and the connection's certificate.
///
/// # Errors
/// UNAUTHENTICATED for a malformed `authorization` header, a bad token, or
/// neither a token nor a certificate principal.
pub fn authenticate(
    auth: &AuthState,
    headers: &http::HeaderMap,
    conn: Option<&ConnInfo>,
) -> Result<Caller, AuthError> {
    let peer = conn.and_then(ConnInfo::remote_addr);
    if let Some(value) = headers.get(AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                AuthError::Unauthenticated(
                    "the authorization metadata must be `Bearer <token>`".into(),
                )
            })?;
        let principal = auth.policy().authenticate(token)?;
        let id = crate::auth::token::id_of(token).unwrap_or_default();
        return Ok(Caller::authenticated(
            principal,
            Credential::Token(Arc::from(id)),
            peer,
        ));
    }
    if let Some(name) = conn.and_then(ConnInfo::peer_principal) {
        let principal = auth.policy().principal(name);
        return Ok(Caller::authenticated(
            principal,
            Credential::Certificate,
            peer,
        ));
    }
    let hint = if conn.is_some_and(ConnInfo::is_tls) {
        "a bearer token (authorization: Bearer <token>) or a client certificate is required"
    } else {
        "a bearer token (authorization: Bearer <token>) is required"
    };
    Err(AuthError::Unauthenticated(hint.into()))
}

/// Requires a credential on every Herald call (see the module docs).
#[derive(Debug, Clone)]
pub struct AuthnLayer {
    auth: Option<Arc<AuthState>>,
}

impl AuthnLayer {
    /// Checks against `auth`; lets everything through when `None` (auth off).
    pub fn new(auth: Option<Arc<AuthState>>) -> AuthnLayer {
        AuthnLayer { auth }
    }
}

impl<S> tower::Layer<S> for AuthnLayer {
    type Service = Authn<S>;

    fn layer(&self, inner: S) -> Authn<S> {
        Authn {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service of [`AuthnLayer`].
#[derive(Debug, Clone)]
pub struct Authn<S> {
    inner: S,
    auth: Option<Arc<AuthState>>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Authn<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = AuthnFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let Some(auth) = &self.auth else {
            return AuthnFuture::Inner {
                inner: self.inner.call(request),
            };
        };
        let path = request.uri().path();
        if !GUARDED_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return AuthnFuture::Inner {
                inner: self.inner.call(request),
            };
        }
        let conn = request.extensions().get::<ConnInfo>();
        match authenticate(auth, request.headers(), conn) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                AuthnFuture::Inner {
                    inner: self.inner.call(request),
                }
            }
            Err(e) => {
                tracing::debug!(path = request.uri().path(), peer = ?conn.and_then(ConnInfo::remote_addr),
                    error = %e, "unauthenticated call refused");
                AuthnFuture::Refused {
                    response: Some(auth_status(e).into_http()),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Authn`].
    #[project = AuthnProj]
    pub enum AuthnFuture<F, B> {
        /// Passed on.
        Inner { #[pin] inner: F },
        /// Refused from the headers.
        Refused { response: Option<http::Response<B>> },
    }
}

impl<F, B, E> Future for AuthnFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuthnProj::Inner { inner } => Poll::Ready(ready!(inner.poll(cx))),
            AuthnProj::Refused { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled after completion: never ready again.
                None => Poll::Pending,
            },
        }
    }
}
