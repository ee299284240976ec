//! Sync benchmarks, as a library function the CLI (`edgeswarm bench sync --json`)
//! calls. Nothing here asserts timings; it measures and reports.

use crate::error::{BenchError, Result};
use crate::sim::SEED_REGIONS;
use edgeswarm_core::{Durability, Knowledge, Metric, StoreConfig, WriteConsistency};
use edgeswarm_store::Store;
use edgeswarm_sync::{RegionConfig, SyncConfig, SyncSystem};
use edgeswarm_testkit::tursodb::{tursodb_path, TursoServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Benchmark options.
#[derive(Debug, Clone)]
pub struct BenchOpts {
    /// Scratch directory (home and region files are created inside).
    pub dir: PathBuf,
    /// Rows for the throughput runs. Default 50,000.
    pub rows: usize,
    /// Seconds of steady load for the lag run. Default 3.
    pub lag_secs: u64,
    /// Writes per second during the lag run. Default 10,000.
    pub lag_rate: u64,
    /// `tursodb` binary for `hrana_rows_per_sec`; `None` = [`tursodb_path`] (the tests' lookup); missing =
    /// the field is `null`.
    pub tursodb: Option<PathBuf>,
}

impl BenchOpts {
    /// Defaults in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        BenchOpts {
            dir: dir.into(),
            rows: 50_000,
            lag_secs: 3,
            lag_rate: 10_000,
            tursodb: None,
        }
    }
}

pub(crate) async fn open_store(path: PathBuf) -> Result<Store> {
    let mut c = StoreConfig::at(path);
    c.durability = Durability::Normal;
    let store = Store::open(c).await?;
    // Knowledge records take edgeswarm-search's insert path (dedup included).
    edgeswarm_search::knowledge::install(&store);
    Ok(store)
}

pub(crate) async fn fill_metrics(store: &Store, n: usize) -> Result<()> {
    let mut acks = Vec::with_capacity(1024);
    for i in 0..n {
        acks.push(
            store
                .enqueue_record(Metric::new(format!("agent-{}", i % 64), "bench", 1.0, i as i64))
                .await?,
        );
        if acks.len() >= 1024 {
            for a in acks.drain(..) {
                a.wait().await?;
            }
        }
    }
    for a in acks {
        a.wait().await?;
    }
    Ok(())
}

/// Pushes `rows` pre-written rows from a fresh home to one region; rows/s.
async fn push_throughput(dir: &Path, rows: usize, region: RegionConfig, name: &str) -> Result<f64> {
    let store = open_store(dir.join(format!("{name}-home.db"))).await?;
    fill_metrics(&store, rows).await?;
    let t0 = Instant::now();
    let sync = SyncSystem::start(store.clone(), vec![region], SyncConfig::default()).await?;
    let seq = sync.latest_seq().await?;
    let r = sync.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(300)).await;
    let el = t0.elapsed().as_secs_f64();
    sync.shutdown().await;
    store.shutdown().await?;
    r?;
    Ok(rows as f64 / el)
}

/// Runs every sync benchmark and returns one JSON object:
/// `{rows_per_sec, hrana_rows_per_sec, full_sync_500_ms, lag_p99_ms: {region: ms}}`.
pub async fn bench(opts: BenchOpts) -> Result<Value> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| BenchError::io(format!("cannot create {}", opts.dir.display()), e))?;
    let d = &opts.dir;

    // 1. Throughput home -> one local region, no injected latency.
    let rows_per_sec = push_throughput(d, opts.rows, RegionConfig::local("local", d.join("tp-region.db"), 0), "tp").await?;

    // 2. Same over Hrana to a loopback tursodb.
    let bin = opts.tursodb.clone().or_else(tursodb_path);
    let hrana_rows_per_sec = match bin {
        Some(b) => {
            let srv = TursoServer::start(&b, &d.join("hrana-region.db"), None)
                .await
                .map_err(|e| BenchError::io("tursodb", e))?;
            let r = push_throughput(d, opts.rows.min(20_000), RegionConfig::http("hrana", &srv.url, None), "hr").await;
            drop(srv);
            Some(r?)
        }
        None => None,
    };

    // 3. Full sync of 500 records to a fresh region at 45 ms.
    let store = open_store(d.join("fs-home.db")).await?;
    for i in 0..500 {
        store
            .enqueue_record(Knowledge::new(
                "bench",
                format!("topic {i}"),
                format!("content number {i} for the full sync benchmark"),
            ))
            .await?
            .wait()
            .await?;
    }
    let t0 = Instant::now();
    let sync = SyncSystem::start(
        store.clone(),
        vec![RegionConfig::local("eu-central-1", d.join("fs-region.db"), 45)],
        SyncConfig::default(),
    )
    .await?;
    let seq = sync.latest_seq().await?;
    sync.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(60)).await?;
    let full_sync_500_ms = t0.elapsed().as_secs_f64() * 1000.0;
    sync.shutdown().await;
    store.shutdown().await?;

    // 4. Steady load to the seed's four regions; per-row commit-to-ack lag.
    let store = open_store(d.join("lag-home.db")).await?;
    let regions: Vec<RegionConfig> = SEED_REGIONS
        .iter()
        .map(|(n, ms)| RegionConfig::local(*n, d.join(format!("lag-{n}.db")), *ms))
        .collect();
    let cfg = SyncConfig {
        window: 64,
        ..Default::default()
    };
    let sync = SyncSystem::start(store.clone(), regions, cfg).await?;
    let tick = Duration::from_millis(10);
    let per_tick = (opts.lag_rate as f64 * tick.as_secs_f64()).round().max(1.0) as usize;
    let total_ticks = (opts.lag_secs * 1000 / 10).max(1);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = Vec::new();
    let warmup = total_ticks / 5;
    for t in 0..total_ticks {
        interval.tick().await;
        if t == warmup {
            sync.reset_lag_stats();
        }
        for i in 0..per_tick {
            pending.push(store.enqueue_record(Metric::new("lag", "steady", 1.0, i as i64)).await?);
        }
        if pending.len() > 20_000 {
            for a in pending.drain(..) {
                a.wait().await?;
            }
        }
    }
    for a in pending {
        a.wait().await?;
    }
    let seq = sync.latest_seq().await?;
    sync.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(60)).await?;
    let st = sync.sync_status();
    let mut lag = serde_json::Map::new();
    for r in &st.regions {
        lag.insert(r.region.clone(), json!(r.lag_p99_ms));
    }
    sync.shutdown().await;
    store.shutdown().await?;

    Ok(json!({
        "rows_per_sec": rows_per_sec.round(),
        "hrana_rows_per_sec": hrana_rows_per_sec.map(|v| v.round()),
        "full_sync_500_ms": (full_sync_500_ms * 10.0).round() / 10.0,
        "lag_p99_ms": Value::Object(lag),
        "lag_rate_writes_per_sec": opts.lag_rate,
        "rows": opts.rows,
    }))
}
