//! Throughput to a real Hrana server (`tursodb --sync-server` on loopback), beside a
//! plain client in the same run: `hrana_rows_per_sec` is a fresh home pushing `rows`
//! metric rows to an empty region through the SyncActor (start to the last ack, as in
//! `bench sync`); `plain_rows_per_sec` sends the same rows to a second empty server as a
//! plain client would: 1000-row transactional batches (BEGIN; one INSERT per row;
//! COMMIT; one Hrana batch per POST), one after another. `plain_multirow_rows_per_sec`
//! is the same client with 500-row multi-row INSERTs (what a client tuned for bulk
//! loading does; a ceiling, not the target). Self-contained: it is meant to move to the
//! bench crate as it is.

use crate::error::{BenchError, Result};
use edgeswarm_core::WriteConsistency;
use edgeswarm_store::SqlValue;
use edgeswarm_sync::home;
use edgeswarm_sync::{RegionConfig, SyncConfig, SyncSystem};
use edgeswarm_testkit::tursodb::TursoServer;
use libsql_hrana::proto::{Batch, BatchStreamReq, PipelineReqBody, PipelineRespBody, Stmt, StreamRequest, StreamResponse, StreamResult};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of [`remote_bench`].
#[derive(Debug, Clone)]
pub struct RemoteBenchOpts {
    /// Scratch directory (home and server files are created inside).
    pub dir: PathBuf,
    /// The `tursodb` binary to serve the regions.
    pub tursodb: PathBuf,
    /// Rows per run. Default 20,000 (as `hrana_rows_per_sec` in `bench sync`).
    pub rows: usize,
    /// Runs of each measurement; the best of each is reported (a shared machine's
    /// noise only ever slows a run down). Default 3.
    pub rounds: usize,
}

impl RemoteBenchOpts {
    /// Defaults in `dir` against `tursodb`.
    pub fn new(dir: impl Into<PathBuf>, tursodb: impl Into<PathBuf>) -> Self {
        RemoteBenchOpts {
            dir: dir.into(),
            tursodb: tursodb.into(),
            rows: 20_000,
            rounds: 3,
        }
    }
}

/// The plain client: `rows` in transactional batches of `batch` rows, `per_stmt` rows
/// per INSERT, one POST per batch, sequential. Returns rows/s.
async fn plain_client(url: &str, ddl: &[String], table: &str, cols: &[String], rows: &[Vec<SqlValue>], per_stmt: usize) -> Result<f64> {
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(edgeswarm_sync::link::tls::plain_http_tls())
        .http1_only()
        .build()
        .map_err(|e| BenchError::Other(format!("plain client: {e}")))?;
    let endpoint = format!("{url}/v2/pipeline");
    let post = |stmts: Vec<Stmt>| {
        let body = PipelineReqBody {
            baton: None,
            requests: vec![StreamRequest::Batch(BatchStreamReq {
                batch: Batch::transactional(stmts),
            })],
        };
        let req = client.post(&endpoint).json(&body);
        async move {
            let resp = req.send().await.map_err(|e| BenchError::Other(format!("plain client: {e}")))?;
            let r: PipelineRespBody = resp.json().await.map_err(|e| BenchError::Other(format!("plain client: {e}")))?;
            match r.results.into_iter().next() {
                Some(StreamResult::Ok {
                    response: StreamResponse::Batch(b),
                }) if b.result.step_errors.iter().all(|e| e.is_none()) => Ok(()),
                other => Err(BenchError::Other(format!("plain client: batch failed: {other:?}"))),
            }
        }
    };
    post(ddl.iter().map(|d| Stmt::new(d.clone(), false)).collect()).await?;
    let col_list = cols.iter().map(|c| edgeswarm_sync::row::quote(c)).collect::<Vec<_>>().join(", ");
    let tuple = format!("({})", vec!["?"; cols.len()].join(", "));
    let t0 = Instant::now();
    for batch in rows.chunks(1000) {
        let stmts = batch
            .chunks(per_stmt)
            .map(|part| {
                let values = vec![tuple.as_str(); part.len()].join(", ");
                let mut s = Stmt::new(
                    format!("INSERT INTO {} ({col_list}) VALUES {values}", edgeswarm_sync::row::quote(table)),
                    false,
                );
                for r in part {
                    for v in r {
                        s.bind(edgeswarm_sync::link::to_hrana(v.clone()));
                    }
                }
                s
            })
            .collect();
        post(stmts).await?;
    }
    Ok(rows.len() as f64 / t0.elapsed().as_secs_f64())
}

/// Runs the comparison; one JSON object:
/// `{hrana_rows_per_sec, plain_rows_per_sec, ratio, plain_multirow_rows_per_sec, rows, server, rounds}`.
pub async fn remote_bench(opts: RemoteBenchOpts) -> Result<Json> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| BenchError::Other(format!("cannot create {}: {e}", opts.dir.display())))?;
    let version = std::process::Command::new(&opts.tursodb)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    // The rows the plain client sends: the same rows a filled home holds.
    let seed = opts.dir.join("rb-seed.db");
    let store = crate::sync::open_store(seed.clone()).await?;
    crate::sync::fill_metrics(&store, opts.rows).await?;
    let (spec, rows) = store
        .read(|r| {
            let spec = home::load_spec(r, "agent_metrics", true)
                .map_err(edgeswarm_store::StoreError::sql)?
                .ok_or_else(|| edgeswarm_store::StoreError::sql("agent_metrics is missing"))?;
            let q = r.query(&spec.select_all_ordered(), vec![])?;
            Ok((spec, q.rows))
        })
        .await?;
    store.shutdown().await?;
    let ddl = spec.create_region_tables();
    let (mut hrana, mut plain, mut multi) = (0f64, 0f64, 0f64);
    // Server CPU per 1,000 rows (Linux: /proc), the least noisy view of the work each
    // shape costs the server; the lowest of the rounds.
    let (mut hrana_cpu, mut plain_cpu): (Option<f64>, Option<f64>) = (None, None);
    let per_k = |ms: Option<u64>| ms.map(|m| m as f64 * 1000.0 / rows.len().max(1) as f64);
    let low = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    for round in 0..opts.rounds.max(1) {
        // edgeswarm: a freshly filled home (not timed), pushed to an empty server.
        let store = crate::sync::open_store(opts.dir.join(format!("rb-home-{round}.db"))).await?;
        crate::sync::fill_metrics(&store, opts.rows).await?;
        let srv = TursoServer::start(&opts.tursodb, &opts.dir.join(format!("rb-es-{round}.db")), None)
            .await
            .map_err(|e| BenchError::io("start tursodb", e))?;
        let c0 = server_cpu_ms(srv.child.id());
        let t0 = Instant::now();
        let sync = SyncSystem::start(
            store.clone(),
            vec![RegionConfig::http("bench", &srv.url, None)],
            SyncConfig::default(),
        )
        .await?;
        let seq = sync.latest_seq().await?;
        let r = sync.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(600)).await;
        let el = t0.elapsed().as_secs_f64();
        hrana_cpu = low(hrana_cpu, per_k(server_cpu_ms(srv.child.id()).zip(c0).map(|(a, b)| a - b)));
        sync.shutdown().await;
        store.shutdown().await?;
        r?;
        hrana = hrana.max(rows.len() as f64 / el);
        drop(srv);
        // The plain client, to a second empty server.
        let srv = TursoServer::start(&opts.tursodb, &opts.dir.join(format!("rb-plain-{round}.db")), None)
            .await
            .map_err(|e| BenchError::io("start tursodb", e))?;
        let c0 = server_cpu_ms(srv.child.id());
        plain = plain.max(plain_client(&srv.url, &ddl, &spec.name, &spec.columns, &rows, 1).await?);
        plain_cpu = low(plain_cpu, per_k(server_cpu_ms(srv.child.id()).zip(c0).map(|(a, b)| a - b)));
        drop(srv);
        let srv = TursoServer::start(&opts.tursodb, &opts.dir.join(format!("rb-multi-{round}.db")), None)
            .await
            .map_err(|e| BenchError::io("start tursodb", e))?;
        multi = multi.max(plain_client(&srv.url, &ddl, &spec.name, &spec.columns, &rows, 500).await?);
        drop(srv);
    }
    Ok(json!({
        "bench": "remote",
        "server": version,
        "rows": rows.len(),
        "rounds": opts.rounds.max(1),
        "hrana_rows_per_sec": hrana.round(),
        "plain_rows_per_sec": plain.round(),
        "ratio": (hrana / plain * 100.0).round() / 100.0,
        "plain_multirow_rows_per_sec": multi.round(),
        "server_cpu_ms_per_1000_rows": {
            "hrana": hrana_cpu.map(|v| (v * 10.0).round() / 10.0),
            "plain": plain_cpu.map(|v| (v * 10.0).round() / 10.0),
        },
    }))
}

/// The server a scratch run uses when none is given: [`edgeswarm_testkit::tursodb::tursodb_path`].
pub fn default_tursodb() -> Option<PathBuf> {
    edgeswarm_testkit::tursodb::tursodb_path()
}

/// Convenience for examples: runs with defaults in `dir`.
pub async fn run_in(dir: &Path, tursodb: &Path, rows: usize) -> Result<Json> {
    let mut o = RemoteBenchOpts::new(dir, tursodb);
    o.rows = rows;
    remote_bench(o).await
}

/// CPU time (user + system) a process used so far, in ms; `None` off Linux.
fn server_cpu_ms(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), in clock ticks (100 per second on Linux).
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10)
}
