//! Benchmarks of the store's real write and read paths, each printed beside a
//! plain-libSQL baseline measured in the same run on the same machine. The CLI prints
//! these (`edgeswarm bench ingest|read --json`); no test asserts a speed.

use crate::error::Result;
use crate::util::{round3, scratch_dir};
use edgeswarm_core::{Durability, LatencyHistogram, Metric, StoreConfig};
use edgeswarm_store::conn::{self, CachedConn};
use edgeswarm_store::{SqlValue, Store, StoreError};
use serde_json::{json, Value};
use std::time::Instant;

/// Options for `ingest`.
#[derive(Debug, Clone)]
pub struct IngestOpts {
    /// Concurrent publisher tasks. Default 64 (the figure).
    pub publishers: usize,
    /// Rows in total. Default 256,000.
    pub rows: usize,
    /// Acks each publisher may have outstanding (pipelining). Default 256. With 1 every
    /// publisher waits for each commit and batches can hold at most `publishers` rows.
    pub window: usize,
    /// Durability of both the store and the baseline. Default `Full`.
    pub durability: Durability,
    /// Folder for the bench files (a temp dir when `None`).
    pub dir: Option<std::path::PathBuf>,
}

impl Default for IngestOpts {
    fn default() -> Self {
        IngestOpts {
            publishers: 64,
            rows: 256_000,
            window: 256,
            durability: Durability::Full,
            dir: None,
        }
    }
}

fn metric(i: usize) -> Metric {
    let mut m = Metric::new(
        format!("agent-{}", i % 64),
        ["code-analysis", "review", "test", "refactor"][i % 4],
        (i % 2000) as f64 + 0.5,
        (i % 5000) as i64,
    );
    m.region = Some(["us-west-2", "eu-central-1", "ap-southeast-1", "sa-east-1"][i % 4].to_string());
    m
}

/// Plain libSQL: one connection, one prepared insert, 1000-row transactions, the same
/// table and durability. Runs on a plain thread.
pub fn raw_ingest(path: &std::path::Path, rows: usize, durability: Durability) -> Result<f64> {
    // The same schema as the store (migrations), so both sides insert into an identical table.
    let cfg = StoreConfig {
        path: path.to_path_buf(),
        durability,
        ..Default::default()
    };
    edgeswarm_store::schema::bootstrap(&cfg)?;
    let (db, c) = conn::open_writer(path, durability)?;
    let mut cc = CachedConn::new(db, c);
    let data: Vec<Metric> = (0..rows).map(metric).collect();
    let sql = "INSERT INTO agent_metrics (id, agent_id, task_type, duration_ms, tokens_used, region, ts, extra, hlc, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    let started = Instant::now();
    for chunk in data.chunks(1000) {
        cc.execute("BEGIN", vec![])?;
        for m in chunk {
            cc.execute(
                sql,
                vec![
                    libsql::Value::Text(m.id.clone()),
                    libsql::Value::Text(m.agent_id.clone()),
                    libsql::Value::Text(m.task_type.clone()),
                    libsql::Value::Real(m.duration_ms),
                    libsql::Value::Integer(m.tokens_used),
                    m.region.clone().map(libsql::Value::Text).unwrap_or(libsql::Value::Null),
                    libsql::Value::Integer(m.ts),
                    libsql::Value::Null,
                    libsql::Value::Integer(1),
                    libsql::Value::Text("raw".into()),
                ],
            )?;
        }
        cc.execute("COMMIT", vec![])?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// `publishers` tasks publish `rows` metrics through the StorageActor; reports
/// throughput, ack latency and the ratio to `raw_ingest` on the same machine.
pub async fn ingest(opts: IngestOpts) -> Result<Value> {
    let dir = scratch_dir(opts.dir.as_deref(), "bench")?;
    let raw_path = dir.join("raw.db");
    let (rp, rows, d) = (raw_path.clone(), opts.rows, opts.durability);
    let raw = tokio::task::spawn_blocking(move || raw_ingest(&rp, rows, d)).await??;

    let cfg = StoreConfig {
        path: dir.join("store.db"),
        durability: opts.durability,
        ..Default::default()
    };
    let store = Store::open(cfg).await?;
    let per = opts.rows / opts.publishers.max(1);
    // Records are built before the clock starts, as for the baseline: the benchmark
    // measures the storage path, not record construction.
    let data: Vec<Vec<Metric>> = (0..opts.publishers)
        .map(|p| (0..per).map(|i| metric(p * per + i)).collect())
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for records in data {
        let s = store.clone();
        let window = opts.window.max(1);
        tasks.push(tokio::spawn(async move {
            let mut lat = LatencyHistogram::new();
            let mut inflight = std::collections::VecDeque::with_capacity(window);
            let mut failed = 0usize;
            for m in records {
                let t0 = Instant::now();
                let ack = s.enqueue_record(m).await;
                match ack {
                    Ok(a) => inflight.push_back((t0, a)),
                    Err(_) => failed += 1,
                }
                if inflight.len() >= window {
                    if let Some((t0, a)) = inflight.pop_front() {
                        match a.wait().await {
                            Ok(_) => lat.record(t0.elapsed()),
                            Err(_) => failed += 1,
                        }
                    }
                }
            }
            for (t0, a) in inflight {
                match a.wait().await {
                    Ok(_) => lat.record(t0.elapsed()),
                    Err(_) => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = LatencyHistogram::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await?;
        lat.merge(&l);
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acked = lat.count() as usize;
    let stats = store.stats();
    let stored = store.read_sql("SELECT count(*) FROM agent_metrics", vec![]).await?.rows[0][0]
        .as_i64()
        .unwrap_or(0);
    store.shutdown().await?;
    let rps = acked as f64 / elapsed;
    let out = json!({
        "bench": "ingest",
        "publishers": opts.publishers,
        "window": opts.window,
        "rows": per * opts.publishers,
        "acked": acked,
        "failed": failed,
        "stored": stored,
        "rows_per_sec": rps.round(),
        "p50_ack_ms": round3(lat.percentile_ms(0.50)),
        "p99_ack_ms": round3(lat.percentile_ms(0.99)),
        "durability": opts.durability.as_str(),
        "batches": stats.batches,
        "mean_batch_rows": if stats.batches > 0 { (stats.ops as f64 / stats.batches as f64).round() } else { 0.0 },
        "raw_rows_per_sec": raw.round(),
        "ratio": round3(rps / raw),
    });
    if opts.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(out)
}

/// Options for `read`.
#[derive(Debug, Clone)]
pub struct ReadOpts {
    /// Rows loaded before measuring. Default 100,000.
    pub rows: usize,
    /// Queries per reader. Default 20,000.
    pub queries: usize,
    /// Concurrent reader tasks. Default 2 (the machine's cores).
    pub readers: usize,
    /// Folder for the bench file (a temp dir when `None`).
    pub dir: Option<std::path::PathBuf>,
}

impl Default for ReadOpts {
    fn default() -> Self {
        ReadOpts {
            rows: 100_000,
            queries: 20_000,
            readers: 2,
            dir: None,
        }
    }
}

/// Indexed point reads (`get_conversations`-style, by session) through the read pool
/// while nothing else runs, beside the same query on one plain libSQL connection.
pub async fn read(opts: ReadOpts) -> Result<Value> {
    let dir = scratch_dir(opts.dir.as_deref(), "bench")?;
    let store = Store::open(StoreConfig {
        path: dir.join("read.db"),
        durability: Durability::Normal,
        ..Default::default()
    })
    .await?;
    let mut acks = Vec::with_capacity(opts.rows);
    for i in 0..opts.rows {
        let m = edgeswarm_core::Message::new(
            format!("session-{}", i % 5000),
            if i % 2 == 0 { "user" } else { "assistant" },
            format!("message {i} about edge latency"),
        );
        acks.push(store.enqueue_record(m).await?);
    }
    for a in acks {
        a.wait().await?;
    }
    let sql = "SELECT id, role, content FROM conversations WHERE session_id = ?1 ORDER BY created_at, id LIMIT 20";
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..opts.readers {
        let s = store.clone();
        let n = opts.queries;
        tasks.push(tokio::spawn(async move {
            let mut lat = LatencyHistogram::new();
            for i in 0..n {
                let t0 = Instant::now();
                let sid = format!("session-{}", (i * 7 + r * 13) % 5000);
                s.read(move |rd| rd.query(sql, vec![SqlValue::Text(sid)])).await?;
                lat.record(t0.elapsed());
            }
            Ok::<_, StoreError>(lat)
        }));
    }
    let mut lat = LatencyHistogram::new();
    for t in tasks {
        lat.merge(&t.await??);
    }
    let qps = lat.count() as f64 / started.elapsed().as_secs_f64();
    store.shutdown().await?;
    let path = dir.join("read.db");
    let n = opts.queries * opts.readers;
    let raw = tokio::task::spawn_blocking(move || -> Result<f64> {
        let (db, c) = conn::open_reader(&path)?;
        let mut cc = CachedConn::new(db, c);
        let t0 = Instant::now();
        for i in 0..n {
            cc.query(sql, vec![libsql::Value::Text(format!("session-{}", (i * 7) % 5000))])?;
        }
        Ok(n as f64 / t0.elapsed().as_secs_f64())
    })
    .await??;
    if opts.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(json!({
        "bench": "read",
        "rows": opts.rows,
        "readers": opts.readers,
        "queries": n,
        "qps": qps.round(),
        "p50_ms": round3(lat.percentile_ms(0.5)),
        "p99_ms": round3(lat.percentile_ms(0.99)),
        "raw_qps_one_connection": raw.round(),
        "ratio": round3(qps / raw),
    }))
}
