//! The benchmarks' error type: whichever layer failed, with its message.

/// Why a benchmark did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The home store failed (open, write, read).
    #[error(transparent)]
    Store(#[from] edgeswarm_store::StoreError),
    /// The search actor failed.
    #[error(transparent)]
    Search(#[from] edgeswarm_search::SearchError),
    /// Replication failed.
    #[error(transparent)]
    Sync(#[from] edgeswarm_sync::SyncError),
    /// The swarm runtime failed.
    #[error(transparent)]
    Swarm(#[from] edgeswarm::Error),
    /// A file, pipe or child process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Anything else (a worker thread panicked, a peer sent garbage, ...).
    #[error("{0}")]
    Other(String),
}

impl BenchError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io { what: what.into(), source }
    }
}

impl From<tokio::task::JoinError> for BenchError {
    fn from(e: tokio::task::JoinError) -> Self {
        BenchError::Other(format!("a benchmark task failed: {e}"))
    }
}

/// Result with [`BenchError`].
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
