//! `edgeswarm status`: the home file, table sizes, regions and lag, running nodes (their
//! queue depths and agents, from the heartbeat in kv `edgeswarm/status`), recent agents.

use std::time::Duration;

use edgeswarm::Swarm;
use serde::Serialize;
use serde_json::Value;

use crate::cli::StatusArgs;
use crate::config;
use crate::error::Result;
use crate::metrics::{self, RegionRow};
use crate::{open, table};

#[derive(Debug, Serialize)]
pub struct Status {
    pub db: String,
    pub size_bytes: u64,
    pub schema_version: i64,
    pub journal_mode: String,
    pub durability: String,
    pub tables: Vec<(String, i64)>,
    pub regions: Vec<RegionRow>,
    /// Per region, from the running swarms' heartbeats: redacted url, TLS state
    /// (none / system_roots / ca_file), server version, last error with its fix.
    pub region_details: Vec<Value>,
    /// Live heartbeats of running swarms using this file.
    pub nodes: Vec<Value>,
    /// Agents with a task recorded in the last 60 s.
    pub active_agents_60s: i64,
    pub tasks_60s: i64,
    /// This process's own store queue (0 unless it is writing).
    pub local_queue_depth: usize,
}

/// A count for the table listing: -1 when it could not be read (a damaged or foreign file).
fn or_unknown(r: edgeswarm::Result<i64>) -> i64 {
    r.unwrap_or(-1)
}

/// The regions recorded in the home file, by name (URLs are left out: they may carry
/// credentials).
pub async fn region_rows(swarm: &Swarm) -> Result<Vec<RegionRow>> {
    let mut rows: Vec<RegionRow> = swarm
        .recorded_regions()
        .await?
        .into_iter()
        .map(|r| RegionRow {
            region: r.region,
            status: r.status,
            latency_ms: r.avg_latency_ms,
            lag_rows: r.lag_rows,
            lag_ms: r.lag_ms,
            last_sync_at: r.last_sync_at,
            errors: r.errors,
        })
        .collect();
    rows.sort_by(|a, b| a.region.cmp(&b.region));
    Ok(rows)
}

pub async fn collect(swarm: &Swarm) -> Result<Status> {
    let cfg = swarm.store_config().clone();
    let now = edgeswarm::now_millis();
    let info = swarm.database_info().await?;
    let tables = vec![
        ("knowledge".to_string(), or_unknown(swarm.knowledge_count().await)),
        ("conversations".to_string(), or_unknown(swarm.conversation_count().await)),
        ("agent_metrics".to_string(), or_unknown(swarm.metric_count().await)),
        ("kv (live)".to_string(), or_unknown(swarm.kv_count().await)),
        ("_changes".to_string(), or_unknown(swarm.row_count("_changes").await)),
        ("conflicts".to_string(), or_unknown(swarm.row_count("conflicts").await)),
    ];
    let (active_agents_60s, tasks_60s) = swarm.metric_activity(now - 60_000).await?;
    let regions = region_rows(swarm).await.unwrap_or_default();
    let nodes: Vec<Value> = swarm
        .kv_list(metrics::STATUS_NS, "node/", 100)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.value)
        .collect();
    let region_details: Vec<Value> = nodes
        .iter()
        .filter_map(|n: &Value| n.get("regions").and_then(Value::as_array))
        .flatten()
        .cloned()
        .collect();
    Ok(Status {
        region_details,
        db: cfg.path.display().to_string(),
        size_bytes: std::fs::metadata(&cfg.path).map(|m| m.len()).unwrap_or(0),
        schema_version: info.schema_version,
        journal_mode: info.journal_mode,
        durability: cfg.durability.as_str().into(),
        tables,
        regions,
        nodes,
        active_agents_60s,
        tasks_60s,
        local_queue_depth: swarm.store_stats().queue_depth,
    })
}

fn ago(ts: Option<i64>) -> String {
    match ts {
        None => "never".into(),
        Some(t) => {
            let d = (edgeswarm::now_millis() - t).max(0);
            if d < 1000 {
                format!("{d} ms ago")
            } else {
                format!("{:.1} s ago", d as f64 / 1000.0)
            }
        }
    }
}

pub fn render(s: &Status) -> String {
    let mut out = format!(
        "home      {}  ({:.1} MiB, schema v{}, journal {}, durability {})\n\n",
        s.db,
        s.size_bytes as f64 / (1 << 20) as f64,
        s.schema_version,
        s.journal_mode,
        s.durability
    );
    out.push_str(&table::render(
        &["table".into(), "rows".into()],
        &s.tables.iter().map(|(t, n)| vec![t.clone(), n.to_string()]).collect::<Vec<_>>(),
        40,
    ));
    out.push('\n');
    if s.regions.is_empty() {
        out.push_str("regions   none recorded in edge_replicas (no region has synced with this file)\n");
    } else {
        let rows: Vec<Vec<String>> = s
            .regions
            .iter()
            .map(|r| {
                vec![
                    r.region.clone(),
                    r.status.clone(),
                    r.latency_ms.map(|l| format!("{l:.1}")).unwrap_or_else(|| "-".into()),
                    r.lag_rows.to_string(),
                    format!("{:.2}", r.lag_ms as f64 / 1000.0),
                    ago(r.last_sync_at),
                    r.errors.to_string(),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &[
                "region".into(),
                "status".into(),
                "rtt ms".into(),
                "lag rows".into(),
                "lag s".into(),
                "last sync".into(),
                "errors".into(),
            ],
            &rows,
            40,
        ));
    }
    if !s.region_details.is_empty() {
        let g = |v: &Value, k: &str| match v.get(k) {
            Some(Value::String(x)) => x.clone(),
            Some(Value::Null) | None => "-".into(),
            Some(x) => x.to_string(),
        };
        let rows: Vec<Vec<String>> = s
            .region_details
            .iter()
            .map(|d| vec![g(d, "region"), g(d, "url"), g(d, "tls"), g(d, "server_version"), g(d, "last_error")])
            .collect();
        out.push('\n');
        out.push_str(&table::render(
            &[
                "region".into(),
                "url".into(),
                "tls".into(),
                "server".into(),
                "last error (and fix)".into(),
            ],
            &rows,
            200,
        ));
    }
    out.push('\n');
    if s.nodes.is_empty() {
        out.push_str("nodes     no running swarm is publishing status for this file (start one with `edgeswarm demo`)\n");
    } else {
        let g = |v: &Value, k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        let rows: Vec<Vec<String>> = s
            .nodes
            .iter()
            .map(|n| {
                vec![
                    g(n, "pid"),
                    format!("{}/{}", g(n, "queue_depth"), g(n, "queue_capacity")),
                    g(n, "read_queue_depth"),
                    g(n, "agents_running"),
                    g(n, "agents_restarting"),
                    g(n, "agents_stopped"),
                    g(n, "agent_restarts"),
                    g(n, "writer_restarts"),
                    ago(n.get("ts").and_then(Value::as_i64)),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &[
                "pid".into(),
                "write queue".into(),
                "read queue".into(),
                "agents up".into(),
                "restarting".into(),
                "stopped".into(),
                "agent restarts".into(),
                "writer restarts".into(),
                "updated".into(),
            ],
            &rows,
            40,
        ));
    }
    out.push_str(&format!(
        "\nagents    {} active in the last 60 s, {} tasks recorded\n",
        s.active_agents_60s, s.tasks_60s
    ));
    out
}

pub async fn run(a: StatusArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    let swarm = open::swarm(&settings, true).await?;
    let r: Result<()> = async {
        let _m = match settings.metrics_addr {
            Some(addr) => Some(metrics::serve(addr, metrics::Source::store(swarm.store().clone())).await?),
            None => None,
        };
        let mut n = 0u64;
        loop {
            let s = collect(&swarm).await?;
            if a.json {
                println!("{}", serde_json::to_string(&s).unwrap_or_default());
            } else if a.watch {
                // Clear the screen and home the cursor: refresh in place.
                print!(
                    "\x1b[H\x1b[2J{}\n(refreshing every {} ms; Ctrl-C to stop)\n",
                    render(&s),
                    a.interval_ms
                );
            } else {
                print!("{}", render(&s));
            }
            n += 1;
            if !a.watch || a.count.is_some_and(|c| n >= c) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(a.interval_ms.max(50))) => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        Ok(())
    }
    .await;
    let closed = swarm.shutdown().await;
    r?;
    closed?;
    Ok(())
}
