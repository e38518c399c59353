//! Authentication and authorization of the console: the [`Authorizer`]
//! hook, the login form and logout.
//!
//! Edge layer. The console does not hold a permission model of its own:
//! it asks an [`Authorizer`] who holds a token (typed on the login form,
//! or sent as `Authorization: Bearer` by a Prometheus scraper) and whether
//! that principal may do an [`Action`], each of which names the gRPC
//! method it stands for so that the console and the gRPC edge can share one
//! policy. With no authorizer (the default) authentication is off: everyone
//! is [`Principal::anonymous`] and every action is allowed, which is why
//! the listener binds to loopback by default. `herald serve` plugs in the
//! server's own auth file when `auth.mode = "required"` (`policy.rs`).

use std::time::SystemTime;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::form::Form;
use super::session::{Caller, SESSION_COOKIE, SESSION_TTL, set_cookie};
use super::{Console, HttpError, layout};

/// Who is calling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The name shown in the page header and in logs.
    pub name: String,
    /// What proved it, in the authorizer's words (`token:<id>`,
    /// `certificate`; empty for nothing in particular). A login session
    /// carries it, and [`Authorizer::resume`] checks at each request that
    /// it still holds, so revoking a token ends its sessions.
    pub credential: String,
}

impl Principal {
    /// Everyone, when authentication is off.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            credential: String::new(),
        }
    }
}

/// Something the console can do, named after the RPC that does the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Overview: version, uptime, totals, rates.
    GetServerInfo,
    /// The topics page.
    ListTopics,
    /// A topic page.
    GetTopic,
    /// Create a topic.
    CreateTopic,
    /// Delete a topic.
    DeleteTopic,
    /// Publish a test event.
    Publish,
    /// The live tail of a topic.
    Read,
    /// The groups of a topic.
    ListGroups,
    /// A group page.
    GetGroup,
    /// Create a group.
    CreateGroup,
    /// Change a group's settings.
    UpdateGroup,
    /// Delete a group.
    DeleteGroup,
    /// Move a group.
    Seek,
    /// The dead letters of a group.
    ListDeadLetters,
    /// Replay dead letters.
    ReplayDeadLetters,
    /// Purge dead letters.
    PurgeDeadLetters,
    /// Prometheus `/metrics` (no RPC counterpart).
    ScrapeMetrics,
}

impl Action {
    /// The full gRPC method this action stands for (`/metrics`: a name of its own).
    pub fn rpc(self) -> &'static str {
        match self {
            Action::GetServerInfo => "herald.v1.AdminService/GetServerInfo",
            Action::ListTopics => "herald.v1.AdminService/ListTopics",
            Action::GetTopic => "herald.v1.AdminService/GetTopic",
            Action::CreateTopic => "herald.v1.AdminService/CreateTopic",
            Action::DeleteTopic => "herald.v1.AdminService/DeleteTopic",
            Action::Publish => "herald.v1.PublisherService/Publish",
            Action::Read => "herald.v1.SubscriberService/Read",
            Action::ListGroups => "herald.v1.AdminService/ListGroups",
            Action::GetGroup => "herald.v1.AdminService/GetGroup",
            Action::CreateGroup => "herald.v1.AdminService/CreateGroup",
            Action::UpdateGroup => "herald.v1.AdminService/UpdateGroup",
            Action::DeleteGroup => "herald.v1.AdminService/DeleteGroup",
            Action::Seek => "herald.v1.AdminService/Seek",
            Action::ListDeadLetters => "herald.v1.DeadLetterService/ListDeadLetters",
            Action::ReplayDeadLetters => "herald.v1.DeadLetterService/ReplayDeadLetters",
            Action::PurgeDeadLetters => "herald.v1.DeadLetterService/PurgeDeadLetters",
            Action::ScrapeMetrics => "metrics",
        }
    }
}

/// Why an authorizer refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is unknown, expired or malformed.
    #[error("unknown or expired token")]
    BadToken,
    /// The principal may not do this.
    #[error("{0}")]
    Denied(String),
}

/// Says who holds a token and what they may do. Plugged into
/// [`Console::new`]; the server's auth file implements it
/// ([`super::ServerAuth`]), with the gRPC edge's table of what each RPC
/// needs.
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// The principal holding `token`.
    ///
    /// # Errors
    /// [`AuthError::BadToken`] for a token that names no one.
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthError>;

    /// Whether `who` may do `action`, on `topic` when the action is about one.
    ///
    /// # Errors
    /// [`AuthError::Denied`] saying what is missing.
    fn authorize(
        &self,
        who: &Principal,
        action: Action,
        topic: Option<&str>,
    ) -> Result<(), AuthError>;

    /// The principal of a login session made earlier, if its credential
    /// still holds (the default: always).
    ///
    /// # Errors
    /// [`AuthError::BadToken`] when it does not: the session is over.
    async fn resume(&self, who: Principal) -> Result<Principal, AuthError> {
        Ok(who)
    }

    /// The principal a verified TLS client certificate names (`name`, as
    /// the gRPC edge reads it), when certificates may log in (the default:
    /// they may not).
    fn certificate(&self, name: &str) -> Option<Principal> {
        let _ = name;
        None
    }

    /// Whether `who` may see `topic` at all: lists, and the series of
    /// `/metrics`, show only such topics (the default: every topic).
    fn may_see(&self, who: &Principal, topic: &str) -> bool {
        let _ = (who, topic);
        true
    }

    /// Whether `who` sees every topic, so lists need no filtering.
    fn sees_all(&self, who: &Principal) -> bool {
        let _ = who;
        true
    }
}

impl Console {
    /// Checks that the caller may do `action` (on `topic`): they must have
    /// logged in when authentication is on, and the authorizer must agree.
    ///
    /// # Errors
    /// [`HttpError::LoginRequired`] or [`HttpError::Forbidden`].
    pub(crate) fn allow(
        &self,
        caller: &Caller,
        action: Action,
        topic: Option<&str>,
    ) -> Result<(), HttpError> {
        let Some(auth) = &self.inner.auth else {
            return Ok(());
        };
        let who = caller
            .principal
            .as_ref()
            .ok_or_else(|| HttpError::LoginRequired {
                next: caller.path.clone(),
            })?;
        auth.authorize(who, action, topic).map_err(|e| {
            tracing::info!(principal = %who.name, action = action.rpc(), topic, "console action refused");
            HttpError::Forbidden(format!("{} may not do {}: {e}", who.name, action.rpc()))
        })
    }

    /// Whether authentication is on.
    pub(crate) fn auth_on(&self) -> bool {
        self.inner.auth.is_some()
    }

    /// Whether the caller may see `topic` in lists and metrics.
    pub(crate) fn may_see(&self, caller: &Caller, topic: &str) -> bool {
        match (&self.inner.auth, &caller.principal) {
            (None, _) => true,
            (Some(auth), Some(who)) => auth.may_see(who, topic),
            (Some(_), None) => false,
        }
    }

    /// Whether the caller sees every topic (lists need no filtering).
    pub(crate) fn sees_all(&self, caller: &Caller) -> bool {
        match (&self.inner.auth, &caller.principal) {
            (None, _) => true,
            (Some(auth), Some(who)) => auth.sees_all(who),
            (Some(_), None) => false,
        }
    }

    /// Checks an action that creates `topic` when it is missing and
    /// auto-create is on (a test event published to a new topic): that
    /// also needs the right to create it, as over gRPC.
    ///
    /// # Errors
    /// As [`Console::allow`]; a storage failure reading whether it exists.
    pub(crate) async fn allow_implicit_create(
        &self,
        caller: &Caller,
        topic: &str,
    ) -> Result<(), HttpError> {
        let broker = self.broker();
        if !self.auth_on() || !broker.config().auto_create || broker.has_topic(topic).await? {
            return Ok(());
        }
        self.allow(caller, Action::CreateTopic, Some(topic))
    }
}

#[derive(Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

/// Only paths of this site are followed after logging in.
fn local(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or("/")
        .to_string()
}

/// `GET /login`: the token form.
pub(super) async fn login_page(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Next>,
) -> Response {
    login_form(&console, &caller, &local(q.next.as_deref()), None).into_response()
}

fn login_form(console: &Console, caller: &Caller, next: &str, error: Option<&str>) -> maud::Markup {
    let body = if console.auth_on() {
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { p.error { (e) } }
            form.card method="post" action="/login" {
                input type="hidden" name="csrf" value=(caller.csrf);
                input type="hidden" name="next" value=(next);
                label { "Token" input type="password" name="token" autocomplete="current-password" required autofocus; }
                button type="submit" { "Log in" }
            }
        }
    } else {
        html! {
            h1 { "Log in" }
            p { "Authentication is off on this server: everyone may use the console. "
                a href="/" { "Go to the overview" } }
        }
    };
    layout::bare("Log in", body)
}

/// `POST /login`: exchanges a token for a session cookie.
pub(super) async fn login(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    form: Form,
) -> Result<Response, HttpError> {
    let next = local(form.get("next"));
    let Some(auth) = &console.inner.auth else {
        return Ok(Redirect::to(&next).into_response());
    };
    let token = form.get("token").unwrap_or_default();
    match auth.authenticate(token).await {
        Ok(who) => {
            tracing::info!(principal = %who.name, "console login");
            let value = console
                .inner
                .keys
                .session(&who, SystemTime::now() + SESSION_TTL);
            Ok((
                [(
                    header::SET_COOKIE,
                    set_cookie(SESSION_COOKIE, &value, Some(SESSION_TTL), caller.secure),
                )],
                Redirect::to(&next),
            )
                .into_response())
        }
        Err(e) => Ok((
            axum::http::StatusCode::UNAUTHORIZED,
            login_form(&console, &caller, &next, Some(&e.to_string())),
        )
            .into_response()),
    }
}

/// `POST /logout`: forgets the session cookie.
pub(super) async fn logout(Extension(caller): Extension<Caller>, _form: Form) -> Response {
    (
        [(
            header::SET_COOKIE,
            set_cookie(
                SESSION_COOKIE,
                "",
                Some(std::time::Duration::ZERO),
                caller.secure,
            ),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}
