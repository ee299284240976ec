//! Region and sync configuration, with documented defaults.

use crate::error::{Result, SyncError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

/// One region, as named in configuration:
/// `{ name = "eu-central-1", url = "file:regions/eu.db", latency_ms = 45 }` or
/// `{ name = "us-west-2", url = "http://127.0.0.1:8081", token_env = "US_TOKEN" }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegionConfig {
    /// Unique region name; it is the key in `edge_replicas` and `distributed_transactions`.
    pub name: String,
    /// `file:<path>` for a [`crate::LocalLink`] region file, `http://` / `https://` for a
    /// Hrana server ([`crate::HranaLink`]); `libsql://host` (Turso's form) means
    /// `https://host`. Shown redacted (an `?authToken=` query never appears in status,
    /// logs or errors).
    pub url: String,
    /// Simulated round-trip latency of a local link, in ms (ignored for HTTP regions,
    /// whose latency is real). Also the router's prior before any RTT is measured.
    #[serde(default)]
    pub latency_ms: u64,
    /// Name of the environment variable holding the bearer token of an HTTP region.
    #[serde(default)]
    pub token_env: Option<String>,
    /// PEM file with the CA certificate(s) that sign an `https://` region's server
    /// certificate, for a private CA: when set, only these are trusted for this region
    /// (not the system roots). `None`: the operating system's trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl RegionConfig {
    /// A `file:` region with the given simulated latency.
    pub fn local(name: impl Into<String>, path: impl AsRef<std::path::Path>, latency_ms: u64) -> Self {
        RegionConfig {
            name: name.into(),
            url: format!("file:{}", path.as_ref().display()),
            latency_ms,
            token_env: None,
            ca_file: None,
        }
    }
    /// An HTTP (Hrana) region.
    pub fn http(name: impl Into<String>, url: impl Into<String>, token_env: Option<String>) -> Self {
        RegionConfig {
            name: name.into(),
            url: url.into(),
            latency_ms: 0,
            token_env,
            ca_file: None,
        }
    }
    /// The same region, verified against this CA file (PEM) instead of the system roots.
    pub fn with_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}

/// What a simulated local link does to each request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkProfile {
    /// Round-trip time added to every request (half before, half after the region
    /// handles it), so measured latency matches the configured region latency.
    pub latency: Duration,
    /// Uniform random extra delay in [0, jitter] per request; also reorders pipelined
    /// batches, which LWW must tolerate.
    pub jitter: Duration,
    /// Probability in [0, 1] that a request is lost: half of losses drop the request
    /// before the region sees it, half drop the reply after it applied (so the batch is
    /// redelivered: tests at-least-once delivery with exactly-once effect).
    pub loss_rate: f64,
    /// Probability in [0, 1] that a push is applied twice (duplicate delivery).
    pub duplicate_rate: f64,
    /// Bytes per second the link carries; `None` = unlimited. Adds `bytes / cap` delay.
    pub bandwidth_bytes_per_sec: Option<u64>,
}

impl Default for LinkProfile {
    fn default() -> Self {
        LinkProfile {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            loss_rate: 0.0,
            duplicate_rate: 0.0,
            bandwidth_bytes_per_sec: None,
        }
    }
}

impl LinkProfile {
    /// A link with this round-trip latency and nothing else.
    pub fn with_latency_ms(ms: u64) -> Self {
        LinkProfile {
            latency: Duration::from_millis(ms),
            ..Default::default()
        }
    }
}

/// Settings shared by every SyncActor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncConfig {
    /// Max rows per pushed batch. Default 2,000: big enough to amortise a region
    /// transaction, small enough to keep one batch well under a second of work and to
    /// pipeline a backlog. Counted in rows, not `_changes` entries: a rowid-range entry
    /// of an append-only table counts as the rows it covers (it is never split, so a
    /// batch holding one large range may exceed this). After start or a failure the
    /// first batches are smaller (128 rows, doubling per batch) so reading, shipping and
    /// applying overlap from the first batch.
    pub batch_rows: usize,
    /// Pushed batches in flight per region at once (pipelining hides latency). Default
    /// 32. Batches may land out of order; LWW makes that harmless and the cursor only
    /// advances over the contiguous acked prefix.
    pub window: usize,
    /// How long a partial batch may wait for more changes while another batch to the
    /// same region is in flight and the previous batch was partial too (a trickle, not
    /// a backlog draining). Default 10 ms: bounds batches per second per region under a
    /// trickle of commits (each batch also costs a `distributed_transactions` row) at
    /// the cost of at most this much extra lag; the batch leaves on its own timer the
    /// moment the linger ends, not on the next `tick`.
    pub push_linger: Duration,
    /// How often each actor pulls the region's log. Default 100 ms.
    pub pull_interval: Duration,
    /// Region log positions per pull page (the entries of other nodes in it are
    /// applied; this node's own are skipped on the region). Default 2,000; a full page
    /// is followed by the next pull at once.
    pub pull_rows: usize,
    /// Health probe (ping) interval while a region is idle or degraded. Default 500 ms.
    pub probe_interval: Duration,
    /// Max probe backoff while a region is down (doubles from `probe_interval`). Default 4 s.
    pub max_probe_backoff: Duration,
    /// Consecutive failures that turn a region from degraded to down. Default 3.
    pub down_after: u32,
    /// The actor's timer tick; due pulls, probes and retries are checked on it (new
    /// commits wake the actor by event, lingering batches by their own timer). Default
    /// 5 ms.
    pub tick: Duration,
    /// How often `edge_replicas` is rewritten with fresh health and lag. Default 500 ms.
    pub status_interval: Duration,
    /// Per-request timeout for HTTP regions. Default 10 s.
    pub request_timeout: Duration,
    /// Attempts per HTTP request on transient errors (with exponential backoff from
    /// 50 ms). Default 3.
    pub http_attempts: u32,
    /// The region this node sits in: `source_region` of its pushes and `target_region`
    /// of its pulls in `distributed_transactions`. Default: the configured region with
    /// the lowest `latency_ms` (the node is "near" it).
    pub home_region: Option<String>,
    /// Profile applied to every `file:` region whose own latency is set by `latency_ms`;
    /// loss, duplication, jitter and bandwidth come from here. Default: none of them.
    pub local_profile: LinkProfile,
    /// EWMA weight of a new RTT sample. Default 0.2.
    pub rtt_alpha: f64,
    /// Keep `distributed_transactions` rows for pushes that shipped no new row? Default
    /// false: only batches that carried rows are recorded.
    pub record_empty_batches: bool,
    /// How long [`crate::SyncHandle::remove_region`] lets a removed region drain: its
    /// actor keeps pushing until the region holds every change committed before the
    /// removal, or this much time passed; the rest is abandoned for that region. A
    /// region that is down is not waited for. Default 5 s.
    pub remove_drain: Duration,
    /// Largest Hrana reply accepted, in bytes. A bigger reply fails the request with
    /// [`SyncError::ReplyTooLarge`] as soon as its size is known (Content-Length) or
    /// the streamed body passes the cap; it is never read whole. Default 64 MiB: a
    /// full pull page of 2,000 rows with 8 KiB embeddings is about 20 MiB of JSON.
    pub max_reply_bytes: usize,
    /// How often the internal logs are compacted (see [`crate::compact`]), off the push
    /// and pull paths. Default 60 s; zero turns compaction off.
    pub compact_interval: Duration,
    /// Rows one compaction pass deletes per table, at most, so a pass is a bounded
    /// piece of work. Default 10,000.
    pub compact_rows: usize,
    /// How long `distributed_transactions` and `conflicts` rows are kept (they are
    /// history, not needed by any puller). Default 7 days.
    pub keep_history: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            batch_rows: 2000,
            window: 32,
            push_linger: Duration::from_millis(10),
            pull_interval: Duration::from_millis(100),
            pull_rows: 2000,
            probe_interval: Duration::from_millis(500),
            max_probe_backoff: Duration::from_secs(4),
            down_after: 3,
            tick: Duration::from_millis(5),
            status_interval: Duration::from_millis(500),
            request_timeout: Duration::from_secs(10),
            http_attempts: 3,
            home_region: None,
            local_profile: LinkProfile::default(),
            rtt_alpha: 0.2,
            record_empty_batches: false,
            remove_drain: Duration::from_secs(5),
            max_reply_bytes: 64 << 20,
            compact_interval: Duration::from_secs(60),
            compact_rows: 10_000,
            keep_history: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Checks names and URLs; returns the configs unchanged if they are valid.
pub fn validate(regions: &[RegionConfig]) -> Result<()> {
    let mut seen = HashSet::new();
    for r in regions {
        if r.name.trim().is_empty() {
            return Err(SyncError::Config("a region has an empty name".into()));
        }
        if !seen.insert(r.name.as_str()) {
            return Err(SyncError::Config(format!(
                "region name `{}` appears twice; names must be unique",
                r.name
            )));
        }
        let ok =
            r.url.starts_with("file:") || r.url.starts_with("http://") || r.url.starts_with("https://") || r.url.starts_with("libsql://");
        if !ok {
            return Err(SyncError::Config(format!(
                "region `{}`: url `{}` must start with file:, http://, https:// or libsql://",
                r.name,
                crate::link::tls::redact_url(&r.url)
            )));
        }
        if r.url.starts_with("file:") && r.url.len() == 5 {
            return Err(SyncError::Config(format!("region `{}`: file: url has no path", r.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_and_bad_urls_are_refused() {
        let a = RegionConfig::local("a", "/tmp/a.db", 1);
        assert!(validate(&[a.clone(), a.clone()]).is_err());
        let bad = RegionConfig::http("b", "ftp://x", None);
        assert!(validate(&[a.clone(), bad]).is_err());
        assert!(validate(&[a]).is_ok());
    }
}
