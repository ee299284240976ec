//! The facade's error type: wraps each layer's typed error and adds the runtime's own.
//! [`Error::kind`] sorts every variant of every layer into one [`ErrorKind`], so a host
//! (the MCP server, the CLI, an HTTP API) can tell "fix your input" from "not there",
//! "retry later" and "our fault" without matching on the layers' enums.

use edgeswarm_search::SearchError;
use edgeswarm_store::StoreError;
use edgeswarm_sync::SyncError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("no regions are configured; add them with SwarmBuilder::region to use {0}")]
    NoRegions(&'static str),
    #[error("no agent with id `{0}`; spawn it first or check the id (swarm.agents() lists them)")]
    UnknownAgent(String),
    #[error("an agent with id `{0}` already exists; ids are unique within a swarm")]
    DuplicateAgent(String),
    #[error("agent `{id}` has {capacity} tasks waiting (its mailbox is full); retry later, use send_wait, or spawn more agents")]
    MailboxFull { id: String, capacity: usize },
    #[error("agent `{id}` takes tasks of type {expected}, not {given}")]
    WrongTaskType {
        id: String,
        expected: &'static str,
        given: &'static str,
    },
    #[error("agent `{0}` is stopped (it exceeded its restart limit or was stopped)")]
    AgentStopped(String),
    #[error("the swarm is shut down; start a new one")]
    ShutDown,
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("could not start actor: {0}")]
    Spawn(String),
}

/// What kind of failure an [`Error`] is, whichever layer raised it. Hosts map errors by
/// kind; the error's message (its `Display`) says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller's input is wrong (a bad argument, cursor, query or record); nothing
    /// was done. Fix the input and send it again.
    Invalid,
    /// A SQL statement was refused before it ran (writes on the read path, several
    /// statements, ATTACH, internal tables...). Nothing ran.
    SqlRefused,
    /// SQLite reported an error running the caller's statement (syntax, no such table,
    /// a constraint). Nothing of that statement was kept.
    SqlError,
    /// The caller's statement ran past the query time limit and was interrupted.
    QueryTimeout,
    /// What the call named does not exist (agent, knowledge entry, region, table).
    NotFound,
    /// What the call would create already exists (an agent id).
    AlreadyExists,
    /// The swarm has no regions and the call needs them.
    NotConfigured,
    /// A queue or mailbox is full; nothing was queued. Retry later.
    Overloaded,
    /// A transient failure (the writer restarted, a batch failed, a region is
    /// unreachable or slow); the work was not done or not confirmed. Retry it: writes are
    /// idempotent by id.
    Unavailable,
    /// The swarm, or the part of it the call needs, is shut down or stopped.
    Closed,
    /// The runtime failed in a way a retry does not cure (cannot open the file, schema
    /// too new, an actor could not start, the embedder failed, a bug).
    Internal,
}

impl ErrorKind {
    /// The caller can fix it by changing the request.
    pub fn is_caller_error(self) -> bool {
        matches!(
            self,
            ErrorKind::Invalid
                | ErrorKind::SqlRefused
                | ErrorKind::SqlError
                | ErrorKind::QueryTimeout
                | ErrorKind::NotFound
                | ErrorKind::AlreadyExists
                | ErrorKind::NotConfigured
        )
    }
    /// Sending the same request again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Overloaded | ErrorKind::Unavailable)
    }
    /// A stable snake_case name, for machine-readable error data.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid_argument",
            ErrorKind::SqlRefused => "sql_refused",
            ErrorKind::SqlError => "sql_error",
            ErrorKind::QueryTimeout => "query_timeout",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::NotConfigured => "not_configured",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Closed => "closed",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn store_kind(e: &StoreError) -> ErrorKind {
    match e {
        StoreError::Invalid(_) => ErrorKind::Invalid,
        StoreError::Refused(_) | StoreError::ResultTooLarge { .. } => ErrorKind::SqlRefused,
        StoreError::Sql(_) | StoreError::Constraint(_) => ErrorKind::SqlError,
        StoreError::Interrupted(_) => ErrorKind::QueryTimeout,
        StoreError::Timeout { .. } => ErrorKind::QueryTimeout,
        StoreError::NotFound(_) => ErrorKind::NotFound,
        StoreError::Overloaded { .. } => ErrorKind::Overloaded,
        // Conditions that may clear (a lock, a full disk, an I/O error): the call can be retried later.
        StoreError::BatchFailed { .. } | StoreError::WriterCrashed(_) | StoreError::Busy(_) | StoreError::Full(_) | StoreError::Io(_) => {
            ErrorKind::Unavailable
        }
        StoreError::NoKnowledgeWriter => ErrorKind::NotConfigured,
        StoreError::Closed => ErrorKind::Closed,
        StoreError::Open { .. }
        | StoreError::SchemaTooNew { .. }
        | StoreError::Corrupt(_)
        | StoreError::ReadOnly(_)
        | StoreError::Internal(_) => ErrorKind::Internal,
    }
}

fn search_kind(e: &SearchError) -> ErrorKind {
    match e {
        SearchError::EmptyQuery
        | SearchError::InvalidArgument { .. }
        | SearchError::UnknownField { .. }
        | SearchError::InvalidRequest(_)
        | SearchError::BadCursor(_) => ErrorKind::Invalid,
        SearchError::NotFound(_) => ErrorKind::NotFound,
        SearchError::Overloaded { .. } => ErrorKind::Overloaded,
        SearchError::Embedder { .. } => ErrorKind::Internal,
        SearchError::ActorGone(_) => ErrorKind::Closed,
        SearchError::Store(s) => store_kind(s),
    }
}

fn sync_kind(e: &SyncError) -> ErrorKind {
    match e {
        SyncError::UnknownRegion { .. } => ErrorKind::NotFound,
        SyncError::Config(_) | SyncError::Table { .. } => ErrorKind::Invalid,
        SyncError::Refused(_) => ErrorKind::SqlRefused,
        SyncError::RegionSql { .. } => ErrorKind::SqlError,
        SyncError::Store(s) => store_kind(s),
        SyncError::ConsistencyTimeout { .. } => ErrorKind::Unavailable,
        SyncError::Closed => ErrorKind::Closed,
        SyncError::ReplyTooLarge { .. } => ErrorKind::Overloaded,
        e if e.is_transient() => ErrorKind::Unavailable,
        SyncError::RegionOpen { .. }
        | SyncError::Partitioned { .. }
        | SyncError::Lost { .. }
        | SyncError::Unreachable { .. }
        | SyncError::Unauthorized { .. }
        | SyncError::Tls { .. }
        | SyncError::Http { .. }
        | SyncError::MalformedReply { .. }
        | SyncError::Internal(_) => ErrorKind::Internal,
    }
}

impl Error {
    /// What kind of failure this is (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store(e) => store_kind(e),
            Error::Search(e) => search_kind(e),
            Error::Sync(e) => sync_kind(e),
            Error::NoRegions(_) => ErrorKind::NotConfigured,
            Error::UnknownAgent(_) => ErrorKind::NotFound,
            Error::DuplicateAgent(_) => ErrorKind::AlreadyExists,
            Error::MailboxFull { .. } => ErrorKind::Overloaded,
            Error::WrongTaskType { .. } | Error::Invalid(_) => ErrorKind::Invalid,
            Error::AgentStopped(_) | Error::ShutDown => ErrorKind::Closed,
            Error::Spawn(_) => ErrorKind::Internal,
        }
    }
}

impl From<edgeswarm_core::ValidationError> for Error {
    fn from(e: edgeswarm_core::ValidationError) -> Self {
        Error::Store(StoreError::Invalid(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_sorts_into_a_kind() {
        assert_eq!(Error::from(SearchError::EmptyQuery).kind(), ErrorKind::Invalid);
        assert_eq!(Error::from(SearchError::BadCursor("x".into())).kind(), ErrorKind::Invalid);
        assert_eq!(Error::from(SearchError::NotFound("k".into())).kind(), ErrorKind::NotFound);
        assert_eq!(
            Error::from(SearchError::Store(StoreError::WriterCrashed("boom".into()))).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            Error::from(StoreError::Refused("two statements".into())).kind(),
            ErrorKind::SqlRefused
        );
        assert_eq!(Error::from(StoreError::Timeout { limit_ms: 5 }).kind(), ErrorKind::QueryTimeout);
        assert_eq!(Error::from(StoreError::Overloaded { capacity: 1 }).kind(), ErrorKind::Overloaded);
        assert_eq!(
            Error::from(SyncError::Partitioned { region: "eu".into() }).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            Error::from(SyncError::UnknownRegion {
                name: "x".into(),
                known: vec![]
            })
            .kind(),
            ErrorKind::NotFound
        );
        assert_eq!(Error::NoRegions("partition").kind(), ErrorKind::NotConfigured);
        assert_eq!(Error::ShutDown.kind(), ErrorKind::Closed);
        assert!(ErrorKind::Overloaded.is_retryable() && !ErrorKind::Invalid.is_retryable());
        assert!(ErrorKind::SqlError.is_caller_error() && !ErrorKind::Internal.is_caller_error());
    }
}
