//! Runtime errors as MCP errors, chosen by the error's kind (`edgeswarm::ErrorKind`).
//! Anything the caller can fix (bad arguments, refused or failing SQL, a query past the
//! time limit, something that does not exist) is `invalid_params` (-32602); anything on
//! the server's side (a full queue, a restarting writer, a closed store, a bug) is
//! `internal_error` (-32603). The message is the runtime's own, which says what to do;
//! `data` carries the machine-readable `kind` and whether a retry may help.

use edgeswarm::{Error, ValidationError};
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

/// Maps a facade error by its kind.
pub fn swarm(e: Error) -> ErrorData {
    let kind = e.kind();
    if kind.is_caller_error() {
        invalid(kind.as_str(), e.to_string())
    } else {
        internal(kind.as_str(), e.to_string(), kind.is_retryable())
    }
}

/// Maps a validation error from the record types.
pub fn validation(e: ValidationError) -> ErrorData {
    swarm(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeswarm::{SearchError, StoreError, SyncError};
    use rmcp::model::ErrorCode;

    fn kind(e: &ErrorData) -> (ErrorCode, String, bool) {
        let d = e.data.clone().unwrap();
        (e.code, d["kind"].as_str().unwrap().to_string(), d["retryable"].as_bool().unwrap())
    }

    #[test]
    fn caller_errors_are_invalid_params_and_server_errors_internal() {
        let e = swarm(StoreError::Refused("only one SQL statement per call is allowed".into()).into());
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("only one SQL statement"));
        assert_eq!(e.data.unwrap()["kind"], "sql_refused");
        let e = swarm(StoreError::Timeout { limit_ms: 5000 }.into());
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("5000 ms"));
        let e = swarm(Error::Store(StoreError::WriterCrashed("boom".into())));
        assert_eq!(e.code, ErrorCode::INTERNAL_ERROR);
        assert_eq!(e.data.unwrap()["retryable"], true);
        let e = swarm(Error::ShutDown);
        assert_eq!(e.code, ErrorCode::INTERNAL_ERROR);
    }

    #[test]
    fn search_errors_are_mapped_by_kind_not_as_retryable_runtime_errors() {
        let e = swarm(SearchError::EmptyQuery.into());
        assert_eq!(kind(&e), (ErrorCode::INVALID_PARAMS, "invalid_argument".into(), false));
        assert!(e.message.contains("query is empty"));
        let e = swarm(SearchError::BadCursor("zz".into()).into());
        assert_eq!(kind(&e), (ErrorCode::INVALID_PARAMS, "invalid_argument".into(), false));
        assert!(e.message.contains("next_cursor"));
        let e = swarm(SearchError::NotFound("k1".into()).into());
        assert_eq!(kind(&e), (ErrorCode::INVALID_PARAMS, "not_found".into(), false));
        let e = swarm(SearchError::ActorGone("stopped".into()).into());
        assert_eq!(kind(&e), (ErrorCode::INTERNAL_ERROR, "closed".into(), false));
        let e = swarm(SearchError::Store(StoreError::Overloaded { capacity: 8 }).into());
        assert_eq!(kind(&e), (ErrorCode::INTERNAL_ERROR, "overloaded".into(), true));
    }

    #[test]
    fn runtime_and_sync_errors_are_mapped_by_kind() {
        let e = swarm(Error::UnknownAgent("a1".into()));
        assert_eq!(kind(&e), (ErrorCode::INVALID_PARAMS, "not_found".into(), false));
        let e = swarm(Error::MailboxFull {
            id: "a1".into(),
            capacity: 4,
        });
        assert_eq!(kind(&e), (ErrorCode::INTERNAL_ERROR, "overloaded".into(), true));
        let e = swarm(Error::NoRegions("partition"));
        assert_eq!(kind(&e), (ErrorCode::INVALID_PARAMS, "not_configured".into(), false));
        let e = swarm(SyncError::Partitioned { region: "eu".into() }.into());
        assert_eq!(kind(&e), (ErrorCode::INTERNAL_ERROR, "unavailable".into(), true));
        let e = swarm(Error::Spawn("no".into()));
        assert_eq!(kind(&e), (ErrorCode::INTERNAL_ERROR, "internal".into(), false));
    }
}
