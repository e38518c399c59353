//! The web console's pages and actions, driven through its router against
//! a real in-process server: status, content, and what each action did to
//! the broker (groups and dead letters: `console_groups.rs`). Authentication (a plugged-in `Authorizer`) is in
//! `console_auth.rs`, `/metrics` in `console_metrics.rs`, the browser in
//! `console_browser.rs`.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::TestServer;
use common::web::Web;
use herald::broker::Position;
use herald::http::Console;
use herald::proto;

async fn console(server: &TestServer) -> Web {
    let console = Console::new(server.broker().clone(), None).expect("console");
    Web::new(console.router())
}

/// Publishes JSON events of `types` (in order) to `topic`.
async fn publish(server: &TestServer, topic: &str, types: &[&str]) {
    let events = types
        .iter()
        .enumerate()
        .map(|(i, t)| proto::Event {
            r#type: t.to_string(),
            key: format!("k-{i}"),
            data: format!("{{\"n\":{i},\"kind\":\"{t}\"}}").into(),
            ..Default::default()
        })
        .collect();
    server
        .publisher()
        .publish(proto::PublishRequest {
            topic: topic.into(),
            events,
        })
        .await
        .expect("publish");
}

#[tokio::test]
async fn overview_shows_version_totals_and_rates() {
    let server = TestServer::start().await;
    let console = Console::new(server.broker().clone(), None).unwrap();
    let mut web = Web::new(console.router());
    let page = web.get("/").await;
    let body = page.expect(StatusCode::OK);
    assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");
    assert!(body.contains("embedded"), "backend shown");
    assert!(
        body.contains("collecting samples"),
        "no rates before two samples"
    );

    console.rates().sample(server.broker()).await;
    publish(&server, "orders", &["A", "A", "A"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    console.rates().sample(server.broker()).await;
    let body = web.get("/").await.body;
    assert!(
        body.contains(r#"<dd id="published">3</dd>"#),
        "published total: {body}"
    );
    assert!(body.contains(r#"<dd id="topics"><a href="/topics">1</a></dd>"#));
    let (published, _) = console.rates().server(Duration::from_secs(60));
    let rate = published.expect("a rate after two samples");
    assert!(
        rate > 3.0 && rate < 3.0 / 0.2 + 1.0,
        "3 events in ~0.2 s: {rate}"
    );
    console.rates().sample(server.broker()).await;
    let body = web.get("/").await.body;
    assert!(
        body.contains("<svg"),
        "the rate chart is drawn from three samples"
    );
    server.stop().await;
}

#[tokio::test]
async fn topics_are_listed_found_created_and_deleted_after_confirmation() {
    let server = TestServer::start().await;
    let mut web = console(&server).await;
    publish(&server, "orders", &["A", "B"]).await;
    publish(&server, "payments", &["P"]).await;

    let created = web
        .post(
            "/topics",
            &[
                ("name", "audit.log"),
                ("retention_max_age", "7d"),
                ("retention_max_bytes", "1048576"),
                ("dedup_window", "5m"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert!(created.location().starts_with("/topics/audit.log"));
    let info = server
        .broker()
        .get_topic("audit.log")
        .await
        .expect("created");
    assert_eq!(
        info.record.settings.retention_max_age,
        Some(Duration::from_secs(7 * 86400))
    );
    assert_eq!(info.record.settings.retention_max_bytes, Some(1 << 20));
    assert_eq!(info.record.settings.dedup_window, Duration::from_secs(300));

    let list = web.get("/topics").await;
    let body = list.expect(StatusCode::OK);
    for name in ["orders", "payments", "audit.log"] {
        assert!(
            body.contains(&format!(r#"data-topic="{name}""#)),
            "{name} listed"
        );
    }
    assert!(body.contains("7days"), "retention shown: {body}");
    assert!(body.contains("1.0 MiB"));
    let found = web.get("/topics?q=PAY").await.body;
    assert!(found.contains(r#"data-topic="payments""#));
    assert!(
        !found.contains(r#"data-topic="orders""#),
        "the search filters"
    );

    // A second create of the same name is a conflict and changes nothing.
    let again = web.post("/topics", &[("name", "orders")]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let bad = web
        .post("/topics", &[("name", "x"), ("dedup_window", "soon")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("dedup_window"), "{}", bad.body);
    assert!(server.broker().get_topic("x").await.is_err());

    // Delete asks first (the no-script confirmation page) …
    let ask = web.post("/topics/orders/delete", &[]).await;
    let body = ask.expect(StatusCode::OK);
    assert!(body.contains("Delete topic orders"), "{body}");
    assert!(body.contains(r#"name="confirmed" value="1""#));
    assert!(
        server.broker().get_topic("orders").await.is_ok(),
        "not deleted yet"
    );
    // … and deletes once confirmed.
    let done = web
        .post("/topics/orders/delete", &[("confirmed", "1")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert!(
        server.broker().get_topic("orders").await.is_err(),
        "deleted"
    );
    assert_eq!(
        web.get("/topics/orders").await.status,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

#[tokio::test]
async fn posts_need_the_csrf_token_of_the_cookie() {
    let server = TestServer::start().await;
    let mut web = console(&server).await;
    // The token in the page's forms is the cookie's.
    let page = web.get("/topics").await;
    let token = web.cookies["herald_csrf"].clone();
    assert!(
        page.body
            .contains(&format!(r#"name="csrf" value="{token}""#))
    );

    let no_token = web.post_raw("/topics", &[("name", "t1")]).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let wrong = web
        .post_raw("/topics", &[("csrf", "00.00"), ("name", "t1")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // A token without its cookie (another browser's) is refused too.
    let mut other = console(&server).await;
    let stolen = other
        .post_raw("/topics", &[("csrf", &token), ("name", "t1")])
        .await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN);
    // A form sent from another site is refused even with the token.
    let req = axum::http::Request::post("/topics")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "127.0.0.1:8080")
        .header("origin", "http://evil.example")
        .body(axum::body::Body::from(format!("csrf={token}&name=t1")))
        .unwrap();
    assert_eq!(web.send(req).await.status, StatusCode::FORBIDDEN);
    assert!(
        server.broker().get_topic("t1").await.is_err(),
        "nothing created"
    );

    let ok = web.post("/topics", &[("name", "t1")]).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert!(server.broker().get_topic("t1").await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn topic_page_shows_groups_and_publishes_and_creates_groups() {
    let server = TestServer::start().await;
    let mut web = console(&server).await;
    publish(&server, "orders", &["A"]).await;

    let published = web
        .post(
            "/topics/orders/publish",
            &[
                ("type", "OrderPlaced"),
                ("key", "order-7"),
                ("id", "ev-7"),
                ("content_type", "application/json"),
                ("data", r#"{"total": 42}"#),
            ],
        )
        .await;
    assert_eq!(
        published.status,
        StatusCode::SEE_OTHER,
        "{}",
        published.body
    );
    assert!(
        published.location().contains("offset%201"),
        "{}",
        published.location()
    );
    let info = server.broker().get_topic("orders").await.unwrap();
    assert_eq!(info.stats.end_offset, 2);
    let notice = web.get(published.location()).await.body;
    assert!(
        notice.contains("Published at offset 1 (id ev-7)"),
        "{notice}"
    );
    // The same id again is recognised as a duplicate.
    let dup = web
        .post(
            "/topics/orders/publish",
            &[("type", "OrderPlaced"), ("id", "ev-7")],
        )
        .await;
    assert!(dup.location().contains("Duplicate"), "{}", dup.location());
    assert_eq!(
        server
            .broker()
            .get_topic("orders")
            .await
            .unwrap()
            .stats
            .end_offset,
        2
    );
    let invalid = web.post("/topics/orders/publish", &[("type", "")]).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST, "{}", invalid.body);

    let created = web
        .post(
            "/topics/orders/groups",
            &[
                ("name", "billing"),
                ("start", "earliest"),
                ("types", "OrderPlaced, A"),
                ("ordered", "1"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert_eq!(
        created.location(),
        "/topics/orders/groups/billing?notice=Group+created"
    );
    let g = server
        .broker()
        .get_group("orders", "billing")
        .await
        .unwrap();
    assert_eq!(g.record.start, Position::Earliest);
    assert_eq!(g.record.settings.filter.types, ["OrderPlaced", "A"]);
    assert!(g.record.settings.ordered);

    tokio::time::sleep(Duration::from_millis(100)).await;
    let page = web.get("/topics/orders").await;
    let body = page.expect(StatusCode::OK);
    assert!(body.contains(r#"data-group="billing""#), "{body}");
    assert!(body.contains(r#"<dd id="events">2</dd>"#), "{body}");
    assert!(
        body.contains(r#"data-src="/topics/orders/tail?from=0""#),
        "the tail starts with recent history: {body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_tail_streams_new_events_with_pretty_json() {
    use tokio_stream::StreamExt;
    let server = TestServer::start().await;
    publish(&server, "orders", &["Old"]).await;
    let console = Console::new(server.broker().clone(), None).unwrap();
    let req = axum::http::Request::get("/topics/orders/tail")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(console.router(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    let mut text = String::new();
    let mut read_until = async |needle: &str, text: &mut String| {
        while !text.contains(needle) {
            let chunk = tokio::time::timeout(Duration::from_secs(1), body.next())
                .await
                .unwrap_or_else(|_| panic!("{needle:?} within a second; got {text}"))
                .expect("stream open")
                .unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    read_until("data: live", &mut text).await;
    publish(&server, "orders", &["New"]).await;
    read_until("</article>", &mut text).await;
    assert!(!text.contains("Old"), "from the end only: {text}");
    assert!(text.contains("id: 1\n"), "{text}");
    assert!(
        text.contains(r#"<pre class="payload json">{"#)
            && text.contains("data:   &quot;kind&quot;: &quot;New&quot;"),
        "pretty-printed, escaped JSON: {text}"
    );
    // Deleting the topic ends the tail with the reason.
    server.broker().delete_topic("orders").await.unwrap();
    read_until("event: end", &mut text).await;
    assert!(text.contains("was deleted"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn assets_are_embedded_and_unknown_pages_are_404() {
    let server = TestServer::start().await;
    let mut web = console(&server).await;
    let css = web.get("/assets/console.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(
        css.body.contains("@media (max-width: 600px)"),
        "responsive rules"
    );
    let js = web.get("/assets/console.js").await;
    assert!(js.body.contains("EventSource"));
    assert_eq!(
        web.get("/assets/other.js").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(web.get("/nothing/here").await.status, StatusCode::NOT_FOUND);
    assert_eq!(web.get("/topics/none").await.status, StatusCode::NOT_FOUND);
    let page = web.get("/topics").await.body;
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing loaded from elsewhere"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_configured_console_address_that_cannot_be_bound_stops_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = herald::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.http.listen = Some(addr);
    let err = match herald::cli::serve::start(config).await {
        Ok(_) => panic!("started on a taken console address"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("http.listen") && err.contains(&addr.to_string()),
        "{err}"
    );
}
