//! Validation errors: bad input is refused before it reaches a queue, so nothing is
//! half-written.

/// Why a record or argument was refused. Messages say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("`{field}` is {len} bytes; the limit is {max} bytes (raise Limits::{limit_name} or shorten it)")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
        limit_name: &'static str,
    },
    #[error("`{field}` contains a NUL byte (\\0) at byte {at}; remove it")]
    NulByte { field: &'static str, at: usize },
    #[error("`{field}` is not valid JSON: {reason}")]
    InvalidJson { field: &'static str, reason: String },
    #[error("`{field}` must be a JSON object, got {got}")]
    NotAnObject { field: &'static str, got: &'static str },
    #[error("`{field}` is out of range: {reason}")]
    OutOfRange { field: &'static str, reason: String },
    #[error("{0}")]
    Other(String),
}
