//! The store's typed errors. Every message says what happened and what to do.

use edgeswarm_core::ValidationError;

/// Everything that can go wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Bad input; nothing was queued or written.
    #[error("invalid input: {0}")]
    Invalid(#[from] ValidationError),
    /// The write queue is full (`try_publish` only). Retry later or use `publish`, which waits.
    #[error("storage queue is full ({capacity} writes waiting); retry later or use the waiting publish")]
    Overloaded { capacity: usize },
    /// The statement was refused by the SQL guard; nothing ran.
    #[error("SQL refused: {0}")]
    Refused(String),
    /// SQLite reported an error running a statement; nothing of that statement was kept.
    #[error("SQL error: {0}")]
    Sql(String),
    /// A raw SQL statement ran past the query time limit and was interrupted.
    #[error("query interrupted after {limit_ms} ms (the query time limit); add a LIMIT or narrow it")]
    Timeout { limit_ms: u64 },
    /// The batch this write was in failed to commit; the write is not stored. Retry it:
    /// writes are idempotent by id.
    #[error("write not stored: the batch failed to commit: {0}")]
    BatchFailed(String),
    /// The writer crashed while this write was queued or in its batch; the write is not
    /// stored. The writer restarts by itself; retry the write (idempotent by id).
    #[error("write not stored: the storage writer stopped before commit ({0}); retry it")]
    WriterCrashed(String),
    /// The store is shut down (or shutting down); it accepts no more work.
    #[error("the store is shut down; start a new one to write again")]
    Closed,
    /// Opening or migrating the database failed.
    #[error("cannot open database {path}: {reason}")]
    Open { path: String, reason: String },
    /// The database file is newer than this build understands.
    #[error("database schema version {found} is newer than this build supports ({supported}); upgrade edgeswarm")]
    SchemaTooNew { found: i64, supported: i64 },
    /// A key was not found (kv get on a missing key is `Ok(None)`; this is for by-id reads).
    #[error("not found: {0}")]
    NotFound(String),
}

impl StoreError {
    pub(crate) fn sql(e: impl std::fmt::Display) -> Self {
        StoreError::Sql(e.to_string())
    }
}

impl From<libsql::Error> for StoreError {
    fn from(e: libsql::Error) -> Self {
        StoreError::Sql(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
