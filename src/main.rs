//! The `herald` binary: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc: fewer cycles per allocation than the system allocator on the
/// publish path (many short-lived buffers of a few KiB to a few hundred).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = herald::cli::Cli::parse();
    match herald::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
