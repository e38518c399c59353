//! The console under the server's own auth file (`auth.mode =
//! "required"`): the same tokens and rules as gRPC, each action needing
//! what its RPC needs, lists and `/metrics` showing only what the caller
//! may see, and sessions that end with their token. Over the console's
//! router in-process; `console_tls.rs` covers the listener itself.

mod common;

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::secure::{PrincipalSpec, write_auth_file};
use common::web::Web;
use common::{TestServer, next_batch, subscribe};
use herald::auth::AuthState;
use herald::auth::edit::{self, Editor};
use herald::http::{Console, ServerAuth};
use herald::proto;

/// Installs the Prometheus reader once per test binary, before any test
/// publishes (instruments bind to the provider in force when first used).
fn metrics_on() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let provider = herald::cli::telemetry::install_metrics(false, true)
            .expect("meter provider")
            .expect("installed");
        // Kept for the whole run, as `herald serve` keeps it.
        Box::leak(Box::new(provider));
    });
}

/// A server with topics `orders` (group `g` holding one dead letter) and
/// `secret`, a console over an auth file, and the tokens by principal:
/// `admin`; `viewer` (consume on `orders`); `ops` (everything on `orders`
/// and `orders.>`); `writer` (publish on `orders.>`, no manage).
struct Setup {
    server: TestServer,
    console: Console,
    state: Arc<AuthState>,
    tokens: std::collections::HashMap<String, String>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    metrics_on();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let all: &[&str] = &["publish", "consume", "manage", "dead_letters"];
    let tokens = write_auth_file(
        &file,
        &[
            PrincipalSpec {
                name: "admin",
                admin: true,
                rules: &[],
            },
            PrincipalSpec {
                name: "viewer",
                admin: false,
                rules: &[(&["consume"], &["orders"])],
            },
            PrincipalSpec {
                name: "ops",
                admin: false,
                rules: &[(all, &["orders", "orders.>"])],
            },
            PrincipalSpec {
                name: "writer",
                admin: false,
                rules: &[(&["publish"], &["orders.>"])],
            },
        ],
    );
    let state = Arc::new(AuthState::load(&file, 100).unwrap());
    let server = TestServer::start().await;
    herald::cli::telemetry::observe_groups(server.broker());
    server
        .create_group("orders", "g", Duration::from_secs(30), Duration::ZERO)
        .await;
    server.publish_n("orders", "o", 1).await;
    server.publish_n("secret", "s", 1).await;
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "orders", "g", 10).await;
    let got = next_batch(&mut stream, Duration::from_secs(5)).await;
    sub.nack(proto::NackRequest {
        ack_ids: vec![got[0].ack_id.clone()],
        dead_letter: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let console = Console::new(
        server.broker().clone(),
        Some(Arc::new(ServerAuth::new(state.clone()))),
    )
    .unwrap();
    Setup {
        server,
        console,
        state,
        tokens,
        _dir: dir,
    }
}

impl Setup {
    /// A browser logged in as `who`.
    async fn login(&self, who: &str) -> Web {
        let mut web = Web::new(self.console.router());
        let r = web.post("/login", &[("token", &self.tokens[who])]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{who}: {}", r.body);
        // The next page brings the CSRF token of the new session, as the
        // redirect does in a browser.
        web.get("/login").await;
        web
    }

    async fn dead_letters(&self) -> u64 {
        self.server
            .group_stats("orders", "g")
            .await
            .dead_letter_count
    }
}

fn bearer(token: &str, path: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_pages_ask_to_log_in_and_metrics_answers_401() {
    let s = setup().await;
    let mut web = Web::new(s.console.router());
    for path in ["/", "/topics", "/topics/orders", "/topics/orders/groups/g"] {
        let r = web.get(path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(r.location().starts_with("/login?next="), "{path}");
    }
    assert!(web.get("/login").await.body.contains(r#"name="token""#));
    let r = web
        .post("/topics/orders/delete", &[("confirmed", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(s.server.broker().get_topic("orders").await.is_ok());
    for r in [
        web.get("/metrics").await,
        web.send(bearer("hrd_000000000000_00", "/metrics")).await,
    ] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"herald\"");
    }
    // A wrong token on the form is refused, and sets no session.
    let r = web
        .post("/login", &[("token", "hrd_000000000000_00")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!web.cookies.contains_key("herald_session"));
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_without_the_right_gets_403_and_nothing_changes() {
    let s = setup().await;
    let broker = s.server.broker();
    let mut viewer = s.login("viewer").await;
    // Lists show only what it may see; other topics are refused.
    let topics = viewer.get("/topics").await;
    let body = topics.expect(StatusCode::OK);
    assert!(body.contains(r#"data-topic="orders""#), "{body}");
    assert!(!body.contains("secret"), "{body}");
    assert!(!viewer.get("/topics?q=e").await.body.contains("secret"));
    assert_eq!(
        viewer.get("/topics/secret").await.status,
        StatusCode::FORBIDDEN
    );
    // The overview is GetServerInfo (admin): it sends to the topics.
    assert_eq!(viewer.get("/").await.location(), "/topics");
    assert_eq!(viewer.get("/topics/orders").await.status, StatusCode::OK);
    let dl = "/topics/orders/groups/g/dead-letters";
    assert_eq!(viewer.get(dl).await.status, StatusCode::FORBIDDEN);

    let end = s.server.end_offset("orders").await;
    let refused = [
        ("/topics", vec![("name", "orders.new")]),
        ("/topics/orders/delete", vec![("confirmed", "1")]),
        ("/topics/orders/publish", vec![("type", "T"), ("data", "x")]),
        ("/topics/orders/groups", vec![("name", "h")]),
        (
            "/topics/orders/groups/g/seek",
            vec![("to", "earliest"), ("confirmed", "1")],
        ),
        ("/topics/orders/groups/g/delete", vec![("confirmed", "1")]),
        (
            "/topics/orders/groups/g/dead-letters/replay",
            vec![("all", "1"), ("confirmed", "1")],
        ),
        (
            "/topics/orders/groups/g/dead-letters/purge",
            vec![("all", "1"), ("confirmed", "1")],
        ),
    ];
    for (path, fields) in &refused {
        let r = viewer.post(path, fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
        assert!(r.body.contains("viewer"), "{path}: {}", r.body);
    }
    // The broker is as it was.
    assert!(broker.get_topic("orders.new").await.is_err());
    assert!(broker.get_topic("orders").await.is_ok());
    assert_eq!(s.server.end_offset("orders").await, end);
    let (groups, _) = broker.list_groups(Some("orders"), None, 10).await.unwrap();
    assert_eq!(groups.len(), 1, "no group created or deleted");
    assert_eq!(s.dead_letters().await, 1);

    // Publishing would create a topic: that needs manage, as over gRPC.
    let mut writer = s.login("writer").await;
    let r = writer
        .post("/topics/orders.eu/publish", &[("type", "T"), ("data", "x")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(broker.get_topic("orders.eu").await.is_err());
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_with_the_right_succeeds() {
    let s = setup().await;
    let broker = s.server.broker();
    let mut ops = s.login("ops").await;
    let end = s.server.end_offset("orders").await;
    let r = ops
        .post("/topics/orders/publish", &[("type", "T"), ("data", "x")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(s.server.end_offset("orders").await, end + 1);
    let r = ops
        .post(
            "/topics/orders/groups/g/dead-letters/replay",
            &[("all", "1"), ("confirmed", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(s.dead_letters().await, 0);
    let r = ops
        .post("/topics/orders/groups/g/delete", &[("confirmed", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(broker.get_group("orders", "g").await.is_err());
    // Its patterns cover new topics under orders.>, created implicitly too.
    let r = ops.post("/topics", &[("name", "orders.eu")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = ops
        .post("/topics/orders.us/publish", &[("type", "T"), ("data", "x")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(broker.get_topic("orders.eu").await.is_ok());
    assert!(broker.get_topic("orders.us").await.is_ok());
    // But nothing outside them.
    let r = ops
        .post("/topics/secret/delete", &[("confirmed", "1")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The admin sees the overview and everything.
    let mut admin = s.login("admin").await;
    assert_eq!(admin.get("/").await.status, StatusCode::OK);
    assert!(admin.get("/topics").await.body.contains("secret"));
    let r = admin
        .post("/topics/secret/delete", &[("confirmed", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(broker.get_topic("secret").await.is_err());
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_only_the_topics_the_scraper_may_see() {
    let s = setup().await;
    let mut web = Web::new(s.console.router());
    let viewer = web.send(bearer(&s.tokens["viewer"], "/metrics")).await;
    let text = viewer.expect(StatusCode::OK);
    assert!(text.contains(r#"topic="orders""#), "{text}");
    assert!(!text.contains(r#"topic="secret""#), "{text}");
    let admin = web.send(bearer(&s.tokens["admin"], "/metrics")).await;
    assert!(admin.expect(StatusCode::OK).contains(r#"topic="secret""#));
    s.server.stop().await;
}

/// Removes `who`'s tokens from the auth file and reloads it.
fn revoke(s: &Setup, file: &Path, who: &str) {
    let mut ed = Editor::open(&std::fs::read_to_string(file).unwrap()).unwrap();
    let id = herald::auth::token::id_of(&s.tokens[who]).unwrap();
    ed.revoke_token(who, id).unwrap();
    edit::save(file, &ed.text()).unwrap();
    assert!(s.state.reload(true).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_ends_its_sessions() {
    let s = setup().await;
    let mut viewer = s.login("viewer").await;
    let mut ops = s.login("ops").await;
    assert_eq!(viewer.get("/topics").await.status, StatusCode::OK);
    revoke(&s, s.state.path(), "viewer");
    let r = viewer.get("/topics").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with("/login"));
    // Other principals' sessions go on.
    assert_eq!(ops.get("/topics").await.status, StatusCode::OK);
    s.server.stop().await;
}
