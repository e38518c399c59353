//! `herald bench --secure` and `--compare`: the bench's own server with
//! TLS and token authentication, and its comparison with a plain one.
//!
//! CLI layer. The secure server gets a throwaway CA and certificate
//! ([`crate::cli::pki`]) and an auth file with one principal, `bench`,
//! allowed publish, consume and manage on every topic through a rule (not
//! admin), so every call pays what a real client pays: the TLS record
//! layer, the token in its metadata, its verification (cached) and the
//! rule check.

use std::path::Path;

use anyhow::{Result, anyhow};
use serde::Serialize;

use super::{BenchArgs, Mode, Row, print_table};
use crate::auth::edit::{self, Editor, NewRule};
use crate::cli::client::connect::ClientAuth;
use crate::cli::pki::Authority;
use crate::config::{AuthMode, Config};

/// Turns `config` into a TLS + token server with its files in `dir`;
/// returns what a client needs to reach it.
///
/// # Errors
/// Making the certificates or writing the files failed.
pub(super) fn secure(config: &mut Config, dir: &Path) -> Result<ClientAuth> {
    let ca = Authority::new("herald bench CA")?;
    let (cert, key) = ca.server("herald bench")?.write(dir, "server")?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca.cert)?;
    let mut editor =
        Editor::open(&edit::new_file().map_err(|e| anyhow!(e))?).map_err(|e| anyhow!(e))?;
    let rule = NewRule {
        topics: vec!["#".into()],
        actions: vec!["publish".into(), "consume".into(), "manage".into()],
    };
    editor
        .add_principal("bench", false, &[rule])
        .map_err(|e| anyhow!(e))?;
    let token = editor.add_token("bench", "bench").map_err(|e| anyhow!(e))?;
    let auth_file = dir.join("auth.toml");
    edit::save(&auth_file, &editor.text()).map_err(|e| anyhow!(e))?;
    config.tls.cert = Some(cert);
    config.tls.key = Some(key);
    config.auth.mode = AuthMode::Required;
    config.auth.file = Some(auth_file);
    Ok(ClientAuth {
        tls_ca: Some(ca_path),
        token: Some(token.token),
        ..ClientAuth::default()
    })
}

/// One scenario, plain against TLS + token.
#[derive(Debug, Serialize)]
struct Comparison {
    scenario: String,
    rounds: usize,
    plain_events_per_sec: f64,
    tls_token_events_per_sec: f64,
    /// TLS + token throughput over plain, minus one (−0.05 is 5% slower).
    change: f64,
    plain_p50_ms: f64,
    tls_token_p50_ms: f64,
    plain_p99_ms: f64,
    tls_token_p99_ms: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn compare(rows: &[Row]) -> Vec<Comparison> {
    let mut scenarios: Vec<&str> = Vec::new();
    for r in rows {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    scenarios
        .into_iter()
        .map(|scenario| {
            let of = |mode: Mode, f: fn(&Row) -> f64| -> Vec<f64> {
                rows.iter()
                    .filter(|r| r.scenario == scenario && r.transport == mode)
                    .map(f)
                    .collect()
            };
            let plain = median(of(Mode::Plain, |r| r.events_per_sec));
            let secure = median(of(Mode::TlsToken, |r| r.events_per_sec));
            Comparison {
                scenario: scenario.to_string(),
                rounds: of(Mode::Plain, |r| r.seconds).len(),
                plain_events_per_sec: plain,
                tls_token_events_per_sec: secure,
                change: secure / plain - 1.0,
                plain_p50_ms: median(of(Mode::Plain, |r| r.p50_ms)),
                tls_token_p50_ms: median(of(Mode::TlsToken, |r| r.p50_ms)),
                plain_p99_ms: median(of(Mode::Plain, |r| r.p99_ms)),
                tls_token_p99_ms: median(of(Mode::TlsToken, |r| r.p99_ms)),
            }
        })
        .collect()
}

/// Prints every row, then the comparison by scenario.
///
/// # Errors
/// JSON serialization failed.
pub(super) fn print_comparison(rows: &[Row], args: &BenchArgs) -> Result<()> {
    let comparison = compare(rows);
    if args.json {
        let doc = serde_json::json!({ "rows": rows, "comparison": comparison });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    for mode in [Mode::Plain, Mode::TlsToken] {
        let of_mode: Vec<Row> = rows
            .iter()
            .filter(|r| r.transport == mode)
            .cloned()
            .collect();
        print_table(&of_mode, args);
        println!();
    }
    println!(
        "TLS + token against plain, median of {} round(s) each:",
        args.rounds
    );
    println!(
        "{:<9} {:>14} {:>14} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "scenario",
        "plain ev/s",
        "tls+token ev/s",
        "change",
        "p50 plain",
        "p50 tls",
        "p99 plain",
        "p99 tls"
    );
    for c in &comparison {
        println!(
            "{:<9} {:>14.0} {:>14.0} {:>7.1}% {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
            c.scenario,
            c.plain_events_per_sec,
            c.tls_token_events_per_sec,
            c.change * 100.0,
            c.plain_p50_ms,
            c.tls_token_p50_ms,
            c.plain_p99_ms,
            c.tls_token_p99_ms
        );
    }
    Ok(())
}
