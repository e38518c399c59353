//! Polyglot clients: stubs generated from `proto/` in Python (grpcio-tools)
//! and Node (@grpc/grpc-js with @grpc/proto-loader) run the same publish /
//! consume (a Consume stream, acks and nacks on it) / dead-letter scenario
//! against the real `herald` binary, each against its own server: once in
//! plaintext, and once over TLS with a bearer token (certificates made at
//! test time), where the scenario also
//! checks that a call without a token and a call outside the token's rights
//! are refused.
//!
//! Needs `python3` (with the venv module) and `node` + `npm` on PATH, and
//! PyPI and the npm registry the first time: the Python packages go into
//! `target/polyglot-venv`, the Node ones into `tests/polyglot/node/node_modules`,
//! and each is installed again only when its requirements or lock file change.
//! A missing interpreter fails the test: it never passes without running.
//!
//! `HERALD_POLYGLOT_SKIP_DLQ=1` is passed through to the scenarios, which then
//! skip the dead-letter steps. See `tests/polyglot/README.md`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::clients::{node_env, python_env, run};

/// A whole scenario, dead-letter waits included, takes a few seconds.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn python_client_runs_the_scenario() {
    python_scenario(false);
}

#[test]
fn python_client_runs_the_scenario_over_tls_with_a_token() {
    python_scenario(true);
}

#[test]
fn node_client_runs_the_scenario() {
    node_scenario(false);
}

#[test]
fn node_client_runs_the_scenario_over_tls_with_a_token() {
    node_scenario(true);
}

fn python_scenario(secure: bool) {
    let python = python_env(
        "polyglot-venv",
        &polyglot_dir().join("python").join("requirements.txt"),
    );
    let server = Server::start(secure);
    let script = polyglot_dir().join("python").join("scenario.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(&server.addr)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    server.secure_env(&mut cmd);
    run_scenario("python", cmd, &server);
}

fn node_scenario(secure: bool) {
    node_env(&polyglot_dir().join("node"));
    let server = Server::start(secure);
    let script = polyglot_dir().join("node").join("scenario.js");
    let mut cmd = Command::new("node");
    cmd.arg(script).arg(&server.addr);
    server.secure_env(&mut cmd);
    run_scenario("node", cmd, &server);
}

/// Runs one scenario script (its environment inherits
/// `HERALD_POLYGLOT_SKIP_DLQ`) and fails the test unless it exits 0.
fn run_scenario(lang: &str, mut cmd: Command, server: &Server) {
    if std::env::var_os("HERALD_POLYGLOT_SKIP_DLQ").is_some_and(|v| !v.is_empty() && v != "0") {
        println!("{lang}: HERALD_POLYGLOT_SKIP_DLQ is set, dead-letter steps are skipped");
    }
    cmd.current_dir(repo());
    let out = run(&mut cmd, SCENARIO_TIMEOUT);
    assert!(
        out.success(),
        "the {lang} scenario failed ({}).\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- server log (last lines) ---\n{}",
        out.describe_exit(),
        out.stdout,
        out.stderr,
        server.log_tail(40),
    );
    println!(
        "{lang} scenario passed in {:.1} s:\n{}{}",
        out.elapsed.as_secs_f64(),
        out.stdout,
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// The server under test: the real binary as a child process.

struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
    _data_dir: tempfile::TempDir,
    /// With TLS and auth: the CA file and the scenario's token.
    secure: Option<(PathBuf, String)>,
}

/// Certificates and an auth file for a TLS + token server in `dir`: the
/// server's certificate and key, the CA the clients trust, and the token
/// of `polyglot`, a principal allowed everything on `polyglot.>` topics
/// (not admin).
fn secure_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf, String) {
    use herald::auth::edit::{self, Editor, NewRule};
    let ca = herald::cli::pki::Authority::new("polyglot CA").expect("CA");
    let (cert, key) = ca
        .server("polyglot")
        .expect("server cert")
        .write(dir, "server")
        .expect("write cert");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca.cert).expect("write CA");
    let mut ed = Editor::open(&edit::new_file().expect("new file")).expect("auth file");
    let rule = NewRule {
        topics: vec!["polyglot.>".into()],
        actions: ["publish", "consume", "manage", "dead_letters"]
            .map(String::from)
            .to_vec(),
    };
    ed.add_principal("polyglot", false, &[rule])
        .expect("principal");
    let token = ed.add_token("polyglot", "test").expect("token");
    let auth = dir.join("auth.toml");
    edit::save(&auth, &ed.text()).expect("write auth file");
    (cert, key, ca_path, auth, token.token)
}

impl Server {
    /// Passes the CA and token to a scenario when the server is secure.
    fn secure_env(&self, cmd: &mut Command) {
        if let Some((ca, token)) = &self.secure {
            cmd.env("HERALD_POLYGLOT_TLS_CA", ca)
                .env("HERALD_POLYGLOT_TOKEN", token);
        } else {
            cmd.env_remove("HERALD_POLYGLOT_TLS_CA")
                .env_remove("HERALD_POLYGLOT_TOKEN");
        }
    }

    /// Starts `herald serve` on a free port and waits for the JSON log line
    /// "herald is serving" to learn the address; stderr keeps being drained
    /// (and kept for failure reports) by a thread afterwards.
    fn start(secure: bool) -> Server {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command.env("HERALD_HTTP__ENABLED", "false").args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ]);
        let secure = secure.then(|| {
            let (cert, key, ca, auth, token) = secure_files(data_dir.path());
            command
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .arg("--auth-file")
                .arg(auth);
            (ca, token)
        });
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            // The address comes from an INFO line: make sure it is logged.
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the herald binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = serving_addr(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "herald did not log \"herald is serving\" ({e}; exit: {status:?}). Its log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            child,
            addr,
            log,
            _data_dir: data_dir,
            secure,
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fields.addr` of the JSON log line whose message is "herald is serving".
fn serving_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    if fields.get("message")?.as_str()? != "herald is serving" {
        return None;
    }
    Some(fields.get("addr")?.as_str()?.to_owned())
}

// ---------------------------------------------------------------------------
// Client environments.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn polyglot_dir() -> PathBuf {
    repo().join("tests").join("polyglot")
}
