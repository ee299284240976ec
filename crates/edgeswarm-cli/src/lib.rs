//! The `edgeswarm` command as a library, so hosts and tests can reuse its pieces: config
//! loading and checking, the Prometheus endpoint, the status heartbeat, export/import.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod error;
pub mod metrics;
pub mod open;
pub mod table;

use clap::CommandFactory;

pub use error::{CliError, Result};

use cli::{Cli, Cmd};
use config::LogFormat;

/// Sets up tracing on stderr: `RUST_LOG` filters (default `warn`), text or JSON lines.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

/// The log format: `--log-format` / `EDGESWARM_LOG_FORMAT`, else `[observability]
/// log_format` in the command's config file (if it parses), else text.
pub fn log_format(cli: &Cli) -> LogFormat {
    if let Some(f) = cli.log_format {
        return f;
    }
    cli.cmd
        .db_opts()
        .and_then(|o| config::resolve_path(o.config.as_deref()))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| config::check_str(&t).settings.log_format)
        .unwrap_or_default()
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Mcp(args) => cmd::mcp::run(args).await,
        Cmd::Demo(a) => cmd::demo::run(a).await,
        Cmd::Bench(a) => cmd::bench::run(a).await,
        Cmd::Status(a) => cmd::status::run(a).await,
        Cmd::Sql(a) => cmd::sql::run(a).await,
        Cmd::Shell(a) => cmd::sql::run_shell(a).await,
        Cmd::Regions(a) => cmd::regions::run(a).await,
        Cmd::Export(a) => cmd::transfer::run_export(a).await,
        Cmd::Import(a) => cmd::transfer::run_import(a).await,
        // These open their own libSQL connections, whose calls block: run them on a
        // blocking-pool thread, never on a tokio worker.
        Cmd::Doctor(a) => on_blocking_thread(cmd::doctor::run(a)).await,
        Cmd::Backup(a) => on_blocking_thread(cmd::backup::run(a)).await,
        Cmd::Config(a) => cmd::config_cmd::run(a),
        Cmd::Models(a) => cmd::models::run(a).await,
        Cmd::Completions { shell } => {
            let mut c = Cli::command();
            clap_complete::generate(shell, &mut c, "edgeswarm", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Runs a future that makes blocking libSQL calls on a blocking-pool thread.
async fn on_blocking_thread<F>(f: F) -> error::Result<()>
where
    F: std::future::Future<Output = error::Result<()>> + Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(f))
        .await
        .map_err(|e| error::CliError::Invalid(format!("internal error: {e}")))?
}
