//! The `edgeswarm` binary: parses flags, sets up logs, runs the command. Exit codes:
//! 0 success, 1 the command failed (the message says why and what to do), 2 bad usage.

use clap::Parser;
use edgeswarm_cli::cli::{Cli, Cmd};

fn main() {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    // An MCP server on stdio answers one client, one request at a time: one worker
    // thread serves it with fewer cross-thread wake-ups than one per core (measured on
    // 5,000 entries and natural-language questions through a Python client: 3,385 ->
    // 3,707 searches/s, 0.27 -> 0.22 ms of server CPU a search).
    // libSQL's calls run on the store's own threads either way.
    if matches!(&cli.cmd, Cmd::Mcp(a) if a.http.is_none()) {
        rt.worker_threads(1);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async {
        edgeswarm_cli::init_tracing(edgeswarm_cli::log_format(&cli));
        if let Err(e) = edgeswarm_cli::run(cli).await {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    });
}
