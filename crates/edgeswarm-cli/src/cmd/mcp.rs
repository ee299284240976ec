//! `edgeswarm mcp`: the MCP server (edgeswarm-mcp). The `[mcp]` section of edgeswarm.toml
//! (`--config`, else ./edgeswarm.toml when it exists) fills what no flag set: flags win,
//! allowed origins from both apply; `[search] embedder` applies when neither
//! `--embedder` nor `EDGESWARM_EMBEDDER` is given. A file with errors is refused, as for
//! every command.

use edgeswarm_mcp::McpArgs;

use crate::config::{self, McpSettings};
use crate::error::{CliError, Result};

/// Runs the server with the config file's `[mcp]` section under the flags.
pub async fn run(mut args: McpArgs) -> Result<()> {
    if let Some(settings) = config::load_file(args.config.as_deref())? {
        apply(&mut args, &settings.mcp);
        // No --embedder and no EDGESWARM_EMBEDDER: the file's `[search] embedder`, as
        // demo reads it.
        args.embedder.get_or_insert(settings.embedder);
    }
    edgeswarm_mcp::run(args).await.map_err(|e| CliError::Invalid(e.to_string()))
}

/// Fills the flags left unset from `[mcp]`; origins are the union.
pub fn apply(args: &mut McpArgs, m: &McpSettings) {
    let mut origins = m.allow_origins.clone();
    origins.append(&mut args.allow_origin);
    args.allow_origin = origins;
    args.max_sessions.get_or_insert(m.max_sessions);
    args.max_concurrent_requests.get_or_insert(m.max_concurrent_requests);
    args.request_timeout_ms.get_or_insert(m.request_timeout.as_millis() as u64);
    args.session_idle_timeout_ms
        .get_or_insert(m.session_idle_timeout.as_millis() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flags_win_over_the_file_and_origins_add_up() {
        let file = McpSettings {
            allow_origins: vec!["https://file.example.com".into()],
            max_sessions: 5,
            max_concurrent_requests: 6,
            request_timeout: Duration::from_millis(7000),
            session_idle_timeout: Duration::from_secs(8),
        };
        let mut a = McpArgs {
            allow_origin: vec!["https://flag.example.com".into()],
            max_sessions: Some(2),
            ..McpArgs::default()
        };
        apply(&mut a, &file);
        assert_eq!(a.allow_origin, vec!["https://file.example.com", "https://flag.example.com"]);
        assert_eq!(a.max_sessions, Some(2));
        assert_eq!(a.max_concurrent_requests, Some(6));
        assert_eq!(a.request_timeout_ms, Some(7000));
        assert_eq!(a.session_idle_timeout_ms, Some(8000));
    }
}
