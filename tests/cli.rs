//! The `herald` client commands (`topics`, `groups`, `publish`, `subscribe`,
//! `dlq`), run as the real binary against a real server started in-process
//! on 127.0.0.1:0. The binary runs on the blocking pool so the server keeps
//! serving meanwhile.

use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::assert::{Assert, OutputAssertExt};
use herald::cli::serve::{RunningServer, start};
use herald::config::Config;
use predicates::prelude::*;
use serde_json::Value;

/// A server under test and its URL.
struct Server {
    url: String,
    running: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.groups.state_flush_interval = Duration::from_millis(20);
        config.http.enabled = false;
        let running = start(config).await.expect("server starts");
        Server {
            url: format!("http://{}", running.addr),
            running: Some(running),
            _dir: dir,
        }
    }

    /// Runs `herald --server URL <args>` and returns its output for asserting.
    async fn herald(&self, args: &[&str]) -> Assert {
        run(herald_cmd(Some(&self.url), args, None)).await
    }

    /// Like [`Server::herald`], with `stdin` fed to the process.
    async fn herald_stdin(&self, args: &[&str], stdin: &str) -> Assert {
        run(herald_cmd(Some(&self.url), args, Some(stdin))).await
    }

    /// Runs a command that must succeed and print JSON; returns the document.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        parse(&self.herald(&all).await.success())
    }

    async fn stop(mut self) {
        if let Some(s) = self.running.take() {
            s.stop().await.expect("clean stop");
        }
    }
}

fn herald_cmd(server: Option<&str>, args: &[&str], stdin: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env_remove("HERALD_SERVER")
        .timeout(Duration::from_secs(30));
    if let Some(server) = server {
        cmd.arg("--server").arg(server);
    }
    cmd.args(args);
    if let Some(stdin) = stdin {
        cmd.write_stdin(stdin.to_string());
    }
    cmd
}

async fn run(mut cmd: Command) -> Assert {
    let output: Output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("runner")
        .expect("herald runs");
    output.assert()
}

fn stdout(a: &Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn parse(a: &Assert) -> Value {
    let text = stdout(a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// JSON lines (subscribe --json).
fn parse_lines(a: &Assert) -> Vec<Value> {
    stdout(a)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_create_list_describe_delete() {
    let server = Server::start().await;

    server
        .herald(&[
            "topics",
            "create",
            "orders",
            "--retention-max-age",
            "36h",
            "--retention-max-bytes",
            "1MiB",
            "--dedup-window",
            "30s",
        ])
        .await
        .success()
        .stdout(predicate::str::contains("created topic orders"))
        .stdout(predicate::str::contains("1.0 MiB (1048576 bytes)"));
    server
        .herald(&["topics", "create", "audit"])
        .await
        .success();
    server
        .herald(&["topics", "create", "orders"])
        .await
        .failure()
        .stderr(predicate::str::contains(
            "ALREADY_EXISTS: topic \"orders\" already exists",
        ));

    // Table: a header and one row per topic, in name order.
    let table = stdout(&server.herald(&["topics", "list"]).await.success());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("RETENTION"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("audit") && lines[1].contains("forever"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("orders") && lines[2].contains("1day 12h or 1.0 MiB"),
        "{table}"
    );

    let list = server.json(&["topics", "list"]).await;
    let topics = list["topics"].as_array().expect("topics array");
    assert_eq!(topics.len(), 2);
    let orders = &topics[1];
    assert_eq!(orders["name"], "orders");
    assert_eq!(orders["retention_max_age"], "129600s");
    assert_eq!(orders["retention_max_bytes"], 1_048_576);
    assert_eq!(orders["dedup_window"], "30s");
    assert_eq!(topics[0]["retention_max_age"], Value::Null);

    server
        .herald(&["publish", "-t", "orders", "--type", "T", "--data", "x"])
        .await
        .success();
    let described = server.json(&["topics", "describe", "orders"]).await;
    assert_eq!(described["name"], "orders");
    assert_eq!(described["stats"]["start_offset"], 0);
    assert_eq!(described["stats"]["end_offset"], 1);
    assert!(described["stats"]["bytes"].as_u64().unwrap() > 0);
    assert!(described["create_time"].as_str().unwrap().ends_with('Z'));
    server
        .herald(&["topics", "describe", "orders"])
        .await
        .success()
        .stdout(predicate::str::is_match(r"(?m)^end offset\s+1$").unwrap())
        .stdout(predicate::str::is_match(r"(?m)^dedup window\s+30s$").unwrap());

    server
        .herald(&["topics", "delete", "orders"])
        .await
        .success()
        .stdout(predicate::str::contains("deleted topic orders"));
    let list = server.json(&["topics", "list"]).await;
    let names: Vec<&str> = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["audit"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describing_a_missing_topic_is_not_found() {
    let server = Server::start().await;
    server
        .herald(&["topics", "describe", "nope"])
        .await
        .failure()
        .stderr(predicate::str::contains(
            "NOT_FOUND: topic \"nope\" does not exist",
        ))
        .stdout(predicate::str::is_empty());
    server
        .herald(&["groups", "describe", "--topic", "nope", "g"])
        .await
        .failure()
        .stderr(predicate::str::contains("NOT_FOUND"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_create_with_options_and_describe() {
    let server = Server::start().await;
    server.herald(&["topics", "create", "t"]).await.success();

    let created = server
        .json(&[
            "groups",
            "create",
            "--topic",
            "t",
            "workers",
            "--start",
            "earliest",
            "--ack-deadline",
            "10s",
            "--min-backoff",
            "250ms",
            "--max-backoff",
            "2s",
            "--multiplier",
            "1.5",
            "--max-attempts",
            "7",
            "--ordered",
            "--ack-durability",
            "sync",
            "--max-message-age",
            "1h",
            "--types",
            "A,B",
            "--patterns",
            "Order.*",
        ])
        .await;
    assert_eq!(created["topic"], "t");
    assert_eq!(created["name"], "workers");
    assert_eq!(created["start_position"], "earliest");
    assert_eq!(created["ack_deadline"], "10s");
    assert_eq!(created["retry_policy"]["min_backoff"], "0.250s");
    assert_eq!(created["retry_policy"]["max_backoff"], "2s");
    assert_eq!(created["retry_policy"]["multiplier"], 1.5);
    assert_eq!(created["max_delivery_attempts"], 7);
    assert_eq!(created["ordered"], true);
    assert_eq!(created["ack_durability"], "sync");
    assert_eq!(created["max_message_age"], "3600s");
    assert_eq!(created["filter"]["types"], serde_json::json!(["A", "B"]));
    assert_eq!(
        created["filter"]["patterns"],
        serde_json::json!(["Order.*"])
    );

    // An event of a wanted type: the backlog counts it until it is acked.
    server
        .herald(&["publish", "-t", "t", "--type", "A", "--key", "k"])
        .await
        .success();
    let described = server
        .json(&["groups", "describe", "--topic", "t", "workers"])
        .await;
    assert_eq!(described["ack_deadline"], "10s");
    assert_eq!(described["ordered"], true);
    let stats = &described["stats"];
    for field in [
        "delivered",
        "acked",
        "nacked",
        "redelivered",
        "dead_lettered",
        "backlog",
        "in_flight",
        "dead_letter_count",
        "connected_consumers",
        "oldest_unacked_age",
        "ack_floor",
        "filtered",
        "expired",
        "blocked_keys",
        "oldest_dead_letter_age",
    ] {
        assert!(stats.get(field).is_some(), "stats.{field} missing: {stats}");
    }
    assert_eq!(stats["backlog"], 1);
    assert_eq!(stats["acked"], 0);

    server
        .herald(&["groups", "describe", "-t", "t", "workers"])
        .await
        .success()
        .stdout(predicate::str::is_match(r"(?m)^ordered\s+yes").unwrap())
        .stdout(predicate::str::is_match(r"(?m)^retry backoff\s+250ms \.\. 2s, ×1.5$").unwrap())
        .stdout(predicate::str::is_match(r"(?m)^\s+backlog\s+1$").unwrap());
    let table = stdout(
        &server
            .herald(&["groups", "list", "--topic", "t"])
            .await
            .success(),
    );
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("t ") && l.contains("workers")),
        "{table}"
    );

    server
        .herald(&["groups", "create", "-t", "t", "bad", "--start", "yesterday"])
        .await
        .failure()
        .stderr(predicate::str::contains(
            "earliest, latest, offset:N or time:RFC3339",
        ));
    server
        .herald(&["groups", "delete", "-t", "t", "workers"])
        .await
        .success();
    assert_eq!(
        server.json(&["groups", "list"]).await["groups"],
        serde_json::json!([])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_are_received_and_acked() {
    let server = Server::start().await;
    server
        .herald(&["topics", "create", "orders"])
        .await
        .success();
    server
        .herald(&[
            "groups", "create", "-t", "orders", "billing", "--start", "earliest",
        ])
        .await
        .success();

    // One event from flags.
    let one = server
        .json(&[
            "publish",
            "--topic",
            "orders",
            "--type",
            "OrderPlaced",
            "--id",
            "e0",
            "--key",
            "o-1",
            "--source",
            "tests",
            "--attr",
            "tenant=acme",
            "--data",
            "hello",
        ])
        .await;
    assert_eq!(one["topic"], "orders");
    assert_eq!(one["results"][0]["id"], "e0");
    assert_eq!(one["results"][0]["offset"], 0);
    assert_eq!(one["results"][0]["duplicate"], false);

    // Two from stdin (a blank line between): text data and JSON data.
    let lines = concat!(
        r#"{"type": "OrderPaid", "id": "e1", "key": "o-1", "data": "paid"}"#,
        "\n\n",
        r#"{"type": "OrderShipped", "id": "e2", "data": {"carrier": "ups", "n": [1, 2]}, "attributes": {"region": "eu"}}"#,
        "\n",
    );
    let many = parse(
        &server
            .herald_stdin(&["--json", "publish", "-t", "orders", "--stdin"], lines)
            .await
            .success(),
    );
    let results = many["results"].as_array().unwrap();
    let got: Vec<(&str, u64, bool)> = results
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["offset"].as_u64().unwrap(),
                r["duplicate"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("e1", 1, false), ("e2", 2, false)]);

    // The same id again is answered as a duplicate of the stored event.
    server
        .herald(&[
            "publish",
            "-t",
            "orders",
            "--type",
            "OrderPaid",
            "--id",
            "e1",
        ])
        .await
        .success()
        .stdout(predicate::str::is_match(r"(?m)^\s*1\s+e1\s+yes$").unwrap());

    // Table form, through a second group (it may receive more than it
    // prints; those go back to that group only).
    server
        .herald(&[
            "groups", "create", "-t", "orders", "audit", "--start", "earliest",
        ])
        .await
        .success();
    server
        .herald(&["subscribe", "-t", "orders", "-g", "audit", "--max", "1"])
        .await
        .success()
        .stdout(predicate::str::contains("OFFSET"))
        .stdout(
            predicate::str::is_match(r"(?m)^\s+0\s+1\s+e0\s+OrderPlaced\s+o-1\s+hello$").unwrap(),
        );
    // JSON lines: everything billing has, in order, first attempts.
    let deliveries = parse_lines(
        &server
            .herald(&[
                "subscribe",
                "-t",
                "orders",
                "-g",
                "billing",
                "--max",
                "3",
                "--json",
            ])
            .await
            .success(),
    );
    assert_eq!(deliveries.len(), 3);
    assert_eq!(deliveries[0]["id"], "e0");
    assert_eq!(deliveries[0]["key"], "o-1");
    assert_eq!(deliveries[0]["source"], "tests");
    assert_eq!(deliveries[0]["attributes"]["tenant"], "acme");
    assert_eq!(deliveries[0]["data"], "hello");
    assert_eq!(deliveries[1]["id"], "e1");
    assert_eq!(deliveries[1]["type"], "OrderPaid");
    assert_eq!(deliveries[1]["offset"], 1);
    assert_eq!(deliveries[1]["data"], "paid");
    assert_eq!(deliveries[2]["id"], "e2");
    assert_eq!(deliveries[2]["content_type"], "application/json");
    assert_eq!(deliveries[2]["attributes"]["region"], "eu");
    let data: Value = serde_json::from_str(deliveries[2]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, serde_json::json!({"carrier": "ups", "n": [1, 2]}));
    for d in &deliveries {
        assert_eq!(d["attempt"], 1, "{d}");
        assert_eq!(d["topic"], "orders");
    }

    let group = server
        .json(&["groups", "describe", "-t", "orders", "billing"])
        .await;
    assert_eq!(group["stats"]["backlog"], 0, "{group}");
    assert_eq!(group["stats"]["acked"], 3, "{group}");
    assert_eq!(group["stats"]["ack_floor"], 3, "{group}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_publishing_batches_many_lines_and_names_bad_ones() {
    let server = Server::start().await;
    let lines: String = (0..1201)
        .map(|i| format!("{{\"type\":\"T\",\"id\":\"id-{i}\",\"data\":{i}}}\n"))
        .collect();
    let out = parse(
        &server
            .herald_stdin(&["--json", "publish", "-t", "bulk", "--stdin"], &lines)
            .await
            .success(),
    );
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 1201);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["id"], format!("id-{i}"));
        assert_eq!(r["offset"], i as u64);
    }
    let topic = server.json(&["topics", "describe", "bulk"]).await;
    assert_eq!(topic["stats"]["end_offset"], 1201);

    server
        .herald_stdin(
            &["publish", "-t", "bulk", "--stdin"],
            "{\"type\":\"T\"}\n{\"tpye\":\"T\"}\n",
        )
        .await
        .failure()
        .stderr(predicate::str::contains("stdin line 2"))
        .stderr(predicate::str::contains("unknown field `tpye`"))
        .stderr(predicate::str::contains("nothing was published"));
    let topic = server.json(&["topics", "describe", "bulk"]).await;
    assert_eq!(
        topic["stats"]["end_offset"], 1201,
        "a bad line publishes nothing of its batch"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_event_comes_back_with_the_next_attempt() {
    let server = Server::start().await;
    server.herald(&["topics", "create", "jobs"]).await.success();
    server
        .herald(&[
            "groups",
            "create",
            "-t",
            "jobs",
            "w",
            "--start",
            "earliest",
            "--min-backoff",
            "0",
        ])
        .await
        .success();
    server
        .herald(&[
            "publish", "-t", "jobs", "--type", "Job", "--id", "j1", "--data", "work",
        ])
        .await
        .success();

    let deliveries = parse_lines(
        &server
            .herald(&[
                "subscribe",
                "-t",
                "jobs",
                "-g",
                "w",
                "--nack",
                "--reason",
                "busy",
                "--max",
                "2",
                "--json",
            ])
            .await
            .success(),
    );
    let seen: Vec<(&str, u64)> = deliveries
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["attempt"].as_u64().unwrap()))
        .collect();
    assert_eq!(seen, [("j1", 1), ("j1", 2)]);
    let group = server
        .json(&["groups", "describe", "-t", "jobs", "w"])
        .await;
    assert_eq!(group["stats"]["nacked"], 2, "{group}");
    assert_eq!(group["stats"]["acked"], 0, "{group}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_purged() {
    let server = Server::start().await;
    server.herald(&["topics", "create", "jobs"]).await.success();
    server
        .herald(&["groups", "create", "-t", "jobs", "w", "--start", "earliest"])
        .await
        .success();
    let lines = "{\"type\":\"Job\",\"id\":\"j1\",\"data\":\"one\"}\n{\"type\":\"Job\",\"id\":\"j2\",\"data\":\"two\"}\n";
    server
        .herald_stdin(&["publish", "-t", "jobs", "--stdin"], lines)
        .await
        .success();
    server
        .herald(&[
            "subscribe",
            "-t",
            "jobs",
            "-g",
            "w",
            "--dead-letter",
            "--reason",
            "poison",
            "--max",
            "2",
        ])
        .await
        .success();

    let list = server
        .json(&["dlq", "list", "-t", "jobs", "-g", "w", "--oldest-first"])
        .await;
    assert_eq!(list["total_count"], 2, "{list}");
    let entries = list["dead_letters"].as_array().unwrap();
    let ids: Vec<&str> = entries
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["j1", "j2"]);
    assert_eq!(entries[0]["last_reason"], "poison");
    assert_eq!(entries[0]["event"]["data"], "one");
    server
        .herald(&["dlq", "list", "-t", "jobs", "-g", "w"])
        .await
        .success()
        .stdout(predicate::str::contains("poison"))
        .stdout(predicate::str::contains("2 shown, 2 in all"));

    let first = entries[0]["id"].as_str().unwrap().to_string();
    let replayed = server
        .json(&["dlq", "replay", "-t", "jobs", "-g", "w", "--id", &first])
        .await;
    assert_eq!(
        replayed,
        serde_json::json!({"replayed_count": 1, "remaining_count": 1})
    );
    let again = parse_lines(
        &server
            .herald(&["subscribe", "-t", "jobs", "-g", "w", "--max", "1", "--json"])
            .await
            .success(),
    );
    assert_eq!(
        (&again[0]["id"], &again[0]["attempt"]),
        (&"j1".into(), &1.into())
    );

    server
        .herald(&["dlq", "purge", "-t", "jobs", "-g", "w", "--all"])
        .await
        .success()
        .stdout(predicate::str::contains("purged 1 dead letters; 0 remain"));
    server
        .herald(&["dlq", "list", "-t", "jobs", "-g", "w"])
        .await
        .success()
        .stdout(predicate::str::contains("no dead letters"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_arguments_are_validated_before_calling() {
    // Nothing listens on port 1: a command that got past validation would
    // fail with "cannot reach" instead.
    let nowhere = Some("http://127.0.0.1:1");
    run(herald_cmd(
        nowhere,
        &["dlq", "replay", "-t", "t", "-g", "g", "--id", "x", "--all"],
        None,
    ))
    .await
    .code(2)
    .stderr(predicate::str::contains(
        "'--id <ID>' cannot be used with '--all'",
    ));
    run(herald_cmd(
        nowhere,
        &["dlq", "purge", "-t", "t", "-g", "g"],
        None,
    ))
    .await
    .code(2)
    .stderr(predicate::str::contains("<--id <ID>|--all>"));
    run(herald_cmd(
        nowhere,
        &[
            "dlq", "replay", "-t", "t", "-g", "g", "--id", "x", "--types", "A",
        ],
        None,
    ))
    .await
    .failure()
    .stderr(predicate::str::contains("use them with --all"))
    .stderr(predicate::str::contains("cannot reach").not());
    run(herald_cmd(
        nowhere,
        &["dlq", "list", "-t", "t", "-g", "g", "--page-size", "5000"],
        None,
    ))
    .await
    .code(2)
    .stderr(predicate::str::contains("--page-size"));
    // `bench` keeps its own --server and --json.
    run(herald_cmd(None, &["bench", "--help"], None))
        .await
        .success()
        .stdout(predicate::str::contains("Server to measure"));
}

/// A server whose DeadLetterService answers UNIMPLEMENTED, like a Herald
/// release without dead-letter queues.
struct NoDeadLetters;

#[tonic::async_trait]
impl herald::proto::dead_letter_service_server::DeadLetterService for NoDeadLetters {
    async fn list_dead_letters(
        &self,
        _: tonic::Request<herald::proto::ListDeadLettersRequest>,
    ) -> Result<tonic::Response<herald::proto::ListDeadLettersResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "dead-letter queues are not available in this version yet",
        ))
    }
    async fn replay_dead_letters(
        &self,
        _: tonic::Request<herald::proto::ReplayDeadLettersRequest>,
    ) -> Result<tonic::Response<herald::proto::ReplayDeadLettersResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "dead-letter queues are not available in this version yet",
        ))
    }
    async fn purge_dead_letters(
        &self,
        _: tonic::Request<herald::proto::PurgeDeadLettersRequest>,
    ) -> Result<tonic::Response<herald::proto::PurgeDeadLettersResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "dead-letter queues are not available in this version yet",
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_reports_unimplemented_servers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                herald::proto::dead_letter_service_server::DeadLetterServiceServer::new(
                    NoDeadLetters,
                ),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    run(herald_cmd(
        Some(&url),
        &["dlq", "list", "-t", "t", "-g", "g"],
        None,
    ))
    .await
    .failure()
    .stderr(predicate::str::contains(
        "UNIMPLEMENTED: dead-letter queues are not available in this version yet",
    ));
    run(herald_cmd(
        Some(&url),
        &["dlq", "purge", "-t", "t", "-g", "g", "--all"],
        None,
    ))
    .await
    .failure()
    .stderr(predicate::str::contains("UNIMPLEMENTED"));
    serve.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_named_with_a_hint() {
    // Flag after the subcommand (global), nothing listening on port 1.
    run(herald_cmd(
        None,
        &["topics", "list", "--server", "http://127.0.0.1:1"],
        None,
    ))
    .await
    .failure()
    .stderr(predicate::str::contains(
        "cannot reach Herald at http://127.0.0.1:1: connection refused",
    ))
    .stderr(predicate::str::contains("herald serve"));
    // HERALD_SERVER without a scheme.
    let mut cmd = herald_cmd(None, &["groups", "list"], None);
    cmd.env("HERALD_SERVER", "127.0.0.1:1");
    run(cmd).await.failure().stderr(predicate::str::contains(
        "cannot reach Herald at http://127.0.0.1:1",
    ));
}

/// `herald bench --scenario e2e` measures the disk's floor (a bare
/// write+fdatasync loop on the data directory) in the same run and prints
/// it beside Herald's latency rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_e2e_prints_the_disk_floor_beside_herald() {
    let out = run(herald_cmd(
        None,
        &[
            "bench",
            "--scenario",
            "e2e",
            "--rate",
            "200",
            "--duration",
            "1",
            "--json",
        ],
        None,
    ))
    .await
    .success();
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json rows");
    let scenarios: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(scenarios, ["disk", "e2e", "e2e-pub"]);
    let disk = &rows[0];
    assert!(disk["events"].as_u64().unwrap() > 0);
    assert!(disk["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(disk["latency_of"].as_str().unwrap().contains("fdatasync"));
}
