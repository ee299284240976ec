//! The store's typed errors. Every message says what happened and what to do.
//!
//! SQLite failures are sorted by their result code into variants a caller can act on
//! (`Constraint`, `Busy`, `Full`, `Io`, `Corrupt`, `ReadOnly`, `Interrupted`, `Sql`);
//! each keeps the SQLite extended code and the libSQL error as its `source`.
//! [`StoreError::sqlite_code`] and [`StoreError::is_retryable`] answer the two questions
//! callers ask most, without a match.

use edgeswarm_core::ValidationError;
use std::sync::Arc;

/// What SQLite said: its message, its extended result code and the libSQL error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SqliteFailure {
    /// SQLite's own message (e.g. `UNIQUE constraint failed: kv.key`).
    pub message: String,
    /// The SQLite extended result code (`SQLITE_CONSTRAINT_UNIQUE` = 2067, ...); `None`
    /// when the failure did not come from SQLite with a code (a libSQL API misuse, say).
    pub code: Option<i32>,
    /// The libSQL error this came from, kept whole for `source()` chains. `Arc` because
    /// `StoreError` is `Clone` (one failed batch fails every write in it).
    #[source]
    pub source: Option<Arc<libsql::Error>>,
}

/// Everything that can go wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Bad input; nothing was queued or written. Fix the input.
    #[error("invalid input: {0}")]
    Invalid(#[from] ValidationError),
    /// The write queue is full, in writes or in bytes (`try_publish` only). Retry later
    /// or use `publish`, which waits.
    #[error("storage queue is full (bound: {capacity} writes and StoreConfig::queue_bytes bytes); retry later or use the waiting publish")]
    Overloaded {
        /// The queue's capacity (`StoreConfig::queue_capacity`).
        capacity: usize,
    },
    /// The statement was refused by the SQL guard; nothing ran. Change the statement.
    #[error("SQL refused: {0}")]
    Refused(String),
    /// The statement itself is wrong (syntax error, unknown table or column, wrong
    /// number of parameters, type mismatch, statement too big: `SQLITE_ERROR`,
    /// `SQLITE_RANGE`, `SQLITE_MISMATCH`, `SQLITE_TOOBIG`, ...). Nothing of it was kept;
    /// fix the SQL.
    #[error("SQL error: {0}")]
    Sql(#[source] SqliteFailure),
    /// A UNIQUE, NOT NULL, CHECK, PRIMARY KEY or FOREIGN KEY constraint failed
    /// (`SQLITE_CONSTRAINT_*`); nothing of the statement was kept. The row conflicts
    /// with stored data or breaks a column rule: change the row.
    #[error("constraint failed: {0}; the row conflicts with stored data or breaks a column rule")]
    Constraint(#[source] SqliteFailure),
    /// The database stayed locked by another connection or process past the busy
    /// timeout (`SQLITE_BUSY`, `SQLITE_LOCKED`). Retry; if it persists, look for another
    /// process holding a write transaction on the file.
    #[error("database is locked by another connection: {0}; retry, or find the process holding the file")]
    Busy(#[source] SqliteFailure),
    /// The disk (or the database's size limit) is full (`SQLITE_FULL`). Free disk space
    /// and retry.
    #[error("disk or database full: {0}; free disk space, then retry")]
    Full(#[source] SqliteFailure),
    /// The operating system failed a file operation or memory allocation
    /// (`SQLITE_IOERR_*`, `SQLITE_CANTOPEN`, `SQLITE_NOMEM`, ...). Check the disk, the
    /// file's permissions and free memory.
    #[error("I/O error: {0}; check the disk, the file's permissions and free memory")]
    Io(#[source] SqliteFailure),
    /// The database file is damaged or not a database (`SQLITE_CORRUPT`,
    /// `SQLITE_NOTADB`). Restore from a backup (`edgeswarm doctor` checks the file).
    #[error("database file is damaged: {0}; run `edgeswarm doctor` and restore from a backup")]
    Corrupt(#[source] SqliteFailure),
    /// The file or connection is read-only (`SQLITE_READONLY_*`). Check the file's
    /// permissions, or write through the store rather than a read connection.
    #[error("database is read-only: {0}; check the file's permissions")]
    ReadOnly(#[source] SqliteFailure),
    /// A statement was interrupted (`SQLITE_INTERRUPT`) other than by the query time
    /// limit (that one is `Timeout`). Retry.
    #[error("statement interrupted: {0}; retry it")]
    Interrupted(#[source] SqliteFailure),
    /// A raw SQL statement ran past the query time limit, or a write op past
    /// `StoreConfig::op_timeout`, and was interrupted; nothing of it is stored.
    #[error("query interrupted after {limit_ms} ms (the query time limit); add a LIMIT or narrow it")]
    Timeout {
        /// The limit it ran past (`Limits::query_timeout` or `StoreConfig::op_timeout`), in ms.
        limit_ms: u64,
    },
    /// A raw SQL statement's result passed the byte cap and was stopped; nothing was
    /// returned (a write's changes were rolled back).
    #[error("the result is larger than {limit_bytes} bytes (Limits::max_result_bytes) and was stopped; select fewer or smaller columns, or add a LIMIT")]
    ResultTooLarge {
        /// The cap it passed (`Limits::max_result_bytes`), in bytes.
        limit_bytes: u64,
    },
    /// The batch this write was in failed to commit; the write is not stored. `cause`
    /// says why (often another write of the same batch). Retry it: writes are
    /// idempotent by id.
    #[error("write not stored: the batch failed to commit: {cause}")]
    BatchFailed {
        /// Why the batch failed.
        #[source]
        cause: Box<StoreError>,
    },
    /// The writer crashed while this write was queued or in its batch; the write is not
    /// stored. The writer restarts by itself; retry the write (idempotent by id).
    #[error("write not stored: the storage writer stopped before commit ({0}); retry it")]
    WriterCrashed(String),
    /// The store is shut down (or shutting down); it accepts no more work.
    #[error("the store is shut down; start a new one to write again")]
    Closed,
    /// Opening or migrating the database failed.
    #[error("cannot open database {path}: {reason}")]
    Open {
        /// The file that would not open.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The database file is newer than this build understands.
    #[error("database schema version {found} is newer than this build supports ({supported}); upgrade edgeswarm")]
    SchemaTooNew {
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this build migrates to.
        supported: i64,
    },
    /// A key was not found (kv get on a missing key is `Ok(None)`; this is for by-id reads).
    #[error("not found: {0}")]
    NotFound(String),
    /// A knowledge record was written to a store no knowledge writer is installed on.
    /// Knowledge SQL (with its dedup) lives in edgeswarm-search: start `Search` on this
    /// store, or call `edgeswarm_search::knowledge::install(&store)`, first.
    #[error("no knowledge writer is installed on this store; start edgeswarm-search's Search on it (or call edgeswarm_search::knowledge::install) before writing knowledge")]
    NoKnowledgeWriter,
    /// Something inside edgeswarm failed that the caller cannot fix (a worker thread
    /// died, a reply of the wrong type, a libSQL API misuse). Retry; report it if it
    /// repeats.
    #[error("internal store error: {0}; retry, and report it if it repeats")]
    Internal(String),
}

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_PERM: i32 = 3;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_READONLY: i32 = 8;
const SQLITE_INTERRUPT: i32 = 9;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_PROTOCOL: i32 = 15;
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_NOLFS: i32 = 22;
const SQLITE_NOTADB: i32 = 26;

impl StoreError {
    /// Sorts a SQLite failure by its (extended) result code.
    pub fn from_sqlite(code: i32, message: impl Into<String>, source: Option<Arc<libsql::Error>>) -> Self {
        let f = SqliteFailure {
            message: message.into(),
            code: Some(code),
            source,
        };
        match code & 0xff {
            SQLITE_CONSTRAINT => StoreError::Constraint(f),
            SQLITE_BUSY | SQLITE_LOCKED => StoreError::Busy(f),
            SQLITE_FULL => StoreError::Full(f),
            SQLITE_IOERR | SQLITE_CANTOPEN | SQLITE_PROTOCOL | SQLITE_NOLFS | SQLITE_NOMEM => StoreError::Io(f),
            SQLITE_CORRUPT | SQLITE_NOTADB => StoreError::Corrupt(f),
            SQLITE_READONLY | SQLITE_PERM => StoreError::ReadOnly(f),
            SQLITE_INTERRUPT => StoreError::Interrupted(f),
            _ => StoreError::Sql(f),
        }
    }

    /// Opening `path` failed with `e`. A disk, permission or damage condition keeps its
    /// typed class and SQLite code (a caller can tell a full disk from a damaged file),
    /// with the path and `hint` in its message; anything else is [`StoreError::Open`].
    pub fn opening(path: &str, e: libsql::Error, hint: &str) -> Self {
        if let libsql::Error::SqliteFailure(code, msg) = &e {
            if matches!(
                code & 0xff,
                SQLITE_FULL | SQLITE_IOERR | SQLITE_CANTOPEN | SQLITE_CORRUPT | SQLITE_NOTADB | SQLITE_READONLY | SQLITE_PERM
            ) {
                let message = format!("cannot open database {path}: {msg}{hint}");
                return StoreError::from_sqlite(*code, message, Some(Arc::new(e)));
            }
        }
        StoreError::Open {
            path: path.to_string(),
            reason: format!("{e}{hint}"),
        }
    }

    /// A statement error with no SQLite code (e.g. a value SQLite cannot take).
    pub fn sql(message: impl std::fmt::Display) -> Self {
        StoreError::Sql(SqliteFailure {
            message: message.to_string(),
            code: None,
            source: None,
        })
    }

    /// The batch failure that `cause` led to (kept as its source).
    pub fn batch_failed(cause: StoreError) -> Self {
        StoreError::BatchFailed { cause: Box::new(cause) }
    }

    /// The SQLite failure behind this error, if any (looking through `BatchFailed`).
    pub fn sqlite_failure(&self) -> Option<&SqliteFailure> {
        match self {
            StoreError::Sql(f)
            | StoreError::Constraint(f)
            | StoreError::Busy(f)
            | StoreError::Full(f)
            | StoreError::Io(f)
            | StoreError::Corrupt(f)
            | StoreError::ReadOnly(f)
            | StoreError::Interrupted(f) => Some(f),
            StoreError::BatchFailed { cause } => cause.sqlite_failure(),
            _ => None,
        }
    }

    /// The SQLite extended result code behind this error, if any (e.g. 2067 for
    /// `SQLITE_CONSTRAINT_UNIQUE`, 13 for `SQLITE_FULL`).
    pub fn sqlite_code(&self) -> Option<i32> {
        self.sqlite_failure().and_then(|f| f.code)
    }

    /// Whether the same call may succeed if simply repeated later: a full queue, a
    /// locked file, an interrupted statement, a crashed or restarting writer, a batch
    /// that failed for a reason other than a damaged, full or read-only database, or an
    /// internal failure. Bad input, refused or wrong SQL, constraint failures, time
    /// limits and a closed store are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Overloaded { .. }
            | StoreError::Busy(_)
            | StoreError::Interrupted(_)
            | StoreError::WriterCrashed(_)
            | StoreError::Internal(_) => true,
            StoreError::BatchFailed { cause } => !matches!(
                **cause,
                StoreError::Full(_) | StoreError::Corrupt(_) | StoreError::ReadOnly(_) | StoreError::Io(_)
            ),
            StoreError::Invalid(_)
            | StoreError::Refused(_)
            | StoreError::Sql(_)
            | StoreError::Constraint(_)
            | StoreError::Full(_)
            | StoreError::Io(_)
            | StoreError::Corrupt(_)
            | StoreError::ReadOnly(_)
            | StoreError::Timeout { .. }
            | StoreError::ResultTooLarge { .. }
            | StoreError::Closed
            | StoreError::Open { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::NotFound(_)
            | StoreError::NoKnowledgeWriter => false,
        }
    }
}

impl From<libsql::Error> for StoreError {
    fn from(e: libsql::Error) -> Self {
        match e {
            libsql::Error::SqliteFailure(code, ref msg) => {
                let msg = msg.clone();
                StoreError::from_sqlite(code, msg, Some(Arc::new(e)))
            }
            other => StoreError::Sql(SqliteFailure {
                message: other.to_string(),
                code: None,
                source: Some(Arc::new(other)),
            }),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_sort_into_variants() {
        let e = |c: i32| StoreError::from_sqlite(c, "m", None);
        assert!(matches!(e(2067), StoreError::Constraint(_))); // SQLITE_CONSTRAINT_UNIQUE
        assert!(matches!(e(5), StoreError::Busy(_)));
        assert!(matches!(e(262), StoreError::Busy(_))); // SQLITE_LOCKED_SHAREDCACHE
        assert!(matches!(e(13), StoreError::Full(_)));
        assert!(matches!(e(778), StoreError::Io(_))); // SQLITE_IOERR_WRITE
        assert!(matches!(e(11), StoreError::Corrupt(_)));
        assert!(matches!(e(26), StoreError::Corrupt(_)));
        assert!(matches!(e(1032), StoreError::ReadOnly(_))); // SQLITE_READONLY_DBMOVED
        assert!(matches!(e(9), StoreError::Interrupted(_)));
        assert!(matches!(e(1), StoreError::Sql(_)));
        assert_eq!(e(2067).sqlite_code(), Some(2067));
        assert_eq!(StoreError::batch_failed(e(13)).sqlite_code(), Some(13));
        assert!(e(5).is_retryable());
        assert!(!e(2067).is_retryable());
        assert!(StoreError::batch_failed(e(2067)).is_retryable());
        assert!(!StoreError::batch_failed(e(13)).is_retryable());
    }

    #[test]
    fn libsql_failure_keeps_code_and_source() {
        let e: StoreError = libsql::Error::SqliteFailure(2067, "UNIQUE constraint failed: t.id".into()).into();
        assert!(matches!(e, StoreError::Constraint(_)));
        assert_eq!(e.sqlite_code(), Some(2067));
        let src = std::error::Error::source(&e).expect("variant has a source");
        assert!(std::error::Error::source(src).is_some(), "the libSQL error is kept");
        assert!(e.to_string().contains("UNIQUE constraint failed"), "{e}");
    }
}
