//! The `herald` command line: `serve` runs the server, `bench` measures it.
//!
//! Wiring only; `main.rs` parses and calls [`run`].

pub mod bench;
pub mod serve;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use figment::Figment;

use crate::config::{Config, LogFormat};

/// Herald: durable event streaming with consumer groups, retries and dead letters.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about)]
pub struct Cli {
    /// Log format (overrides `log.format`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (embedded storage in --data-dir).
    Serve(ServeArgs),
    /// Measure publish, consume and end-to-end latency.
    Bench(bench::BenchArgs),
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
    match cli.command {
        Command::Serve(args) => {
            let config = Config::load(args.config.as_deref(), args.overrides(cli.log_format))?;
            let telemetry = telemetry::init(config.log.format, &config.log.filter)?;
            let result = serve::run(config).await;
            telemetry.shutdown();
            result
        }
        Command::Bench(args) => {
            let telemetry = telemetry::init(cli.log_format.unwrap_or(LogFormat::Text), "warn")?;
            let result = bench::run(args).await;
            telemetry.shutdown();
            result
        }
    }
}
