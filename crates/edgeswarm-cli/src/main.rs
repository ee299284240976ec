//! The `edgeswarm` command.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "edgeswarm", version, about = "edgeswarm: agent swarm runtime on libSQL")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the runtime over MCP (stdio by default).
    Mcp(edgeswarm_mcp::McpArgs),
    /// Benchmarks.
    Bench {
        /// Which benchmark.
        which: String,
        /// Print one JSON line.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let r: Result<(), Box<dyn std::error::Error + Send + Sync>> = match cli.cmd {
        Cmd::Mcp(a) => edgeswarm_mcp::run(a).await,
        Cmd::Bench { which, json } => {
            let _ = (which, json);
            Err("not built yet".into())
        }
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
