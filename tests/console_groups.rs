//! The console's group and dead-letter pages and actions, driven through
//! its router against a real in-process server: stats, settings, Seek,
//! delete, and dead letters filtered, paged, replayed and purged.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::web::Web;
use common::{TestServer, dur, next_batch, subscribe};
use herald::broker::DeadLetterFilter;
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

/// Receives `n` deliveries of `group` and nacks them as poison: `n` dead letters.
async fn dead_letter(server: &TestServer, topic: &str, group: &str, n: usize) {
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, topic, group, 100).await;
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(next_batch(&mut stream, Duration::from_secs(5)).await);
    }
    sub.nack(proto::NackRequest {
        ack_ids: got.iter().map(|d| d.ack_id.clone()).collect(),
        dead_letter: true,
        reason: "cannot parse total".into(),
        ..Default::default()
    })
    .await
    .expect("nack");
}

#[tokio::test]
async fn group_page_shows_stats_edits_settings_seeks_and_deletes() {
    let server = TestServer::start().await;
    let mut web = console(&server).await;
    server
        .create_group(
            "orders",
            "billing",
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await;
    publish(&server, "orders", &["A", "B", "C"]).await;
    dead_letter(&server, "orders", "billing", 3).await;

    let page = web.get("/topics/orders/groups/billing").await;
    let body = page.expect(StatusCode::OK);
    assert!(body.contains(r#"<dd id="delivered">3</dd>"#), "{body}");
    assert!(body.contains(r#"<dd id="nacked">3</dd>"#));
    assert!(body.contains(r#"<dd id="dead-lettered">3</dd>"#));
    assert!(body.contains(r#"<dd id="backlog">0</dd>"#));
    assert!(body.contains(r#"href="/topics/orders/groups/billing/dead-letters">3</a>"#));
    assert!(body.contains(r#"name="ack_deadline" value="30s""#));

    let saved = web
        .post(
            "/topics/orders/groups/billing/settings",
            &[
                ("types", "A, B"),
                ("patterns", ""),
                ("ack_deadline", "45s"),
                ("min_backoff", "2s"),
                ("max_backoff", "1m"),
                ("multiplier", "3"),
                ("max_delivery_attempts", "7"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let s = server
        .broker()
        .get_group("orders", "billing")
        .await
        .unwrap()
        .record
        .settings;
    assert_eq!(s.ack_deadline, Duration::from_secs(45));
    assert_eq!(s.retry.min_backoff, Duration::from_secs(2));
    assert_eq!(s.retry.multiplier, 3.0);
    assert_eq!(s.max_delivery_attempts, 7);
    assert_eq!(s.filter.types, ["A", "B"]);
    let refused = web
        .post(
            "/topics/orders/groups/billing/settings",
            &[
                ("ack_deadline", "2h"),
                ("min_backoff", "1s"),
                ("max_backoff", "1s"),
                ("multiplier", "1"),
                ("max_delivery_attempts", "1"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("group.ack_deadline"),
        "{}",
        refused.body
    );

    // Seek to earliest: confirmation first, then all three are pending again.
    let ask = web
        .post("/topics/orders/groups/billing/seek", &[("to", "earliest")])
        .await;
    assert!(
        ask.expect(StatusCode::OK)
            .contains("Move group billing to earliest")
    );
    assert_eq!(
        server
            .broker()
            .get_group("orders", "billing")
            .await
            .unwrap()
            .stats
            .backlog,
        0
    );
    let moved = web
        .post(
            "/topics/orders/groups/billing/seek",
            &[("to", "earliest"), ("confirmed", "1")],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
    assert!(
        moved.location().contains("Moved%20to%20offset%200"),
        "{}",
        moved.location()
    );
    assert_eq!(
        server
            .broker()
            .get_group("orders", "billing")
            .await
            .unwrap()
            .stats
            .backlog,
        3
    );
    let out = web
        .post(
            "/topics/orders/groups/billing/seek",
            &[("to", "offset"), ("offset", "99"), ("confirmed", "1")],
        )
        .await;
    assert_eq!(
        out.status,
        StatusCode::BAD_REQUEST,
        "out of range: {}",
        out.body
    );

    let deleted = web
        .post(
            "/topics/orders/groups/billing/delete",
            &[("confirmed", "1")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert!(
        server
            .broker()
            .get_group("orders", "billing")
            .await
            .is_err()
    );
    assert_eq!(
        web.get("/topics/orders/groups/billing").await.status,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

#[tokio::test]
async fn dead_letters_are_filtered_paged_replayed_and_purged() {
    let server = TestServer::start().await;
    let mut web = console(&server).await;
    server
        .create_group(
            "orders",
            "billing",
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await;
    publish(&server, "orders", &["A", "B", "A", "B"]).await;
    dead_letter(&server, "orders", "billing", 4).await;
    let url = "/topics/orders/groups/billing/dead-letters";

    let page = web.get(url).await;
    let body = page.expect(StatusCode::OK);
    assert!(body.contains("4 dead letters match."), "{body}");
    assert!(body.contains("cannot parse total"), "reason shown");
    assert!(
        body.contains("&quot;kind&quot;: &quot;A&quot;"),
        "pretty JSON payload"
    );
    assert_eq!(body.matches(r#"name="ids""#).count(), 4);

    let only_a = web.get(&format!("{url}?type=A")).await.body;
    assert!(only_a.contains("2 dead letters match."), "{only_a}");
    assert_eq!(only_a.matches(r#"name="ids""#).count(), 2);
    let future = web.get(&format!("{url}?from=2999-01-01T00:00")).await.body;
    assert!(
        future.contains("0 dead letters match."),
        "time filter: {future}"
    );

    let first = web.get(&format!("{url}?size=3&oldest=1")).await.body;
    assert_eq!(first.matches(r#"name="ids""#).count(), 3);
    let next = first
        .split("href=\"")
        .find(|s| s.contains("page="))
        .and_then(|s| s.split('"').next())
        .expect("a next-page link")
        .replace("&amp;", "&");
    let second = web.get(&next).await.body;
    assert_eq!(second.matches(r#"name="ids""#).count(), 1, "{second}");

    let list = server
        .broker()
        .list_dead_letters(
            "orders",
            "billing",
            10,
            "",
            true,
            &DeadLetterFilter::default(),
        )
        .await
        .unwrap();
    let ids: Vec<String> = list.entries.iter().map(|d| d.id.to_string()).collect();

    // Replay one: asks, then puts it back into the group.
    let ask = web
        .post(&format!("{url}/replay"), &[("one", &ids[0])])
        .await;
    assert!(
        ask.expect(StatusCode::OK)
            .contains(&format!("Replay dead letter {}", ids[0]))
    );
    let replayed = web
        .post(
            &format!("{url}/replay"),
            &[("one", &ids[0]), ("confirmed", "1")],
        )
        .await;
    assert_eq!(replayed.status, StatusCode::SEE_OTHER, "{}", replayed.body);
    assert!(
        replayed.location().contains("Replayed%201%3B%203%20left"),
        "{}",
        replayed.location()
    );
    let mut sub = server.subscriber();
    let mut stream = subscribe(&mut sub, "orders", "billing", 10).await;
    let again = next_batch(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery_attempt, 1, "attempts start again");

    // Purge a selection of two.
    let purged = web
        .post(
            &format!("{url}/purge"),
            &[("ids", &ids[1]), ("ids", &ids[2]), ("confirmed", "1")],
        )
        .await;
    assert!(
        purged.location().contains("Purged%202%3B%201%20left"),
        "{}",
        purged.location()
    );
    // Nothing selected is a bad request.
    let none = web
        .post(&format!("{url}/purge"), &[("confirmed", "1")])
        .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    // Replay all matching a filter that matches nothing left, then all.
    let all = web
        .post(
            &format!("{url}/replay"),
            &[("all", "1"), ("type", ""), ("confirmed", "1")],
        )
        .await;
    assert!(
        all.location().contains("Replayed%201%3B%200%20left"),
        "{}",
        all.location()
    );
    let body = web.get(url).await.body;
    assert!(body.contains("0 dead letters match."), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_page_shows_the_max_message_age() {
    let server = TestServer::start().await;
    let mut web = console(&server).await;
    server
        .admin()
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                topic: "orders".into(),
                name: "aged".into(),
                max_message_age: Some(dur(Duration::from_secs(3600))),
                ..Default::default()
            }),
        })
        .await
        .expect("create group");
    let body = web.get("/topics/orders/groups/aged").await.body;
    assert!(
        body.contains("Unacknowledged events older than") && body.contains("are dropped."),
        "{body}"
    );
}
