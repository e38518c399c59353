//! Form bodies of console actions, accepted only with a valid CSRF token.
//!
//! Edge layer. Every state-changing action is a POST whose handler takes a
//! [`Form`]: extracting it checks the `csrf` field against the caller's
//! signed cookie (and an `Origin` header, when the browser sends one,
//! against the `Host`), so no handler can forget the check.

use axum::extract::{FromRequest, Request};
use axum::http::header;

use super::HttpError;
use super::session::Caller;

/// Largest form body (a test event's payload is the big field).
const MAX_FORM_BYTES: usize = 2 << 20;

/// The fields of a form, in order; a name may repeat (checkboxes).
#[derive(Debug, Clone, Default)]
pub(crate) struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, if not empty.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every field but the CSRF token and `confirmed`, to carry through a
    /// confirmation step.
    pub(crate) fn carried(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .filter(|(k, _)| k != "csrf" && k != "confirmed")
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A duration field (`30s`, `2m`); `None` when empty.
    pub(crate) fn duration(&self, name: &str) -> Result<Option<std::time::Duration>, HttpError> {
        self.text(name)
            .map(|v| {
                humantime::parse_duration(v).map_err(|e| {
                    HttpError::BadRequest(format!(
                        "{name}: {v:?} is not a duration ({e}); write e.g. 30s, 5m, 1h"
                    ))
                })
            })
            .transpose()
    }

    /// A number field; `None` when empty.
    pub(crate) fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, HttpError> {
        self.text(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| HttpError::BadRequest(format!("{name}: {v:?} is not a number")))
            })
            .transpose()
    }

    /// The user confirmed the action (the dialog, or the confirmation page).
    pub(crate) fn confirmed(&self) -> bool {
        self.get("confirmed") == Some("1")
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = HttpError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let caller = req
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or(HttpError::Csrf)?;
        if !same_origin(req.headers()) {
            return Err(HttpError::Csrf);
        }
        let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|e| HttpError::BadRequest(format!("reading the form: {e}")))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|e| HttpError::BadRequest(format!("the form does not decode: {e}")))?;
        let form = Form { fields };
        if !caller.csrf_matches(form.get("csrf").unwrap_or_default()) {
            return Err(HttpError::Csrf);
        }
        Ok(form)
    }
}

/// False when the browser says the form comes from another origin.
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}
