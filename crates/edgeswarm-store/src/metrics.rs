//! Every read of the `agent_metrics` table (writes go through the writer as
//! `Record::Metric`): the rows an aggregate is computed from, recent activity, the count.

use crate::error::Result;
use crate::store::Store;
use crate::value::SqlValue;

/// One task measurement as the aggregates need it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Groups the by-agent aggregate.
    pub agent_id: String,
    /// Groups the by-task-type aggregate.
    pub task_type: String,
    /// Groups the by-region aggregate; empty when the metric has no region.
    pub region: String,
    /// The value the percentiles are computed over.
    pub duration_ms: f64,
    /// Summed per group.
    pub tokens_used: i64,
}

/// Every measurement with `ts >= since_ms` (`i64::MIN` for all).
pub async fn rows_since(store: &Store, since_ms: i64) -> Result<Vec<MetricRow>> {
    let q = store
        .read(move |r| {
            r.query(
                "SELECT agent_id, task_type, COALESCE(region, ''), duration_ms, tokens_used FROM agent_metrics WHERE ts >= ?1",
                vec![SqlValue::Integer(since_ms)],
            )
        })
        .await?;
    Ok(q.rows
        .iter()
        .map(|r| MetricRow {
            agent_id: r[0].as_str().unwrap_or_default().into(),
            task_type: r[1].as_str().unwrap_or_default().into(),
            region: r[2].as_str().unwrap_or_default().into(),
            duration_ms: r[3].as_f64().unwrap_or(0.0),
            tokens_used: r[4].as_i64().unwrap_or(0),
        })
        .collect())
}

/// Distinct agents and tasks recorded with `ts >= since_ms`.
pub async fn activity_since(store: &Store, since_ms: i64) -> Result<(i64, i64)> {
    let q = store
        .read(move |r| {
            r.query(
                "SELECT count(DISTINCT agent_id), count(*) FROM agent_metrics WHERE ts >= ?1",
                vec![since_ms.into()],
            )
        })
        .await?;
    let r = q.rows.first();
    Ok((
        r.and_then(|r| r[0].as_i64()).unwrap_or(0),
        r.and_then(|r| r[1].as_i64()).unwrap_or(0),
    ))
}

/// How many measurements are stored.
pub async fn count(store: &Store) -> Result<i64> {
    let q = store.read(|r| r.query("SELECT count(*) FROM agent_metrics", vec![])).await?;
    Ok(q.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}
