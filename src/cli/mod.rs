//! The `herald` command line: `serve` runs the server, `bench` measures it,
//! the client commands (`publish`, `subscribe`, `topics`, `groups`, `dlq`,
//! in [`client`]) talk to a running server, and `auth` edits the auth file.
//!
//! Wiring only; `main.rs` parses and calls [`run`].

pub mod auth;
pub mod bench;
pub mod client;
pub mod pki;
pub mod serve;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use figment::Figment;

use crate::config::{AuthMode, Config, LogFormat};
use client::connect::ClientAuth;

/// Herald: durable event streaming with consumer groups, retries and dead letters.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about)]
pub struct Cli {
    /// Log format (overrides `log.format`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Herald server for client commands [env: HERALD_SERVER] [default: http://127.0.0.1:50051].
    // The environment variable and default are applied in `client::Context`,
    // not by clap: `bench` has its own `--server` (no default: "start my own
    // server"), and clap would copy a default or env value into it.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Client options"
    )]
    pub server: Option<String>,
    /// Print JSON instead of tables: one document per command, one line per delivery for `subscribe`.
    #[arg(long, global = true, help_heading = "Client options")]
    pub json: bool,
    /// TLS and token of client commands and `bench --server`.
    #[command(flatten)]
    pub auth: ClientAuth,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (embedded storage in --data-dir, or Redis with storage.backend = "redis").
    Serve(ServeArgs),
    /// Measure publish, consume and end-to-end latency.
    Bench(bench::BenchArgs),
    /// Publish an event from flags, or JSON lines from stdin.
    Publish(client::publish::PublishArgs),
    /// Consume through a group: print each delivery and ack (or nack) it.
    Subscribe(client::subscribe::SubscribeArgs),
    /// List, create, describe and delete topics.
    #[command(subcommand)]
    Topics(client::topics::TopicsCommand),
    /// List, create, describe and delete consumer groups.
    #[command(subcommand)]
    Groups(client::groups::GroupsCommand),
    /// List, replay and purge a group's dead letters.
    #[command(subcommand)]
    Dlq(client::dlq::DlqCommand),
    /// Edit the auth file: principals, tokens and permissions.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
}

/// Flags of `herald serve`; each overrides the config file and environment.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, short = 'c', env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address (`listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data directory (`data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `always`, `interval:<ms>` or `never` (`storage.fsync`).
    #[arg(long)]
    pub fsync: Option<String>,
    /// Refuse publish/subscribe to unknown topics and groups (`auto_create = false`).
    #[arg(long)]
    pub no_auto_create: bool,
    /// PEM certificate chain of the server; turns TLS on (`tls.cert`).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert (`tls.key`).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// PEM CAs of client certificates: require mutual TLS (`tls.client_ca`).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Principals and permissions; requires authentication (`auth.file`, `auth.mode = "required"`).
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Serve on a non-loopback address without TLS or without authentication (`server.allow_insecure`).
    #[arg(long)]
    pub allow_insecure: bool,
}

impl ServeArgs {
    /// The flags as the last configuration layer.
    pub fn overrides(&self, log_format: Option<LogFormat>) -> Figment {
        let mut f = Figment::new();
        if let Some(listen) = self.listen {
            f = f.merge(("listen", listen.to_string()));
        }
        if let Some(dir) = &self.data_dir {
            f = f.merge(("data_dir", dir.clone()));
        }
        if let Some(fsync) = &self.fsync {
            f = f.merge(("storage.fsync", fsync.clone()));
        }
        if self.no_auto_create {
            f = f.merge(("auto_create", false));
        }
        if let Some(cert) = &self.cert {
            f = f.merge(("tls.cert", cert.clone()));
        }
        if let Some(key) = &self.key {
            f = f.merge(("tls.key", key.clone()));
        }
        if let Some(ca) = &self.client_ca {
            f = f.merge(("tls.client_ca", ca.clone()));
        }
        if let Some(file) = &self.auth_file {
            f = f.merge(("auth.file", file.clone()));
            f = f.merge(("auth.mode", AuthMode::Required));
        }
        if self.allow_insecure {
            f = f.merge(("server.allow_insecure", true));
        }
        if let Some(format) = log_format {
            f = f.merge(("log.format", format));
        }
        f
    }
}

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command reports; `main` prints it and exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = client::Context::new(cli.server.clone(), cli.json, cli.auth.clone());
    match cli.command {
        Command::Serve(args) => {
            anyhow::ensure!(
                cli.server.is_none(),
                "--server names the server client commands talk to; `serve` listens on --listen"
            );
            anyhow::ensure!(
                !cli.auth.wants_tls(),
                "--tls-ca, --tls-cert and --tls-key are client options; `serve` takes --cert, \
                 --key, --client-ca and --auth-file"
            );
            anyhow::ensure!(
                !cli.json,
                "`serve` prints no tables; for JSON logs use --log-format json"
            );
            let config = Config::load(args.config.as_deref(), args.overrides(cli.log_format))?;
            let telemetry =
                telemetry::init(config.log.format, &config.log.filter, config.http.enabled)?;
            let result = serve::run(config).await;
            telemetry.shutdown();
            result
        }
        Command::Bench(args) => {
            let telemetry =
                telemetry::init(cli.log_format.unwrap_or(LogFormat::Text), "warn", false)?;
            let result = bench::run(args, cli.auth).await;
            telemetry.shutdown();
            result
        }
        Command::Publish(args) => client::publish::run(&ctx, args).await,
        Command::Subscribe(args) => client::subscribe::run(&ctx, args).await,
        Command::Topics(command) => client::topics::run(&ctx, command).await,
        Command::Groups(command) => client::groups::run(&ctx, command).await,
        Command::Dlq(command) => client::dlq::run(&ctx, command).await,
        Command::Auth(command) => auth::run(command, cli.json).await,
    }
}
