//! The console with authentication on: a plugged-in `Authorizer` decides
//! who holds a token and what they may do; the console sends people
//! without a session to the login form, keeps them logged in with a signed
//! cookie, and refuses actions their permissions do not cover.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{Request, StatusCode};
use common::TestServer;
use common::web::Web;
use herald::http::{Action, AuthError, Authorizer, Console, Principal};

/// A small token table: `admin-token` may do everything, `viewer-token`
/// only look, and only at topic `orders`.
struct Tokens(HashMap<&'static str, &'static str>);

#[async_trait::async_trait]
impl Authorizer for Tokens {
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        self.0
            .get(token)
            .map(|name| Principal {
                name: name.to_string(),
                ..Principal::default()
            })
            .ok_or(AuthError::BadToken)
    }

    fn authorize(
        &self,
        who: &Principal,
        action: Action,
        topic: Option<&str>,
    ) -> Result<(), AuthError> {
        let read_only = matches!(
            action,
            Action::GetServerInfo
                | Action::ListTopics
                | Action::GetTopic
                | Action::ListGroups
                | Action::GetGroup
                | Action::ListDeadLetters
                | Action::Read
        );
        match who.name.as_str() {
            "admin" => Ok(()),
            "viewer" if read_only && topic.is_none_or(|t| t == "orders") => Ok(()),
            _ => Err(AuthError::Denied(format!(
                "no permission for {}",
                action.rpc()
            ))),
        }
    }
}

async fn start() -> (TestServer, Console) {
    let server = TestServer::start().await;
    let tokens = Tokens(HashMap::from([
        ("admin-token", "admin"),
        ("viewer-token", "viewer"),
    ]));
    let console = Console::new(server.broker().clone(), Some(Arc::new(tokens))).unwrap();
    server
        .broker()
        .create_topic("orders", &Default::default())
        .await
        .unwrap();
    server
        .broker()
        .create_topic("secret", &Default::default())
        .await
        .unwrap();
    (server, console)
}

#[tokio::test]
async fn without_a_session_every_page_sends_to_the_login_form() {
    let (server, console) = start().await;
    let mut web = Web::new(console.router());
    for path in ["/", "/topics", "/topics/orders", "/topics/orders/tail"] {
        let r = web.get(path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            r.location().starts_with("/login?next=%2F"),
            "{path}: {}",
            r.location()
        );
    }
    let r = web
        .post("/topics/orders/delete", &[("confirmed", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        server.broker().get_topic("orders").await.is_ok(),
        "nothing deleted"
    );
    // A scraper gets a plain refusal that says how to authenticate, not a
    // form.
    let metrics = web.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::UNAUTHORIZED);
    assert!(metrics.headers.contains_key("www-authenticate"));
    assert!(metrics.body.contains("Bearer"), "{}", metrics.body);
    let login = web.get("/login?next=/topics").await;
    assert!(login.expect(StatusCode::OK).contains(r#"name="token""#));
    server.stop().await;
}

#[tokio::test]
async fn logging_in_sets_a_session_that_the_permissions_apply_to() {
    let (server, console) = start().await;
    let mut web = Web::new(console.router());
    let bad = web
        .post("/login", &[("token", "guess"), ("next", "/topics")])
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("unknown or expired token"));
    assert!(!web.cookies.contains_key("herald_session"));

    let ok = web
        .post("/login", &[("token", "viewer-token"), ("next", "/topics")])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.location(), "/topics");
    assert!(web.cookies.contains_key("herald_session"));
    // The CSRF token of the anonymous visit is not valid for the session.
    let stale = web.cookies["herald_csrf"].clone();
    let page = web.get("/topics").await;
    assert!(
        page.expect(StatusCode::OK).contains("viewer"),
        "who is logged in is shown"
    );
    assert_eq!(web.get("/topics/orders").await.status, StatusCode::OK);
    assert_eq!(
        web.get("/topics/secret").await.status,
        StatusCode::FORBIDDEN,
        "another topic"
    );
    let r = web
        .post_raw(
            "/topics/orders/delete",
            &[("csrf", &stale), ("confirmed", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = web
        .post("/topics/orders/delete", &[("confirmed", "1")])
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a viewer may not delete: {}",
        r.body
    );
    assert!(r.body.contains("DeleteTopic"), "{}", r.body);
    assert!(server.broker().get_topic("orders").await.is_ok());

    // A forged session cookie is no session.
    let forged = web.cookies["herald_session"].replacen('.', "0.", 1);
    web.cookies.insert("herald_session".into(), forged);
    assert_eq!(web.get("/topics").await.status, StatusCode::SEE_OTHER);

    // The admin may; logging out ends the session.
    let mut admin = Web::new(console.router());
    admin.post("/login", &[("token", "admin-token")]).await;
    admin.get("/").await;
    let r = admin
        .post("/topics/secret/delete", &[("confirmed", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(server.broker().get_topic("secret").await.is_err());
    admin.post("/logout", &[]).await;
    assert!(!admin.cookies.contains_key("herald_session"));
    assert_eq!(admin.get("/").await.status, StatusCode::SEE_OTHER);
    server.stop().await;
}

#[tokio::test]
async fn scrapers_and_scripts_authenticate_with_a_bearer_token() {
    let (server, console) = start().await;
    let mut web = Web::new(console.router());
    let with = |token: &str, path: &str| {
        Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    assert_eq!(
        web.send(with("viewer-token", "/topics/orders"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        web.send(with("nobody", "/topics/orders")).await.status,
        StatusCode::SEE_OTHER
    );
    // The viewer may not scrape; the admin gets past authorization (this
    // test binary installs no meter provider, so the page says metrics are off).
    assert_eq!(
        web.send(with("viewer-token", "/metrics")).await.status,
        StatusCode::FORBIDDEN
    );
    let admin = web.send(with("admin-token", "/metrics")).await;
    assert_eq!(
        admin.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        admin.body
    );
    server.stop().await;
}
