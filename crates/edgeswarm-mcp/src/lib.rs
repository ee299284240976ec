//! edgeswarm as an MCP server.

use clap::Args;
use std::path::PathBuf;

/// `edgeswarm mcp` arguments.
#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    /// Home database file.
    #[arg(long, default_value = "./edgeswarm.db")]
    pub db: PathBuf,
}

/// Runs the MCP server as `edgeswarm mcp` asks.
pub async fn run(_args: McpArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Err("the MCP server is not built yet".into())
}
