//! The security surface of the `herald` binary: `herald auth` edits the
//! auth file, client commands reach a TLS + token server with `--tls-ca`
//! and `--token` (or `HERALD_TOKEN`), `serve` refuses an exposed address
//! without TLS and authentication, and `bench --secure` / `--compare` run
//! against a TLS + token server of their own.

mod common;

use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::assert::{Assert, OutputAssertExt};
use common::secure::{Protection, SecureServer};
use predicates::prelude::*;

fn herald(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env_remove("HERALD_SERVER")
        .env_remove("HERALD_TOKEN")
        .env_remove("HERALD_AUTH__FILE")
        .timeout(Duration::from_secs(120))
        .args(args);
    cmd
}

/// Runs the binary off the async threads, so an in-process server serves it.
async fn run(mut cmd: Command) -> Assert {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap()
        .assert()
}

fn out(a: &Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout)
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_commands_edit_the_file_and_clients_use_tls_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let f = file.to_str().unwrap();
    run(herald(&["auth", "add", "ops", "--admin", "--file", f]))
        .await
        .success();
    run(herald(&[
        "auth",
        "add",
        "orders-svc",
        "--allow",
        "publish,consume:orders,orders.>",
        "--file",
        f,
    ]))
    .await
    .success();
    run(herald(&["auth", "add", "ops", "--file", f]))
        .await
        .failure()
        .stderr(predicate::str::contains("exists already"));
    run(herald(&[
        "auth",
        "add",
        "x",
        "--allow",
        "fly:orders",
        "--file",
        f,
    ]))
    .await
    .failure()
    .stderr(predicate::str::contains("unknown action \"fly\""));
    let ops = out(
        &run(herald(&["auth", "token", "create", "ops", "--file", f]))
            .await
            .success(),
    );
    let svc = out(&run(herald(&[
        "auth",
        "token",
        "create",
        "orders-svc",
        "--file",
        f,
    ]))
    .await
    .success());
    assert!(
        ops.starts_with("hrd_") && svc.starts_with("hrd_"),
        "{ops} {svc}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&ops) && !text.contains(&svc),
        "tokens are stored as hashes only"
    );
    let listed = out(&run(herald(&["--json", "auth", "list", "--file", f]))
        .await
        .success());
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "ops");
    assert_eq!(listed[1]["rules"][0]["topics"][1], "orders.>");
    assert_eq!(listed[1]["tokens"][0].as_str().unwrap().len(), 12);

    let server = SecureServer::start(
        Protection {
            tls: true,
            auth_file: Some(file.clone()),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let auth = server.client_auth(None);
    let ca = auth.tls_ca.unwrap();
    let ca = ca.to_str().unwrap();
    let url = server.url();
    let client = |token: Option<&str>, args: &[&str]| {
        let mut cmd = herald(&["--server", &url, "--tls-ca", ca]);
        if let Some(t) = token {
            cmd.env("HERALD_TOKEN", t);
        }
        cmd.args(args);
        cmd
    };
    run(client(None, &["topics", "list"]))
        .await
        .failure()
        .stderr(predicate::str::contains("UNAUTHENTICATED"));
    run(client(Some(&ops), &["topics", "create", "orders"]))
        .await
        .success()
        .stdout(predicate::str::contains("created topic orders"));
    run(client(
        Some(&svc),
        &["publish", "--topic", "orders", "--type", "T", "--data", "x"],
    ))
    .await
    .success();
    run(client(Some(&svc), &["topics", "delete", "orders"]))
        .await
        .failure()
        .stderr(predicate::str::contains("PERMISSION_DENIED"))
        .stderr(predicate::str::contains("may not manage"));
    // --token wins over the environment; a host:port with TLS flags is https.
    let mut cmd = herald(&[
        "--server",
        &server.addr().to_string(),
        "--tls-ca",
        ca,
        "--token",
        &ops,
        "--json",
        "topics",
        "list",
    ]);
    cmd.env("HERALD_TOKEN", "hrd_bogus");
    let listed = out(&run(cmd).await.success());
    assert!(listed.contains("\"orders\""), "{listed}");

    // Revoking and removing take effect on the running server.
    let id = herald::auth::token::id_of(&svc).unwrap().to_string();
    run(herald(&[
        "auth",
        "token",
        "revoke",
        "orders-svc",
        &id,
        "--file",
        f,
    ]))
    .await
    .success();
    run(herald(&["auth", "remove", "ops", "--file", f]))
        .await
        .success();
    server.server().reload();
    run(client(Some(&svc), &["topics", "list"]))
        .await
        .failure()
        .stderr(predicate::str::contains("UNAUTHENTICATED"));
    run(client(Some(&ops), &["topics", "list"]))
        .await
        .failure()
        .stderr(predicate::str::contains("UNAUTHENTICATED"));
    server.stop().await;
}

#[test]
fn serve_refuses_an_exposed_address_without_tls_and_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    herald(&["serve", "--listen", "0.0.0.0:0", "--data-dir", data])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a loopback address"))
        .stderr(predicate::str::contains("--allow-insecure"));
    herald(&["serve", "--data-dir", data, "--tls-ca", "x.pem"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("client options"));
}

#[test]
fn bench_measures_a_tls_and_token_server_beside_a_plain_one() {
    let compare = herald(&[
        "bench",
        "--compare",
        "--scenario",
        "publish",
        "--events",
        "2000",
        "--batch",
        "50",
        "--json",
        "--fsync",
        "never",
    ])
    .assert()
    .success();
    let doc: serde_json::Value = serde_json::from_str(&out(&compare)).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    let modes: Vec<&str> = rows
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["plain", "tls_token"]);
    assert!(rows.iter().all(|r| r["events"] == 2000));
    let c = &doc["comparison"][0];
    assert_eq!(c["scenario"], "publish");
    assert!(c["tls_token_events_per_sec"].as_f64().unwrap() > 0.0);
}
