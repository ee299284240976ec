//! Consistency levels, chosen per call. Semantics are written down in
//! docs/runtime-semantics.md.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How many copies a write must reach before the caller is acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WriteConsistency {
    /// Acked once committed to the home file (durable per the store's `Durability`).
    #[default]
    Local,
    /// Acked once a majority of configured regions hold the write.
    Quorum,
    /// Acked once every configured region holds the write.
    All,
}

impl WriteConsistency {
    /// The name stored in `distributed_transactions.consistency_level`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteConsistency::Local => "eventual",
            WriteConsistency::Quorum => "quorum",
            WriteConsistency::All => "strong",
        }
    }
}

/// Where a read is served from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadConsistency {
    /// The home file: read-your-writes.
    #[default]
    Local,
    /// The lowest-latency healthy region, optionally only among regions whose lag is
    /// under `max_lag`.
    Nearest { max_lag: Option<Duration> },
    /// One named region.
    Region(String),
}
