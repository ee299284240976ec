//! Prometheus text exposition (format 0.0.4), written by hand, served by axum at
//! `GET /metrics` on `--metrics-addr`. Also the status heartbeat a running swarm publishes
//! so `edgeswarm status` in another process can show its queue depths and agents.
//!
//! Metrics (every name is prefixed `edgeswarm_`):
//! - `write_batch_size` histogram (rows per committed batch), `commit_latency_seconds`
//!   histogram (per batch commit), `write_queue_depth` / `write_queue_capacity` /
//!   `read_queue_depth` gauges, `write_batches_total`, `write_ops_total`,
//!   `write_failed_batches_total`, `write_queue_rejected_total`, `writer_restarts_total`;
//! - `agents{status}`, `agent_restarts_total{agent}`, `agent_tasks_total{agent,outcome}`,
//!   `agent_mailbox_depth{agent}` (when a swarm runs in this process);
//! - `region_up{region}`, `region_status{region,status}`, `region_lag_rows{region}`,
//!   `region_lag_seconds{region}`, `region_latency_seconds{region}`,
//!   `region_errors_total{region}` (from `edge_replicas`);
//! - `search_latency_seconds` histogram, when a search source is attached.
//!
//! No label or value ever holds a token or URL credentials.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edgeswarm::{Store, Swarm};

use crate::error::{CliError, Result};

/// A histogram snapshot in power-of-two buckets (index i counts values <= 2^i units).
#[derive(Debug, Clone, Default)]
pub struct Pow2Hist {
    pub buckets: Vec<u64>,
    /// Sum of observed values in units, if known exactly.
    pub sum: Option<f64>,
}

/// Extra histogram providers (e.g. search latency) another crate can attach.
pub type HistFn = Arc<dyn Fn() -> Pow2Hist + Send + Sync>;

/// What the endpoint reads on every scrape.
#[derive(Clone)]
pub struct Source {
    pub store: Store,
    pub swarm: Option<Swarm>,
    /// Search latency in µs, power-of-two buckets.
    pub search_us: Option<HistFn>,
}

impl Source {
    pub fn store(store: Store) -> Self {
        Source {
            store,
            swarm: None,
            search_us: None,
        }
    }
    pub fn swarm(swarm: Swarm) -> Self {
        let s = swarm.clone();
        let search_us: HistFn = Arc::new(move || {
            let (buckets, sum) = s.search_latency_hist();
            Pow2Hist {
                buckets,
                sum: Some(sum as f64),
            }
        });
        Source {
            store: swarm.store().clone(),
            swarm: Some(swarm),
            search_us: Some(search_us),
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP edgeswarm_{name} {help}\n# TYPE edgeswarm_{name} {kind}");
}

fn scalar(out: &mut String, name: &str, kind: &str, help: &str, v: f64) {
    head(out, name, kind, help);
    let _ = writeln!(out, "edgeswarm_{name} {v}");
}

/// Writes a power-of-two histogram; `scale` converts bucket units to the metric's unit.
fn hist(out: &mut String, name: &str, help: &str, h: &Pow2Hist, scale: f64) {
    head(out, name, "histogram", help);
    let mut cum = 0u64;
    let mut est = 0.0;
    for (i, n) in h.buckets.iter().enumerate() {
        cum += n;
        let upper = (1u64 << i.min(62)) as f64;
        est += *n as f64 * if i == 0 { upper } else { upper * 0.75 };
        let _ = writeln!(out, "edgeswarm_{name}_bucket{{le=\"{}\"}} {cum}", upper * scale);
    }
    let _ = writeln!(out, "edgeswarm_{name}_bucket{{le=\"+Inf\"}} {cum}");
    let _ = writeln!(out, "edgeswarm_{name}_sum {}", h.sum.unwrap_or(est) * scale);
    let _ = writeln!(out, "edgeswarm_{name}_count {cum}");
}

/// Renders every metric the source has.
pub async fn render(src: &Source) -> String {
    let mut out = String::with_capacity(8192);
    let st = src.store.stats();
    hist(
        &mut out,
        "write_batch_size",
        "Writes per committed storage batch.",
        &Pow2Hist {
            buckets: st.batch_size_hist.clone(),
            sum: Some(st.ops as f64),
        },
        1.0,
    );
    hist(
        &mut out,
        "commit_latency_seconds",
        "Time to commit one storage batch (BEGIN to COMMIT).",
        &Pow2Hist {
            buckets: st.commit_us_hist.clone(),
            sum: Some(st.commit_us_sum as f64),
        },
        1e-6,
    );
    hist(
        &mut out,
        "ack_latency_seconds",
        "Time from queueing a write to its ack (queueing plus commit).",
        &Pow2Hist {
            buckets: st.ack_us_hist.clone(),
            sum: Some(st.ack_us_sum as f64),
        },
        1e-6,
    );
    scalar(
        &mut out,
        "write_queue_depth",
        "gauge",
        "Writes waiting in front of the storage writer.",
        st.queue_depth as f64,
    );
    scalar(
        &mut out,
        "write_queue_capacity",
        "gauge",
        "Capacity of the write queue.",
        st.queue_capacity as f64,
    );
    scalar(
        &mut out,
        "read_queue_depth",
        "gauge",
        "Reads waiting for a read-pool connection.",
        st.read_queue_depth as f64,
    );
    scalar(
        &mut out,
        "write_batches_total",
        "counter",
        "Committed storage batches.",
        st.batches as f64,
    );
    scalar(&mut out, "write_ops_total", "counter", "Writes committed.", st.ops as f64);
    scalar(
        &mut out,
        "write_failed_batches_total",
        "counter",
        "Batches that failed to commit (their writers were told).",
        st.failed_batches as f64,
    );
    scalar(
        &mut out,
        "write_queue_rejected_total",
        "counter",
        "try_publish calls refused with Overloaded.",
        st.queue_rejected as f64,
    );
    scalar(
        &mut out,
        "writer_restarts_total",
        "counter",
        "Storage writer restarts by its supervisor.",
        st.writer_restarts as f64,
    );
    scalar(
        &mut out,
        "write_last_batch_size",
        "gauge",
        "Size of the last committed batch.",
        st.last_batch_size as f64,
    );

    if let Some(f) = &src.search_us {
        hist(&mut out, "search_latency_seconds", "Knowledge search latency.", &f(), 1e-6);
    }

    if let Some(sw) = &src.swarm {
        let agents = sw.agents();
        head(&mut out, "agents", "gauge", "Agents by status.");
        for status in ["running", "restarting", "stopped"] {
            let n = agents.iter().filter(|a| agent_status(a) == status).count();
            let _ = writeln!(out, "edgeswarm_agents{{status=\"{status}\"}} {n}");
        }
        head(
            &mut out,
            "agent_restarts_total",
            "counter",
            "Restarts of each agent by its supervisor.",
        );
        for a in &agents {
            let _ = writeln!(
                out,
                "edgeswarm_agent_restarts_total{{agent=\"{}\",region=\"{}\"}} {}",
                esc(&a.id),
                esc(&a.region),
                a.restarts
            );
        }
        head(&mut out, "agent_tasks_total", "counter", "Tasks each agent finished, by outcome.");
        for a in &agents {
            let _ = writeln!(
                out,
                "edgeswarm_agent_tasks_total{{agent=\"{}\",outcome=\"ok\"}} {}",
                esc(&a.id),
                a.tasks_ok
            );
            let _ = writeln!(
                out,
                "edgeswarm_agent_tasks_total{{agent=\"{}\",outcome=\"failed\"}} {}",
                esc(&a.id),
                a.tasks_failed
            );
        }
        head(&mut out, "agent_mailbox_depth", "gauge", "Tasks waiting in each agent's mailbox.");
        for a in &agents {
            let _ = writeln!(out, "edgeswarm_agent_mailbox_depth{{agent=\"{}\"}} {}", esc(&a.id), a.mailbox_depth);
        }
        let restarts: u64 = agents.iter().map(|a| a.restarts).sum();
        scalar(
            &mut out,
            "agent_restarts_all_total",
            "counter",
            "Restarts of all agents.",
            restarts as f64,
        );
    }

    match regions(&src.store).await {
        Ok(rows) => {
            head(
                &mut out,
                "region_up",
                "gauge",
                "1 when the region is healthy or degraded, 0 when down or unknown.",
            );
            for r in &rows {
                let up = matches!(r.status.as_str(), "healthy" | "degraded") as u8;
                let _ = writeln!(out, "edgeswarm_region_up{{region=\"{}\"}} {up}", esc(&r.region));
            }
            head(&mut out, "region_status", "gauge", "1 for the region's current health state.");
            for r in &rows {
                for s in ["healthy", "degraded", "down", "partitioned", "unknown"] {
                    let _ = writeln!(
                        out,
                        "edgeswarm_region_status{{region=\"{}\",status=\"{s}\"}} {}",
                        esc(&r.region),
                        (r.status == s) as u8
                    );
                }
            }
            head(&mut out, "region_lag_rows", "gauge", "Changes not yet acknowledged by the region.");
            for r in &rows {
                let _ = writeln!(out, "edgeswarm_region_lag_rows{{region=\"{}\"}} {}", esc(&r.region), r.lag_rows);
            }
            head(
                &mut out,
                "region_lag_seconds",
                "gauge",
                "Age of the oldest change the region has not acknowledged.",
            );
            for r in &rows {
                let _ = writeln!(
                    out,
                    "edgeswarm_region_lag_seconds{{region=\"{}\"}} {}",
                    esc(&r.region),
                    r.lag_ms as f64 / 1000.0
                );
            }
            head(
                &mut out,
                "region_latency_seconds",
                "gauge",
                "Smoothed round-trip time to the region.",
            );
            for r in &rows {
                let _ = writeln!(
                    out,
                    "edgeswarm_region_latency_seconds{{region=\"{}\"}} {}",
                    esc(&r.region),
                    r.latency_ms.unwrap_or(0.0) / 1000.0
                );
            }
            head(&mut out, "region_errors_total", "counter", "Errors talking to the region.");
            for r in &rows {
                let _ = writeln!(out, "edgeswarm_region_errors_total{{region=\"{}\"}} {}", esc(&r.region), r.errors);
            }
        }
        Err(e) => tracing::debug!(error = %e, "edge_replicas unreadable for metrics"),
    }
    out
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
                    async move {
                        (
                            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                            render(&src).await,
                        )
                    }
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
                "ts": edgeswarm::core::record::now_millis(),
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
        let mut s = String::new();
        hist(
            &mut s,
            "x",
            "h",
            &Pow2Hist {
                buckets: vec![1, 0, 2],
                sum: Some(9.0),
            },
            1.0,
        );
        assert!(s.contains("edgeswarm_x_bucket{le=\"4\"} 3"), "{s}");
        assert!(s.contains("edgeswarm_x_bucket{le=\"+Inf\"} 3"));
        assert!(s.contains("edgeswarm_x_sum 9"));
        assert!(s.contains("edgeswarm_x_count 3"));
    }
}
