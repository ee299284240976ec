//! The metrics endpoint: OpenMetrics text encoded by `prometheus-client` (the official
//! Rust client), served by axum at `GET /metrics` on `--metrics-addr`. Also the status
//! heartbeat a running swarm publishes so `edgeswarm status` in another process can show
//! its queue depths and agents.
//!
//! Every scrape takes one snapshot of the runtime's stats structs (`StoreStats`,
//! `Swarm::agents`, `Swarm::channels`, the search latency histogram, `edge_replicas`) and
//! encodes it through a `prometheus_client` collector; nothing is kept between scrapes.
//! Histograms reach the encoder through one adapter, [`histogram`].
//!
//! Metrics (every name is prefixed `edgeswarm_`; counters end in `_total`):
//! - `write_batch_size` histogram (rows per committed batch), `commit_latency_seconds`
//!   histogram (per batch commit), `ack_latency_seconds` histogram (queue to ack),
//!   `write_queue_depth` / `write_queue_capacity` / `read_queue_depth` /
//!   `write_last_batch_size` gauges, `write_batches_total`, `write_ops_total`,
//!   `write_failed_batches_total`, `write_queue_rejected_total`, `writer_restarts_total`;
//! - `channel_depth{channel}` / `channel_capacity{channel}`: every named channel (see
//!   `edgeswarm_core::ChannelConfig`);
//! - `agents{status}`, `agent_restarts_total{agent,region}`,
//!   `agent_tasks_total{agent,outcome}`, `agent_mailbox_depth{agent}`,
//!   `agent_restarts_all_total` (when a swarm runs in this process);
//! - `region_up{region}`, `region_status{region,status}`, `region_lag_rows{region}`,
//!   `region_lag_seconds{region}`, `region_latency_seconds{region}`,
//!   `region_errors_total{region}` (from `edge_replicas`);
//! - `search_latency_seconds` histogram, when a swarm runs in this process.
//!
//! No label or value ever holds a token or URL credentials.

use std::fmt::Error as FmtError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edgeswarm::ChannelStats;
use edgeswarm::StoreStats;
use edgeswarm::{Store, Swarm};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::error::{CliError, Result};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram as the encoder takes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistSnapshot {
    /// `(upper bound in the metric's unit, observations in this bucket)`, ascending;
    /// counts are per bucket, not cumulative (the encoder accumulates them).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations, in the metric's unit.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// The one adapter from the runtime's histogram snapshots to [`HistSnapshot`].
///
/// Today the runtime hands out power-of-two buckets (`buckets[i]` counts values
/// `<= 2^i` units) with an optional exact sum; `scale` converts units to the metric's
/// unit (1e-6 for µs → seconds). A missing sum is estimated from the buckets. When the
/// runtime moves to `edgeswarm_core::latency::LatencyHistogram`, only this function
/// changes.
pub fn histogram(buckets: &[u64], sum: Option<f64>, scale: f64) -> HistSnapshot {
    let mut out = Vec::with_capacity(buckets.len());
    let (mut count, mut est) = (0u64, 0.0);
    for (i, n) in buckets.iter().enumerate() {
        let upper = (1u64 << i.min(62)) as f64;
        est += *n as f64 * if i == 0 { upper } else { upper * 0.75 };
        count += n;
        out.push((upper * scale, *n));
    }
    HistSnapshot {
        buckets: out,
        sum: sum.unwrap_or(est) * scale,
        count,
    }
}

/// What the endpoint reads on every scrape.
#[derive(Clone)]
pub struct Source {
    /// The home store (always present).
    pub store: Store,
    /// The swarm running in this process, if any: agents, channels, search latency.
    pub swarm: Option<Swarm>,
}

impl Source {
    /// A source with only a store (`sql`, `status` with `--metrics-addr`).
    pub fn store(store: Store) -> Self {
        Source { store, swarm: None }
    }
    /// A source with a running swarm (`demo`).
    pub fn swarm(swarm: Swarm) -> Self {
        Source {
            store: swarm.store().clone(),
            swarm: Some(swarm),
        }
    }
}

/// Everything one scrape shows, taken at once.
#[derive(Debug, Default)]
struct Snapshot {
    /// Store counters and histograms.
    store: StoreStats,
    /// Every named channel's depth and capacity.
    channels: Vec<ChannelStats>,
    /// Agents, when a swarm runs in this process.
    agents: Option<Vec<AgentRow>>,
    /// Search latency, when a swarm runs in this process.
    search: Option<HistSnapshot>,
    /// `edge_replicas` rows, when readable.
    regions: Option<Vec<RegionRow>>,
}

/// One agent's figures.
#[derive(Debug)]
struct AgentRow {
    id: String,
    region: String,
    status: &'static str,
    restarts: u64,
    tasks_ok: u64,
    tasks_failed: u64,
    mailbox_depth: usize,
}

impl Snapshot {
    async fn take(src: &Source) -> Snapshot {
        let store = src.store.stats();
        let mut snap = Snapshot {
            channels: store.channels(),
            store,
            ..Default::default()
        };
        if let Some(sw) = &src.swarm {
            snap.channels = sw.channels();
            snap.agents = Some(
                sw.agents()
                    .iter()
                    .map(|a| AgentRow {
                        id: a.id.clone(),
                        region: a.region.clone(),
                        status: agent_status(a),
                        restarts: a.restarts,
                        tasks_ok: a.tasks_ok,
                        tasks_failed: a.tasks_failed,
                        mailbox_depth: a.mailbox_depth,
                    })
                    .collect(),
            );
            let (buckets, sum) = sw.search_latency_hist();
            snap.search = Some(histogram(&buckets, Some(sum as f64), 1e-6));
        }
        match regions(&src.store).await {
            Ok(rows) => snap.regions = Some(rows),
            Err(e) => tracing::debug!(error = %e, "edge_replicas unreadable for metrics"),
        }
        snap
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Result<(), FmtError> {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&v)
}

/// `name` without `_total`: the encoder appends it.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), FmtError> {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauges<L: EncodeLabelSet>(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(L, f64)]) -> Result<(), FmtError> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

fn counters<L: EncodeLabelSet>(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(L, u64)]) -> Result<(), FmtError> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(labels)?.encode_counter::<NoLabelSet, _, u64>(v, None)?;
    }
    Ok(())
}

fn hist(enc: &mut DescriptorEncoder, name: &str, help: &str, h: &HistSnapshot) -> Result<(), FmtError> {
    let mut buckets = h.buckets.clone();
    buckets.push((f64::INFINITY, 0));
    enc.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), FmtError> {
        let e = &mut enc;
        let st = &self.store;
        hist(
            e,
            "write_batch_size",
            "Writes per committed storage batch.",
            &histogram(&st.batch_size_hist, Some(st.ops as f64), 1.0),
        )?;
        hist(
            e,
            "commit_latency_seconds",
            "Time to commit one storage batch (BEGIN to COMMIT).",
            &histogram(&st.commit_us_hist, Some(st.commit_us_sum as f64), 1e-6),
        )?;
        hist(
            e,
            "ack_latency_seconds",
            "Time from queueing a write to its ack (queueing plus commit).",
            &histogram(&st.ack_us_hist, Some(st.ack_us_sum as f64), 1e-6),
        )?;
        gauge(
            e,
            "write_queue_depth",
            "Writes waiting in front of the storage writer.",
            st.queue_depth as f64,
        )?;
        gauge(e, "write_queue_capacity", "Capacity of the write queue.", st.queue_capacity as f64)?;
        gauge(
            e,
            "read_queue_depth",
            "Reads waiting for a read-pool connection.",
            st.read_queue_depth as f64,
        )?;
        counter(e, "write_batches", "Committed storage batches.", st.batches)?;
        counter(e, "write_ops", "Writes committed.", st.ops)?;
        counter(
            e,
            "write_failed_batches",
            "Batches that failed to commit (their writers were told).",
            st.failed_batches,
        )?;
        counter(
            e,
            "write_queue_rejected",
            "try_publish calls refused with Overloaded.",
            st.queue_rejected,
        )?;
        counter(
            e,
            "writer_restarts",
            "Storage writer restarts by its supervisor.",
            st.writer_restarts,
        )?;
        gauge(
            e,
            "write_last_batch_size",
            "Size of the last committed batch.",
            st.last_batch_size as f64,
        )?;

        let depth: Vec<_> = self
            .channels
            .iter()
            .map(|c| ([("channel", c.name.as_str())], c.depth as f64))
            .collect();
        gauges(e, "channel_depth", "Items queued (or in flight) in each named channel.", &depth)?;
        let cap: Vec<_> = self
            .channels
            .iter()
            .map(|c| ([("channel", c.name.as_str())], c.capacity as f64))
            .collect();
        gauges(e, "channel_capacity", "Bound of each named channel.", &cap)?;

        if let Some(h) = &self.search {
            hist(e, "search_latency_seconds", "Knowledge search latency.", h)?;
        }

        if let Some(agents) = &self.agents {
            let by_status: Vec<_> = ["running", "restarting", "stopped"]
                .iter()
                .map(|s| ([("status", *s)], agents.iter().filter(|a| a.status == *s).count() as f64))
                .collect();
            gauges(e, "agents", "Agents by status.", &by_status)?;
            let restarts: Vec<_> = agents
                .iter()
                .map(|a| ([("agent", a.id.as_str()), ("region", a.region.as_str())], a.restarts))
                .collect();
            counters(e, "agent_restarts", "Restarts of each agent by its supervisor.", &restarts)?;
            let tasks: Vec<_> = agents
                .iter()
                .flat_map(|a| {
                    [
                        ([("agent", a.id.as_str()), ("outcome", "ok")], a.tasks_ok),
                        ([("agent", a.id.as_str()), ("outcome", "failed")], a.tasks_failed),
                    ]
                })
                .collect();
            counters(e, "agent_tasks", "Tasks each agent finished, by outcome.", &tasks)?;
            let mailbox: Vec<_> = agents
                .iter()
                .map(|a| ([("agent", a.id.as_str())], a.mailbox_depth as f64))
                .collect();
            gauges(e, "agent_mailbox_depth", "Tasks waiting in each agent's mailbox.", &mailbox)?;
            counter(
                e,
                "agent_restarts_all",
                "Restarts of all agents.",
                agents.iter().map(|a| a.restarts).sum(),
            )?;
        }

        if let Some(rows) = &self.regions {
            let by = |f: &dyn Fn(&RegionRow) -> f64| -> Vec<([(&'static str, &str); 1], f64)> {
                rows.iter().map(|r| ([("region", r.region.as_str())], f(r))).collect()
            };
            gauges(
                e,
                "region_up",
                "1 when the region is healthy or degraded, 0 when down or unknown.",
                &by(&|r| matches!(r.status.as_str(), "healthy" | "degraded") as u8 as f64),
            )?;
            let status: Vec<_> = rows
                .iter()
                .flat_map(|r| {
                    ["healthy", "degraded", "down", "partitioned", "unknown"]
                        .map(|s| ([("region", r.region.as_str()), ("status", s)], (r.status == s) as u8 as f64))
                })
                .collect();
            gauges(e, "region_status", "1 for the region's current health state.", &status)?;
            gauges(
                e,
                "region_lag_rows",
                "Changes not yet acknowledged by the region.",
                &by(&|r| r.lag_rows as f64),
            )?;
            gauges(
                e,
                "region_lag_seconds",
                "Age of the oldest change the region has not acknowledged.",
                &by(&|r| r.lag_ms as f64 / 1000.0),
            )?;
            gauges(
                e,
                "region_latency_seconds",
                "Smoothed round-trip time to the region.",
                &by(&|r| r.latency_ms.unwrap_or(0.0) / 1000.0),
            )?;
            let errors: Vec<_> = rows
                .iter()
                .map(|r| ([("region", r.region.as_str())], r.errors.max(0) as u64))
                .collect();
            counters(e, "region_errors", "Errors talking to the region.", &errors)?;
        }
        Ok(())
    }
}

/// Encodes one snapshot as OpenMetrics text (ends with `# EOF`).
fn encode(snap: Snapshot) -> String {
    let mut registry = Registry::with_prefix("edgeswarm");
    registry.register_collector(Box::new(snap));
    let mut out = String::with_capacity(8192);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

/// Renders every metric the source has.
pub async fn render(src: &Source) -> String {
    encode(Snapshot::take(src).await)
}

fn agent_status(a: &edgeswarm::AgentInfo) -> &'static str {
    match a.status {
        edgeswarm::AgentStatus::Running => "running",
        edgeswarm::AgentStatus::Restarting => "restarting",
        edgeswarm::AgentStatus::Stopped => "stopped",
    }
}

/// One `edge_replicas` row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegionRow {
    pub region: String,
    pub status: String,
    pub latency_ms: Option<f64>,
    pub lag_rows: i64,
    pub lag_ms: i64,
    pub last_sync_at: Option<i64>,
    pub errors: i64,
}

/// Reads `edge_replicas` (URLs are left out: they may carry credentials).
pub async fn regions(store: &Store) -> Result<Vec<RegionRow>> {
    let q = store
        .read(|r| {
            r.query(
                "SELECT region, status, avg_latency_ms, lag_rows, lag_ms, last_sync_at, errors FROM edge_replicas ORDER BY region",
                vec![],
            )
        })
        .await?;
    Ok(q.rows
        .iter()
        .map(|r| RegionRow {
            region: r[0].as_str().unwrap_or_default().to_string(),
            status: r[1].as_str().unwrap_or("unknown").to_string(),
            latency_ms: r[2].as_f64(),
            lag_rows: r[3].as_i64().unwrap_or(0),
            lag_ms: r[4].as_i64().unwrap_or(0),
            last_sync_at: r[5].as_i64(),
            errors: r[6].as_i64().unwrap_or(0),
        })
        .collect())
}

/// Binds the endpoint's socket (so a port in use fails before any work starts).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| CliError::Bind {
        addr: addr.to_string(),
        reason: if e.kind() == std::io::ErrorKind::AddrInUse {
            "the address is already in use (another process listens there); pick a free port or stop the other process".into()
        } else {
            e.to_string()
        },
    })
}

/// Serves `GET /metrics` on a bound listener in the background.
pub fn serve_on(listener: tokio::net::TcpListener, src: Source) -> tokio::task::JoinHandle<()> {
    let src = Arc::new(src);
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get({
                let src = src.clone();
                move || {
                    let src = src.clone();
                    async move { ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], render(&src).await) }
                }
            }),
        )
        .route("/", axum::routing::get(|| async { "edgeswarm: metrics at /metrics\n" }));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    })
}

/// Binds and serves in one step.
pub async fn serve(addr: SocketAddr, src: Source) -> Result<tokio::task::JoinHandle<()>> {
    Ok(serve_on(bind(addr).await?, src))
}

/// kv namespace of status heartbeats.
pub const STATUS_NS: &str = "edgeswarm/status";

/// Publishes this process's queue depths and agents every `every` into kv
/// `edgeswarm/status` key `node/<origin>` (TTL 3 × every), for `edgeswarm status`.
pub fn spawn_heartbeat(swarm: Swarm, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(every);
        loop {
            t.tick().await;
            let st = swarm.store().stats();
            let agents = swarm.agents();
            let v = serde_json::json!({
                "pid": std::process::id(),
                "queue_depth": st.queue_depth,
                "queue_capacity": st.queue_capacity,
                "read_queue_depth": st.read_queue_depth,
                "batches": st.batches,
                "ops": st.ops,
                "writer_restarts": st.writer_restarts,
                "agents_running": agents.iter().filter(|a| agent_status(a) == "running").count(),
                "agents_restarting": agents.iter().filter(|a| agent_status(a) == "restarting").count(),
                "agents_stopped": agents.iter().filter(|a| agent_status(a) == "stopped").count(),
                "agent_restarts": agents.iter().map(|a| a.restarts).sum::<u64>(),
                "tasks_ok": agents.iter().map(|a| a.tasks_ok).sum::<u64>(),
                "channels": swarm.channels(),
                "ts": edgeswarm::now_millis(),
                // Per region: redacted url, TLS state, server version, last error (with its fix).
                "regions": swarm.sync_status().map(|s| s.regions.iter().map(|r| serde_json::json!({
                    "region": r.region, "url": r.url, "tls": r.tls, "server_version": r.server_version,
                    "health": r.health, "last_error": r.last_error,
                })).collect::<Vec<_>>()).unwrap_or_default(),
            });
            let key = format!("node/{}", swarm.store().origin());
            if let Err(e) = swarm.store().kv_set(STATUS_NS, &key, v, Some(every * 3)).await {
                tracing::debug!(error = %e, "status heartbeat stopped");
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let s = encode(Snapshot {
            search: Some(histogram(&[1, 0, 2], Some(9.0), 1.0)),
            ..Default::default()
        });
        let x = "edgeswarm_search_latency_seconds";
        assert!(s.contains(&format!("{x}_bucket{{le=\"4.0\"}} 3")), "{s}");
        assert!(s.contains(&format!("{x}_bucket{{le=\"+Inf\"}} 3")), "{s}");
        assert!(s.contains(&format!("{x}_sum 9")), "{s}");
        assert!(s.contains(&format!("{x}_count 3")), "{s}");
    }

    #[test]
    fn counters_gauges_and_channels_keep_their_names() {
        let mut snap = Snapshot::default();
        snap.store.ops = 7;
        snap.store.queue_depth = 2;
        snap.channels = vec![ChannelStats::new("search_mailbox", 3, 1024)];
        snap.regions = Some(vec![RegionRow {
            region: "eu \"x\"".into(),
            status: "healthy".into(),
            latency_ms: Some(45.0),
            lag_rows: 5,
            lag_ms: 250,
            last_sync_at: None,
            errors: 1,
        }]);
        let s = encode(snap);
        for m in [
            "edgeswarm_write_ops_total 7\n",
            "edgeswarm_write_queue_depth 2",
            "edgeswarm_channel_depth{channel=\"search_mailbox\"} 3",
            "edgeswarm_channel_capacity{channel=\"search_mailbox\"} 1024",
            "edgeswarm_region_lag_rows{region=\"eu \\\"x\\\"\"} 5",
            "edgeswarm_region_lag_seconds{region=\"eu \\\"x\\\"\"} 0.25",
            "edgeswarm_region_errors_total{region=\"eu \\\"x\\\"\"} 1",
            "# EOF",
        ] {
            assert!(s.contains(m), "missing {m} in:\n{s}");
        }
    }
}
