//! The search crate's typed errors. Every message says what was wrong and what to do.

use edgeswarm_store::StoreError;

/// Everything that can go wrong in search, knowledge writes and the benchmark.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SearchError {
    /// The query text is empty or only whitespace.
    #[error("the search query is empty; give at least one word to search for")]
    EmptyQuery,
    /// A request argument is out of range (limit, offset, dates, metadata path...).
    #[error("invalid search argument `{field}`: {reason}")]
    InvalidArgument {
        /// Which argument was refused.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A filter (or request) named a field this version does not know.
    #[error("unknown search field `{field}`; known fields are: {known}")]
    UnknownField {
        /// The field the caller sent.
        field: String,
        /// The accepted field names.
        known: &'static str,
    },
    /// The request JSON did not parse into a search request.
    #[error("invalid search request JSON: {0}")]
    InvalidRequest(String),
    /// The pagination cursor was not produced by this search (or is corrupted).
    #[error("invalid pagination cursor `{0}`; pass the `next_cursor` of a previous page unchanged, or omit it to start over")]
    BadCursor(String),
    /// No live knowledge entry has this id.
    #[error("no knowledge entry with id `{0}` (it may have been deleted)")]
    NotFound(String),
    /// The embedder failed or returned vectors of the wrong shape.
    #[error("embedder `{embedder}` failed: {reason}")]
    Embedder {
        /// The embedder id.
        embedder: String,
        /// What went wrong.
        reason: String,
    },
    /// `try_search` found the search actor's mailbox full; retry later or use `search`,
    /// which waits.
    #[error("the search actor has {capacity} requests waiting (its mailbox is full); retry later, use search (which waits), or raise ChannelConfig::search_mailbox")]
    Overloaded {
        /// The mailbox bound (`ChannelConfig::search_mailbox`).
        capacity: usize,
    },
    /// The search actor is not running (stopped or crashed); start a new one.
    #[error("the search actor is not running: {0}; start a new one with Search::start")]
    ActorGone(String),
    /// The store refused or failed the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<edgeswarm_core::ValidationError> for SearchError {
    fn from(e: edgeswarm_core::ValidationError) -> Self {
        SearchError::Store(StoreError::Invalid(e))
    }
}

/// The crate's result type.
pub type Result<T, E = SearchError> = std::result::Result<T, E>;
