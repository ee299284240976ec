//! How failures reach the client, following the MCP spec (2025-11-25, SEP-1303).
//!
//! A tool that ran and failed answers with a tool result, not a protocol error: `isError:
//! true`, the runtime's own message as text content (it says what to do), and structured
//! content `{kind, retryable, message}` for programs. That covers every failure a call can
//! meet: arguments that do not fit the schema or are out of range, refused or failing SQL,
//! a query or call past its time limit, something that does not exist, a full queue. The
//! model sees the message and can fix its call; a client's retry loop reads `retryable`.
//!
//! JSON-RPC errors are left for what is not a tool call at all: an unknown tool name
//! (`-32602`, as the spec's own example) and malformed requests (rmcp and the HTTP layer
//! answer those: parse errors, missing `name`, non-object `arguments`).
//!
//! `kind` is [`edgeswarm::ErrorKind::as_str`] for runtime errors, plus a few of this
//! server's own: `unknown_database`, `database_not_served`, `request_timeout`,
//! `schema_incomplete`, `serialize`. `retryable` is true only for `overloaded` and
//! `unavailable` (a full queue, a restarting writer, an unreachable region): the same call
//! may succeed later. Everything else fails the same way again until the call changes.

use edgeswarm::{Error, ErrorKind, ValidationError};
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, ErrorCode};
use rmcp::ErrorData;
use serde_json::json;
use std::borrow::Cow;

/// A tool call that ran and failed: sent as an `isError` result (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    /// Machine-readable class of the failure (`sql_error`, `not_found`, ...), so a client
    /// can branch without parsing the message.
    pub kind: Cow<'static, str>,
    /// Whether the same call may succeed if retried unchanged (a full queue, a restarting
    /// writer); false when the call itself must change.
    pub retryable: bool,
    /// What happened and what to do, for the model (and the person reading the log).
    pub message: String,
}

impl ToolError {
    /// A failure of class `kind`.
    pub fn new(kind: impl Into<Cow<'static, str>>, message: impl Into<String>, retryable: bool) -> Self {
        ToolError {
            kind: kind.into(),
            retryable,
            message: message.into(),
        }
    }

    /// The tool result the client receives.
    pub fn into_result(self) -> CallToolResult {
        let mut r = CallToolResult::error(vec![ContentBlock::text(self.message.clone())]);
        r.structured_content = Some(json!({"kind": self.kind, "retryable": self.retryable, "message": self.message}));
        r
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        Ok(self.into_result().into())
    }
}

/// A caller mistake of class `kind` (never retryable).
pub fn invalid(kind: &'static str, message: impl Into<String>) -> ToolError {
    ToolError::new(kind, message, false)
}

/// A failure on the server's side of class `kind`.
pub fn internal(kind: &'static str, message: impl Into<String>, retryable: bool) -> ToolError {
    ToolError::new(kind, message, retryable)
}

/// Whether a call that failed with `kind` may succeed unchanged later.
pub fn retryable(kind: ErrorKind) -> bool {
    kind.is_retryable()
}

/// Maps a facade error by its kind.
pub fn swarm(e: Error) -> ToolError {
    let kind = e.kind();
    ToolError::new(kind.as_str(), e.to_string(), retryable(kind))
}

/// Maps a validation error from the record types.
pub fn validation(e: ValidationError) -> ToolError {
    swarm(e.into())
}

/// The JSON-RPC error for a tool name this server does not have.
pub fn unknown_tool(name: &str, known: &[&str]) -> ErrorData {
    ErrorData::new(
        ErrorCode::INVALID_PARAMS,
        format!("unknown tool `{name}`; this server has: {}", known.join(", ")),
        Some(json!({"kind": "unknown_tool", "retryable": false})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeswarm::{SearchError, StoreError, SyncError};

    fn kind(e: &ToolError) -> (&str, bool) {
        (e.kind.as_ref(), e.retryable)
    }

    #[test]
    fn results_carry_is_error_text_and_kind() {
        let r = swarm(StoreError::Refused("only one SQL statement per call is allowed".into()).into()).into_result();
        assert_eq!(r.is_error, Some(true));
        let text = r.content[0].as_text().unwrap().text.clone();
        assert!(text.contains("only one SQL statement per call is allowed"), "{text}");
        let sc = r.structured_content.unwrap();
        assert_eq!(sc["kind"], "sql_refused");
        assert_eq!(sc["retryable"], false);
        assert_eq!(sc["message"], text.as_str());
        let resp = invalid("invalid_argument", "bad").into_call_tool_result().unwrap();
        assert!(matches!(resp, CallToolResponse::Complete(r) if r.is_error == Some(true)));
    }

    #[test]
    fn caller_errors_are_not_retryable_and_server_errors_by_kind() {
        let e = swarm(StoreError::Timeout { limit_ms: 5000 }.into());
        assert_eq!(kind(&e), ("query_timeout", false));
        assert!(e.message.contains("5000 ms"));
        let e = swarm(StoreError::sql("no such table: nowhere").into());
        assert_eq!(kind(&e), ("sql_error", false));
        let e = swarm(Error::Store(StoreError::WriterCrashed("boom".into())));
        assert_eq!(kind(&e), ("unavailable", true));
        let e = swarm(Error::ShutDown);
        assert_eq!(kind(&e), ("closed", false));
    }

    #[test]
    fn search_errors_are_mapped_by_kind_not_as_retryable_runtime_errors() {
        let e = swarm(SearchError::EmptyQuery.into());
        assert_eq!(kind(&e), ("invalid_argument", false));
        assert!(e.message.contains("query is empty"));
        let e = swarm(SearchError::BadCursor("zz".into()).into());
        assert_eq!(kind(&e), ("invalid_argument", false));
        assert!(e.message.contains("next_cursor"));
        let e = swarm(SearchError::NotFound("k1".into()).into());
        assert_eq!(kind(&e), ("not_found", false));
        let e = swarm(SearchError::ActorGone("stopped".into()).into());
        assert_eq!(kind(&e), ("closed", false));
        let e = swarm(SearchError::Store(StoreError::Overloaded { capacity: 8 }).into());
        assert_eq!(kind(&e), ("overloaded", true));
    }

    #[test]
    fn runtime_and_sync_errors_are_mapped_by_kind() {
        let e = swarm(Error::UnknownAgent("a1".into()));
        assert_eq!(kind(&e), ("not_found", false));
        let e = swarm(Error::MailboxFull {
            id: "a1".into(),
            capacity: 4,
        });
        assert_eq!(kind(&e), ("overloaded", true));
        let e = swarm(Error::NoRegions("partition"));
        assert_eq!(kind(&e), ("not_configured", false));
        let e = swarm(SyncError::Partitioned { region: "eu".into() }.into());
        assert_eq!(kind(&e), ("unavailable", true));
        let e = swarm(Error::Spawn("no".into()));
        assert_eq!(kind(&e), ("internal", false));
    }

    #[test]
    fn unknown_tools_are_protocol_errors() {
        let e = unknown_tool("drop_everything", &["kv_get"]);
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("drop_everything") && e.message.contains("kv_get"));
        assert_eq!(e.data.unwrap()["kind"], "unknown_tool");
    }
}
