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

pub use errors::ToolError;
pub use http::{DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE_TIMEOUT};
pub use server::{EdgeswarmMcp, DEFAULT_REQUEST_TIMEOUT, TOOL_NAMES};

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
    /// Bearer token HTTP clients must send (`Authorization: Bearer <token>`), at least 16
    /// characters (e.g. `openssl rand -hex 16`); required when --http is not a loopback address.
    #[arg(long, env = "EDGESWARM_MCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Serve --http on a non-loopback address WITHOUT a token: anyone who can reach it can
    /// read and change the memory and run SQL. Only on a network you trust; warned at start.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Another Origin allowed to call --http (repeatable), e.g. https://app.example.com.
    /// Loopback origins are always allowed; requests without Origin (non-browser clients)
    /// too. Also `allow_origins` in the [mcp] section of edgeswarm.toml.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Most open HTTP sessions; one more is refused with 503 (overloaded) [default: 64].
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Most HTTP requests in flight at once; more are refused with 503 (overloaded) [default: 32].
    #[arg(long, value_name = "N")]
    pub max_concurrent_requests: Option<usize>,
    /// Longest a tool call may run (ms); past it the call is answered with a
    /// `request_timeout` error [default: 30000].
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// An HTTP session with no traffic this long (ms) is closed, freeing its slot [default: 300000].
    #[arg(long, value_name = "MS")]
    pub session_idle_timeout_ms: Option<u64>,
    /// Config file whose [mcp] section sets the values above that no flag sets (read by the
    /// `edgeswarm` command) [default: ./edgeswarm.toml when it exists].
    #[arg(long, env = "EDGESWARM_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
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
            insecure_no_auth: false,
            allow_origin: Vec::new(),
            max_sessions: None,
            max_concurrent_requests: None,
            request_timeout_ms: None,
            session_idle_timeout_ms: None,
            config: None,
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

impl McpArgs {
    /// The time limit of one tool call.
    pub fn request_timeout(&self) -> Result<Duration, String> {
        match self.request_timeout_ms {
            Some(0) => Err("--request-timeout-ms must be at least 1".into()),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(DEFAULT_REQUEST_TIMEOUT),
        }
    }

    /// The checked HTTP options for `addr` (bind rule, origins, caps).
    pub fn http_options(&self, addr: SocketAddr) -> Result<http::Options, String> {
        let mut o = http::Options::new(addr);
        o.token = self.token().map(Into::into);
        o.insecure_no_auth = self.insecure_no_auth;
        o.allowed_origins = self.allow_origin.clone();
        o.max_body_bytes = self.max_body_bytes;
        o.max_sessions = self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        o.max_concurrent_requests = self.max_concurrent_requests.unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS);
        if let Some(ms) = self.session_idle_timeout_ms {
            o.session_idle_timeout = Duration::from_millis(ms);
        }
        o.check()
    }

    /// The token, trimmed; none when unset or blank.
    fn token(&self) -> Option<&str> {
        self.token.as_deref().map(str::trim).filter(|t| !t.is_empty())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the MCP server as `edgeswarm mcp` asks: stdio by default, streamable HTTP with
/// `--http`. Returns when the client disconnects (stdio) or on ctrl-c, after flushing.
pub async fn run(args: McpArgs) -> Result<(), BoxError> {
    let limits = args.limits()?;
    let request_timeout = args.request_timeout()?;
    // Refuse an exposed or impossible HTTP setup before touching the database.
    let http = args.http.map(|addr| args.http_options(addr)).transpose()?;
    if request_timeout < limits.query_timeout {
        eprintln!(
            "edgeswarm mcp: note: --request-timeout-ms ({} ms) is below --query-timeout-ms ({} ms): long statements are cut off by the request limit",
            request_timeout.as_millis(),
            limits.query_timeout.as_millis()
        );
    }
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
    let server = EdgeswarmMcp::new(swarm.clone(), path).with_request_timeout(request_timeout);
    let served: Result<(), BoxError> = match http {
        Some(opts) => http::serve(server, opts).await,
        None => {
            if args.token().is_some() || args.insecure_no_auth {
                eprintln!(
                    "edgeswarm mcp: --token and --insecure-no-auth apply to --http only; stdio is not authenticated (the host that starts the process owns it)"
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

    #[test]
    fn http_flags_parse_and_map_to_options() {
        let c = Cli::try_parse_from([
            "x",
            "--http",
            "0.0.0.0:9000",
            "--insecure-no-auth",
            "--allow-origin",
            "https://a.example.com",
            "--allow-origin",
            "http://b.example.com:8080/",
            "--max-sessions",
            "3",
            "--max-concurrent-requests",
            "2",
            "--request-timeout-ms",
            "700",
            "--session-idle-timeout-ms",
            "5000",
        ])
        .unwrap();
        let o = c.mcp.http_options(c.mcp.http.unwrap()).unwrap();
        assert!(o.open_to_network());
        assert_eq!(o.allowed_origins, vec!["https://a.example.com", "http://b.example.com:8080"]);
        assert_eq!((o.max_sessions, o.max_concurrent_requests), (3, 2));
        assert_eq!(o.session_idle_timeout, Duration::from_secs(5));
        assert_eq!(c.mcp.request_timeout().unwrap(), Duration::from_millis(700));

        let d = Cli::try_parse_from(["x", "--http", "127.0.0.1:9000"]).unwrap();
        let o = d.mcp.http_options(d.mcp.http.unwrap()).unwrap();
        assert_eq!(
            (o.max_sessions, o.max_concurrent_requests),
            (DEFAULT_MAX_SESSIONS, DEFAULT_MAX_CONCURRENT_REQUESTS)
        );
        assert_eq!(d.mcp.request_timeout().unwrap(), DEFAULT_REQUEST_TIMEOUT);
        assert!(o.token.is_none() && !o.open_to_network());

        let open = Cli::try_parse_from(["x", "--http", "0.0.0.0:9000"]).unwrap();
        let e = open.mcp.http_options(open.mcp.http.unwrap()).unwrap_err();
        assert!(e.contains("EDGESWARM_MCP_TOKEN") && e.contains("--insecure-no-auth"), "{e}");
        let blank = Cli::try_parse_from(["x", "--http", "0.0.0.0:9000", "--token", "  "]).unwrap();
        assert!(
            blank.mcp.http_options(blank.mcp.http.unwrap()).is_err(),
            "a blank token is no token"
        );
        let z = Cli::try_parse_from(["x", "--request-timeout-ms", "0"]).unwrap();
        assert!(z.mcp.request_timeout().is_err());
    }
}
