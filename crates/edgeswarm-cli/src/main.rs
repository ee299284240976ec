//! The `edgeswarm` binary: parses flags, sets up logs, runs the command. Exit codes:
//! 0 success, 1 the command failed (the message says why and what to do), 2 bad usage.

use clap::Parser;
use edgeswarm_cli::cli::Cli;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    edgeswarm_cli::init_tracing(edgeswarm_cli::log_format(&cli));
    if let Err(e) = edgeswarm_cli::run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
