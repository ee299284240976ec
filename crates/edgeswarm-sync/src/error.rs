//! The sync crate's typed errors. Every message names the region and says what to do.

use edgeswarm_store::StoreError;

/// Everything that can go wrong while replicating.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// A call named a region that is not configured.
    #[error("unknown region `{name}`; configured regions: {known:?}")]
    UnknownRegion { name: String, known: Vec<String> },
    /// The region configuration is invalid (duplicate names, bad URL, ...). Nothing started.
    #[error("invalid region configuration: {0}")]
    Config(String),
    /// The region's file could not be opened as a database.
    #[error("region `{region}`: cannot open {path}: {reason} (is it a SQLite/libSQL database? move it away or fix the url)")]
    RegionOpen { region: String, path: String, reason: String },
    /// The region is partitioned away (simulated link) and did not answer.
    #[error("region `{region}` is unreachable (partitioned); writes stay queued in the change log")]
    Partitioned { region: String },
    /// The request or its reply was lost (simulated loss); it is retried.
    #[error("region `{region}`: request lost in transit; it will be retried")]
    Lost { region: String },
    /// The server could not be reached (connection refused, DNS, reset, timeout).
    #[error("region `{region}`: cannot reach {url}: {reason}; check that the server runs and the url is right")]
    Unreachable { region: String, url: String, reason: String },
    /// The TLS handshake failed: the certificate is not trusted, expired or for another
    /// host, or the server does not speak TLS. Not retried until the next probe.
    #[error("region `{region}`: TLS to {url} failed: {problem}; {fix}")]
    Tls {
        region: String,
        url: String,
        problem: String,
        fix: String,
    },
    /// The server refused our credentials.
    #[error("region `{region}`: the server refused the token (HTTP {status}); set the right token in ${token_env}")]
    Unauthorized { region: String, status: u16, token_env: String },
    /// The server answered with an HTTP error status.
    #[error("region `{region}`: HTTP {status} from the server: {body}{}", http_fix(*status))]
    Http { region: String, status: u16, body: String },
    /// The server's reply could not be understood.
    #[error("region `{region}`: malformed reply from the server: {reason}; is the url a libSQL (Hrana over HTTP) server?")]
    MalformedReply { region: String, reason: String },
    /// The server's reply is bigger than the configured cap
    /// (`SyncConfig::max_reply_bytes`); it was not read whole.
    #[error(
        "region `{region}`: the server's reply exceeds {limit_bytes} bytes (max_reply_bytes); lower pull_rows or raise max_reply_bytes"
    )]
    ReplyTooLarge { region: String, limit_bytes: usize },
    /// The region ran a statement and reported an error (the batch was rolled back).
    #[error("region `{region}`: SQL error: {message}")]
    RegionSql { region: String, message: String },
    /// The home store refused or failed an operation.
    #[error("home store: {0}")]
    Store(#[from] StoreError),
    /// A write did not reach the requested consistency before the timeout. The write is
    /// durable at home and keeps replicating; `reached` says where it already is.
    #[error("seq {seq} reached {reached_count} of the {required} regions required by {level} within {timeout_ms} ms (reached: {reached:?}, missing: {missing:?}); the write is durable locally and keeps replicating")]
    ConsistencyTimeout {
        seq: i64,
        level: &'static str,
        required: usize,
        reached_count: usize,
        reached: Vec<String>,
        missing: Vec<String>,
        timeout_ms: u64,
    },
    /// A table cannot be replicated as asked.
    #[error("table `{table}` cannot be replicated: {reason}")]
    Table { table: String, reason: String },
    /// A SQL statement sent to a region was refused before it ran.
    #[error("SQL refused: {0}")]
    Refused(String),
    /// The sync system is shut down.
    #[error("the sync system is shut down")]
    Closed,
    /// An internal invariant failed (a bug); the message says which.
    #[error("internal sync error: {0}")]
    Internal(String),
}

impl SyncError {
    /// True for errors a retry may cure (network trouble, loss, partition).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SyncError::Partitioned { .. }
                | SyncError::Lost { .. }
                | SyncError::Unreachable { .. }
                | SyncError::Http { status: 500..=599, .. }
        )
    }
}

/// What to do about an HTTP error status (appended to [`SyncError::Http`]).
fn http_fix(status: u16) -> &'static str {
    match status {
        404 | 405 => "; is the url the server's base url (edgeswarm posts to <url>/v2/pipeline)?",
        500..=599 => "; the server failed; it is retried, check the server's log",
        _ => "",
    }
}

/// Result with [`SyncError`].
pub type Result<T, E = SyncError> = std::result::Result<T, E>;
