//! edgeswarm as an MCP server: the seed's Turso MCP tools (same names and argument
//! names) plus metrics, sync status and kv tools, served over stdio or streamable HTTP
//! from one `Swarm` handle. See README.md in this crate for the tool table and host setup.
//!
//! Entry point: [`run`] for `edgeswarm mcp` (its benchmark, `edgeswarm bench mcp`, lives in
//! the edgeswarm-bench crate).

pub mod args;
pub mod errors;
pub mod http;
pub mod server;

pub use server::{EdgeswarmMcp, TOOL_NAMES};

use clap::Args;
use edgeswarm::{Limits, Swarm};
use rmcp::ServiceExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `edgeswarm mcp` arguments.
#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    /// Home database file (created and migrated if missing).
    #[arg(long, default_value = "./edgeswarm.db")]
    pub db: PathBuf,
    /// Serve streamable HTTP at http://ADDR/mcp (e.g. 127.0.0.1:8808) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Bearer token HTTP clients must send (`Authorization: Bearer <token>`); HTTP only.
    #[arg(long, env = "EDGESWARM_MCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Most rows a query returns; more sets `truncated: true`.
    #[arg(long, default_value_t = 10_000)]
    pub max_rows: usize,
    /// Longest SQL statement accepted, in bytes.
    #[arg(long, default_value_t = 100 * 1024)]
    pub max_sql_bytes: usize,
    /// A SQL statement running longer than this is interrupted (milliseconds).
    #[arg(long, default_value_t = 5_000)]
    pub query_timeout_ms: u64,
    /// Longest content (message, knowledge entry), in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_content_bytes: usize,
    /// Largest HTTP request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// The live dashboard beside the server (`--dashboard ADDR`).
    #[command(flatten)]
    pub dashboard: DashboardArgs,
    /// Embedder for vector and hybrid search: none (lexical only), hash, or semantic (the
    /// model `edgeswarm models install` fetches) [default: `[search] embedder` in
    /// ./edgeswarm.toml (or $EDGESWARM_CONFIG), else none].
    #[arg(long, env = "EDGESWARM_EMBEDDER", value_name = "NAME")]
    pub embedder: Option<edgeswarm::EmbedderChoice>,
}

/// The live dashboard's flags, shared by `edgeswarm mcp` and `edgeswarm demo`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DashboardArgs {
    /// Serve the live dashboard at http://ADDR/ (e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub dashboard: Option<SocketAddr>,
    /// Token dashboard clients must send (`?token=` or `Authorization: Bearer`); required
    /// when --dashboard is not a loopback address.
    #[arg(long, env = "EDGESWARM_DASHBOARD_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
    /// Another Origin allowed to read the dashboard (repeatable), e.g. https://ops.example.com.
    #[arg(long, value_name = "ORIGIN")]
    pub dashboard_origin: Vec<String>,
}

impl DashboardArgs {
    /// Serves the dashboard on `swarm` when `--dashboard` was given and prints its URL on
    /// stderr after `label`; `None` when it was not asked for.
    pub async fn serve(&self, swarm: &Swarm, label: &str) -> Result<Option<edgeswarm::Dashboard>, edgeswarm::DashboardError> {
        let Some(addr) = self.dashboard else {
            return Ok(None);
        };
        let mut cfg = edgeswarm::DashboardConfig::new(addr).token(self.dashboard_token.clone());
        cfg.allowed_origins = self.dashboard_origin.clone();
        let d = swarm.serve_dashboard_with(cfg).await?;
        eprintln!("{label}dashboard at {}", d.url());
        Ok(Some(d))
    }
}

impl Default for McpArgs {
    fn default() -> Self {
        McpArgs {
            db: PathBuf::from("./edgeswarm.db"),
            http: None,
            token: None,
            max_rows: 10_000,
            max_sql_bytes: 100 * 1024,
            query_timeout_ms: 5_000,
            max_content_bytes: 1 << 20,
            max_body_bytes: 4 << 20,
            dashboard: DashboardArgs::default(),
            embedder: None,
        }
    }
}

impl McpArgs {
    /// The store limits these arguments ask for.
    pub fn limits(&self) -> Result<Limits, String> {
        if self.max_rows == 0 {
            return Err("--max-rows must be at least 1".into());
        }
        if self.query_timeout_ms == 0 {
            return Err("--query-timeout-ms must be at least 1".into());
        }
        if self.max_sql_bytes == 0 || self.max_content_bytes == 0 {
            return Err("--max-sql-bytes and --max-content-bytes must be at least 1".into());
        }
        Ok(Limits {
            max_result_rows: self.max_rows,
            max_sql_bytes: self.max_sql_bytes,
            query_timeout: Duration::from_millis(self.query_timeout_ms),
            max_content_bytes: self.max_content_bytes,
            ..Limits::default()
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the MCP server as `edgeswarm mcp` asks: stdio by default, streamable HTTP with
/// `--http`. Returns when the client disconnects (stdio) or on ctrl-c, after flushing.
pub async fn run(args: McpArgs) -> Result<(), BoxError> {
    let limits = args.limits()?;
    let swarm = Swarm::builder()
        .path(&args.db)
        .limits(limits)
        .embedder_choice(args.embedder.unwrap_or_default())
        .start()
        .await
        .map_err(|e| format!("cannot open the database {}: {e}", args.db.display()))?;
    // stderr: on stdio, stdout carries the protocol.
    let dashboard = match args.dashboard.serve(&swarm, "edgeswarm mcp: ").await {
        Ok(d) => d,
        Err(e) => {
            let _ = swarm.shutdown().await;
            return Err(e.to_string().into());
        }
    };
    let path = std::fs::canonicalize(&args.db).unwrap_or_else(|_| args.db.clone());
    let server = EdgeswarmMcp::new(swarm.clone(), path);
    let token = args.token.clone().filter(|t| !t.trim().is_empty());
    let served: Result<(), BoxError> = match args.http {
        Some(addr) => {
            let guard = http::Guard {
                token: token.map(|t| t.trim().into()),
                max_body_bytes: args.max_body_bytes,
            };
            http::serve(server, addr, guard).await
        }
        None => {
            if token.is_some() {
                eprintln!(
                    "edgeswarm mcp: --token applies to --http only; stdio is not authenticated (the host that starts the process owns it)"
                );
            }
            serve_stdio(server).await
        }
    };
    let closed = swarm.shutdown().await.map_err(|e| format!("shutdown: {e}").into());
    if let Some(d) = dashboard {
        d.stop().await;
    }
    served.and(closed)
}

async fn serve_stdio(server: EdgeswarmMcp) -> Result<(), BoxError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP initialization over stdio failed: {e}"))?;
    let ct = running.cancellation_token();
    tokio::select! {
        r = running.waiting() => { r?; }
        _ = tokio::signal::ctrl_c() => { ct.cancel(); }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mcp: McpArgs,
    }

    #[test]
    fn args_parse_and_map_to_limits() {
        let c = Cli::try_parse_from([
            "x",
            "--db",
            "/tmp/a.db",
            "--http",
            "127.0.0.1:9000",
            "--max-rows",
            "5",
            "--query-timeout-ms",
            "250",
        ])
        .unwrap();
        assert_eq!(c.mcp.http, Some("127.0.0.1:9000".parse().unwrap()));
        let l = c.mcp.limits().unwrap();
        assert_eq!(l.max_result_rows, 5);
        assert_eq!(l.query_timeout, Duration::from_millis(250));
        let d = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(d.mcp.db, PathBuf::from("./edgeswarm.db"));
        assert!(Cli::try_parse_from(["x", "--http", "not-an-address"]).is_err());
        let z = Cli::try_parse_from(["x", "--max-rows", "0"]).unwrap();
        assert!(z.mcp.limits().is_err());
    }
}
