//! Runtime errors as MCP errors. Anything the caller can fix (bad arguments, refused or
//! failing SQL, a query past the time limit) is `invalid_params` (-32602); anything on
//! the server's side (writer crashed, store closed) is `internal_error` (-32603). The
//! message is the runtime's own, which says what to do; `data` carries a machine-readable
//! `kind` and whether a retry may help.

use edgeswarm::{Error, StoreError};
use rmcp::ErrorData;
use serde_json::json;

/// An `invalid_params` error with `kind` in its data.
pub fn invalid(kind: &str, message: impl Into<String>) -> ErrorData {
    ErrorData::invalid_params(message.into(), Some(json!({"kind": kind, "retryable": false})))
}

/// An `internal_error` with `kind` in its data.
pub fn internal(kind: &str, message: impl Into<String>, retryable: bool) -> ErrorData {
    ErrorData::internal_error(message.into(), Some(json!({"kind": kind, "retryable": retryable})))
}

/// Maps a store error.
pub fn store(e: StoreError) -> ErrorData {
    let msg = e.to_string();
    let retryable = e.is_retryable();
    match e {
        StoreError::Invalid(_) => invalid("invalid_argument", msg),
        StoreError::Refused(_) => invalid("sql_refused", msg),
        StoreError::Sql(_) => invalid("sql_error", msg),
        StoreError::Timeout { .. } => invalid("query_timeout", msg),
        StoreError::NotFound(_) => invalid("not_found", msg),
        StoreError::Overloaded { .. } => internal("overloaded", msg, true),
        StoreError::BatchFailed { .. } => internal("write_failed", msg, retryable),
        StoreError::WriterCrashed(_) => internal("writer_crashed", msg, true),
        StoreError::Closed => internal("closed", msg, false),
        StoreError::Open { .. } => internal("open_failed", msg, false),
        StoreError::SchemaTooNew { .. } => internal("schema_too_new", msg, false),
        StoreError::Constraint(_) => invalid("constraint_failed", msg),
        // Storage conditions (locked, full, I/O, damaged, read-only, interrupted, internal).
        _ => internal("storage", msg, retryable),
    }
}

/// Maps a facade error.
pub fn swarm(e: Error) -> ErrorData {
    match e {
        Error::Store(s) => store(s),
        Error::Invalid(_) => invalid("invalid_argument", e.to_string()),
        Error::UnknownAgent(_) => invalid("not_found", e.to_string()),
        Error::ShutDown => internal("closed", e.to_string(), false),
        other => internal("runtime", other.to_string(), true),
    }
}

/// Maps a validation error from the core types.
pub fn validation(e: edgeswarm::core::ValidationError) -> ErrorData {
    invalid("invalid_argument", format!("invalid input: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ErrorCode;

    #[test]
    fn caller_errors_are_invalid_params_and_server_errors_internal() {
        let e = store(StoreError::Refused("only one SQL statement per call is allowed".into()));
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("only one SQL statement"));
        assert_eq!(e.data.unwrap()["kind"], "sql_refused");
        let e = store(StoreError::Timeout { limit_ms: 5000 });
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("5000 ms"));
        let e = swarm(Error::Store(StoreError::WriterCrashed("boom".into())));
        assert_eq!(e.code, ErrorCode::INTERNAL_ERROR);
        assert_eq!(e.data.unwrap()["retryable"], true);
        let e = swarm(Error::ShutDown);
        assert_eq!(e.code, ErrorCode::INTERNAL_ERROR);
    }
}
