//! Who is calling, and the cookies that say so: the signed session cookie
//! set by the login form, and the CSRF token every form carries.
//!
//! Edge layer. Both cookies are HMAC-SHA256 signed with a key drawn at
//! start (so a restart logs everyone out) and are `HttpOnly` and
//! `SameSite=Strict`. The CSRF token is a signed double-submit cookie: a
//! random nonce with a MAC over it and the session, sent both as a cookie
//! and as the `csrf` field of every form; a POST must carry the two equal
//! and valid. A token of another session (or of none, after logging in) is
//! refused, and a site that cannot read the cookie cannot forge the field.
//! Over HTTPS both cookies are also `Secure`.
//!
//! A session names the principal and the credential it logged in with;
//! the authorizer re-checks that credential at each request
//! ([`Authorizer::resume`](super::Authorizer::resume)), so a revoked token
//! ends its sessions at once. Without a session or a bearer token, a
//! verified TLS client certificate (mutual TLS) names the caller.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::auth::Principal;
use super::listener::Peer;
use super::{Console, HttpError};

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "herald_session";
/// Name of the CSRF cookie (and of the form field that must repeat it).
pub(crate) const CSRF_COOKIE: &str = "herald_csrf";
/// How long a login lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

type HmacSha256 = hmac::Hmac<Sha256>;

/// Sent with every answer: no framing by other sites (clickjacking of the
/// action buttons), scripts, styles and connections only from this origin.
const SECURITY_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
];

/// The signing key.
pub(crate) struct Keys {
    key: [u8; 32],
}

impl Keys {
    /// A fresh random key.
    pub(crate) fn generate() -> Result<Keys, HttpError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| HttpError::Random(e.to_string()))?;
        Ok(Keys { key })
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn sign(&self, parts: &[&[u8]]) -> String {
        hex(&self.mac(parts).finalize().into_bytes())
    }

    fn verify(&self, parts: &[&[u8]], signature: &str) -> bool {
        unhex(signature).is_some_and(|sig| self.mac(parts).verify_slice(&sig).is_ok())
    }

    /// The session cookie value for `principal` (name and credential),
    /// valid until `expires`.
    pub(crate) fn session(&self, principal: &Principal, expires: SystemTime) -> String {
        let expires = unix(expires).to_string();
        let name = hex(principal.name.as_bytes());
        let credential = hex(principal.credential.as_bytes());
        let sig = self.sign(&[
            b"session",
            name.as_bytes(),
            credential.as_bytes(),
            expires.as_bytes(),
        ]);
        format!("{name}.{credential}.{expires}.{sig}")
    }

    /// The principal a session cookie names, if it is ours and current.
    pub(crate) fn verify_session(&self, value: &str, now: SystemTime) -> Option<Principal> {
        let mut parts = value.split('.');
        let (name, credential, expires, sig) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let signed = [
            b"session".as_slice(),
            name.as_bytes(),
            credential.as_bytes(),
            expires.as_bytes(),
        ];
        if parts.next().is_some() || !self.verify(&signed, sig) {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        if expires <= unix(now) {
            return None;
        }
        Some(Principal {
            name: String::from_utf8(unhex(name)?).ok()?,
            credential: String::from_utf8(unhex(credential)?).ok()?,
        })
    }

    /// A new CSRF token bound to `session` (the session cookie, or "").
    pub(crate) fn csrf(&self, session: &str) -> Result<String, HttpError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| HttpError::Random(e.to_string()))?;
        let nonce = hex(&nonce);
        let sig = self.sign(&[b"csrf", nonce.as_bytes(), session.as_bytes()]);
        Ok(format!("{nonce}.{sig}"))
    }

    /// Whether `token` is one of ours for `session`.
    pub(crate) fn csrf_valid(&self, token: &str, session: &str) -> bool {
        token.split_once('.').is_some_and(|(nonce, sig)| {
            self.verify(&[b"csrf", nonce.as_bytes(), session.as_bytes()], sig)
        })
    }
}

/// The caller of one request, put into its extensions by [`identify`].
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// Who is calling: `None` when authentication is on and they have not
    /// logged in (with it off, everyone is [`Principal::anonymous`]).
    pub principal: Option<Principal>,
    /// The CSRF token to put into forms.
    pub csrf: String,
    /// The token came with the request (a POST may only be checked then).
    pub csrf_presented: bool,
    /// Path and query, to come back to after logging in.
    pub path: String,
    /// The request came over TLS: cookies are `Secure`.
    pub secure: bool,
}

impl Caller {
    /// Whether a form's `csrf` field matches the caller's valid cookie.
    pub(crate) fn csrf_matches(&self, field: &str) -> bool {
        self.csrf_presented && constant_time_eq(self.csrf.as_bytes(), field.as_bytes())
    }
}

/// Who is calling, by the first of: an `Authorization: Bearer` token (for
/// scrapers and scripts), the session cookie, the connection's client
/// certificate. `None` when authentication is on and none of them holds.
async fn principal(
    console: &Console,
    headers: &HeaderMap,
    session: &str,
    peer: Option<&Peer>,
) -> Option<Principal> {
    let Some(auth) = &console.inner.auth else {
        return Some(Principal::anonymous());
    };
    if let Some(token) = bearer(headers) {
        return auth.authenticate(token).await.ok();
    }
    if let Some(who) = console
        .inner
        .keys
        .verify_session(session, SystemTime::now())
        && let Ok(who) = auth.resume(who).await
    {
        return Some(who);
    }
    peer.and_then(Peer::certificate)
        .and_then(|name| auth.certificate(&name))
}

/// Middleware: works out the [`Caller`] from its credentials and the CSRF
/// cookie, issuing a fresh CSRF cookie when there is no valid one; logs
/// every action (POST) to the audit log with its outcome.
pub(crate) async fn identify(
    State(console): State<Console>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let keys = &console.inner.keys;
    let session = cookie(headers, SESSION_COOKIE)
        .unwrap_or_default()
        .to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.clone());
    let principal = principal(&console, headers, &session, peer.as_ref()).await;
    let presented = cookie(headers, CSRF_COOKIE)
        .filter(|t| keys.csrf_valid(t, &session))
        .map(str::to_string);
    let (csrf, fresh) = match presented {
        Some(token) => (token, false),
        None => match keys.csrf(&session) {
            Ok(token) => (token, true),
            Err(e) => return axum::response::IntoResponse::into_response(e),
        },
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let secure = peer.as_ref().is_some_and(|p| p.tls);
    let caller = Caller {
        principal,
        csrf: csrf.clone(),
        csrf_presented: !fresh,
        path,
        secure,
    };
    let action = (req.method() == Method::POST).then(|| caller.clone());
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    if let Some(caller) = action {
        audit(&caller, peer.as_ref(), response.status());
    }
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if fresh && let Ok(value) = HeaderValue::from_str(&set_cookie(CSRF_COOKIE, &csrf, None, secure))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Logs a console action (a POST) to the audit log, as the gRPC edge logs
/// management calls: who (`anonymous` with authentication off, `-` when
/// not logged in), from where, which path, and the HTTP status it answered
/// (303: done, or sent to log in; 200: a confirmation; 403: refused).
fn audit(caller: &Caller, peer: Option<&Peer>, status: axum::http::StatusCode) {
    let path = caller.path.split('?').next().unwrap_or_default();
    if path == "/login" || path == "/logout" {
        return;
    }
    let (principal, credential) = match &caller.principal {
        Some(p) if p.credential.is_empty() => (p.name.as_str(), "none"),
        Some(p) => (p.name.as_str(), p.credential.as_str()),
        None => ("-", "none"),
    };
    tracing::info!(target: crate::grpc::audit::TARGET, principal, credential,
        peer = ?peer.map(|p| p.addr), action = "console", path, status = status.as_u16(), "audit");
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, whole site,
/// `Secure` over HTTPS; `max_age` `None` for a browser-session cookie,
/// zero to delete it.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age: Option<Duration>,
    secure: bool,
) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    c
}

/// The value of cookie `name`, if the request has it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_signed_and_expire() {
        let keys = Keys::generate().unwrap();
        let now = SystemTime::now();
        let alice = Principal {
            name: "alice".into(),
            credential: "token:0123456789ab".into(),
        };
        let cookie = keys.session(&alice, now + Duration::from_secs(60));
        assert_eq!(keys.verify_session(&cookie, now), Some(alice.clone()));
        assert_eq!(
            keys.verify_session(&cookie, now + Duration::from_secs(61)),
            None,
            "expired"
        );
        let forged = cookie.replacen(&hex(b"alice"), &hex(b"admin"), 1);
        assert_eq!(keys.verify_session(&forged, now), None, "renamed");
        let other_token = cookie.replacen(&hex(b"token:0123"), &hex(b"token:9999"), 1);
        assert_ne!(other_token, cookie);
        assert_eq!(keys.verify_session(&other_token, now), None, "rebound");
        let other = Keys::generate().unwrap();
        assert_eq!(other.verify_session(&cookie, now), None, "another key");
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let keys = Keys::generate().unwrap();
        let token = keys.csrf("s1").unwrap();
        assert!(keys.csrf_valid(&token, "s1"));
        assert!(!keys.csrf_valid(&token, "s2"));
        assert!(!keys.csrf_valid(&token, ""));
        assert!(!keys.csrf_valid("00.00", "s1"));
    }
}
