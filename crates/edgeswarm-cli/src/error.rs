//! The CLI's typed errors. Every message says what went wrong and what to do about it.

use std::path::PathBuf;

use crate::config::Problem;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {reason}; check the path and its permissions, or drop --config to use the defaults")]
    ConfigRead { path: PathBuf, reason: String },
    /// The config file has problems; each is listed with its line.
    #[error("config file {path} has {} problem(s):\n{}\nrun `edgeswarm config check` for details", problems.len(), render_problems(path, problems))]
    Config { path: PathBuf, problems: Vec<Problem> },
    /// A flag or environment variable has a bad value.
    #[error("invalid setting {name}: {reason}")]
    Setting { name: String, reason: String },
    /// The directory that should hold the database does not exist.
    #[error("the directory {dir} for database {db} does not exist; create it (mkdir -p {dir}) or pass another --db")]
    DbDirMissing { db: PathBuf, dir: PathBuf },
    /// A command that only reads needs an existing database. `orphan_wal`: the bytes
    /// still in its `-wal` (the file was deleted or moved without its log), when any.
    #[error("no database at {}{}", .path.display(), match .orphan_wal {
        Some(n) => format!(", but {}-wal still holds {n} bytes of its writes: the file was deleted or moved without its log; \
                           move the log with the database, or delete it (and the -shm) if the deletion was meant", .path.display()),
        None => "; run `edgeswarm demo` (or any write) to create it, or pass --db PATH".to_string(),
    })]
    DbMissing { path: PathBuf, orphan_wal: Option<u64> },
    /// Store errors (SQL, refused statements, open failures...).
    #[error(transparent)]
    Store(#[from] edgeswarm::StoreError),
    /// Runtime errors.
    #[error(transparent)]
    Swarm(#[from] edgeswarm::Error),
    /// The metrics endpoint could not listen.
    #[error("cannot listen on {addr} for --metrics-addr: {reason}")]
    Bind { addr: String, reason: String },
    /// A feature another crate has not provided yet.
    #[error("`{what}` is not available in this build: {why}")]
    NotAvailable { what: String, why: String },
    /// Bad input given to a command.
    #[error("{0}")]
    Invalid(String),
    /// Input/output on a named file.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// Doctor found failing checks (already printed).
    #[error("{0} check(s) failed; see the fixes above")]
    ChecksFailed(usize),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    pub fn not_available(what: &str, why: &str) -> Self {
        CliError::NotAvailable {
            what: what.into(),
            why: why.into(),
        }
    }
    pub fn file(path: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        CliError::File {
            path: path.to_string(),
            reason: e.to_string(),
        }
    }
}

fn render_problems(path: &std::path::Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {}", p.render(path)))
        .collect::<Vec<_>>()
        .join("\n")
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
