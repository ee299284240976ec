//! Configuration structs with documented defaults. Defaults were chosen by measurement
//! on the reference machine (2 cores); see docs/ARCHITECTURE.md.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// What an ack promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `PRAGMA synchronous=FULL`: an acked write survives power loss. The default.
    #[default]
    Full,
    /// `PRAGMA synchronous=NORMAL`: an acked write survives a process crash; the last
    /// transactions may roll back on power loss.
    Normal,
}

impl Durability {
    pub fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Normal => "normal",
        }
    }
}

/// Group-commit limits: a batch closes at whichever is hit first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchConfig {
    /// Max writes per transaction. Default 4096: past ~2k rows the fsync is amortised
    /// and larger batches only add ack latency.
    pub max_rows: usize,
    /// Max approximate payload bytes per transaction. Default 8 MiB, so a burst of large
    /// knowledge entries does not build a transaction bigger than the WAL autocheckpoint.
    pub max_bytes: usize,
    /// How long the writer waits for more writes after the first one of a batch.
    /// Default 0: the writer never idles on purpose. Batches still form by themselves
    /// because writes queue up while the previous commit's fsync runs (natural group
    /// commit); a linger only adds latency when the queue is empty.
    pub max_linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: 4096,
            max_bytes: 8 << 20,
            max_linger: Duration::ZERO,
        }
    }
}

/// Input limits; anything larger is refused with a typed error before it is queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Max bytes of a content field (message, knowledge). Default 1 MiB.
    pub max_content_bytes: usize,
    /// Max bytes of a metadata JSON object. Default 64 KiB.
    pub max_metadata_bytes: usize,
    /// Max bytes of a short field (ids, names, roles, tags). Default 256.
    pub max_name_bytes: usize,
    /// Max tags per knowledge entry. Default 64.
    pub max_tags: usize,
    /// Max bytes of one SQL statement. Default 100 KiB.
    pub max_sql_bytes: usize,
    /// Max rows a raw SQL read returns; more sets `truncated`. Default 10,000.
    pub max_result_rows: usize,
    /// A raw SQL statement running longer than this is interrupted. Default 5 s.
    pub query_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_content_bytes: 1 << 20,
            max_metadata_bytes: 64 << 10,
            max_name_bytes: 256,
            max_tags: 64,
            max_sql_bytes: 100 << 10,
            max_result_rows: 10_000,
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything the store needs to open the home file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// The home libSQL file. Default `./edgeswarm.db`.
    pub path: PathBuf,
    /// Default `Durability::Full`.
    pub durability: Durability,
    pub batch: BatchConfig,
    /// Capacity of the bounded queue in front of the writer, in writes. When full,
    /// `publish` waits and `try_publish` returns `Overloaded`. Default 65,536 — about
    /// 16 full batches, enough to keep the writer busy during a commit, small enough to
    /// keep memory flat (~tens of MB worst case with default limits on typical rows).
    pub queue_capacity: usize,
    /// Read-only connections, each on its own thread. Default 4: reads are short and
    /// mostly CPU; on a 2-core machine more threads only add contention.
    pub read_pool_size: usize,
    pub limits: Limits,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("./edgeswarm.db"),
            durability: Durability::Full,
            batch: BatchConfig::default(),
            queue_capacity: 65_536,
            read_pool_size: 4,
            limits: Limits::default(),
        }
    }
}

impl StoreConfig {
    pub fn at(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            ..Default::default()
        }
    }
}
