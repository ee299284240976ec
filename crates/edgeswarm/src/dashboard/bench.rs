//! `bench dashboard`: what the dashboard costs the swarm. In one run, on one swarm with
//! the dashboard serving, ingest throughput (publishers writing metric rows through the
//! storage actor, pipelined) is measured alternately with 0 and with N pages connected to
//! `/events` (real HTTP clients reading the stream), in A B B A order per pair so drift
//! cancels. Also reports the producer's own cost: the time one sample takes, times the
//! sampling rate. Self-contained: the CLI calls [`bench`] and prints its JSON.

use super::{snapshot::Sampler, DashboardConfig};
use crate::Swarm;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Options for [`bench`].
#[derive(Debug, Clone)]
pub struct BenchOpts {
    /// Pages connected in the loaded rounds. Default 10 (the figure).
    pub clients: usize,
    /// Rows written per round. Default 100,000.
    pub rows: usize,
    /// Concurrent publishers. Default 64.
    pub publishers: usize,
    /// Acks each publisher may have outstanding. Default 256.
    pub window: usize,
    /// A B B A pairs (each pair: two rounds without pages, two with). Default 3.
    pub pairs: usize,
    /// Folder for the bench database (a temp dir when `None`).
    pub dir: Option<std::path::PathBuf>,
}

impl Default for BenchOpts {
    fn default() -> Self {
        BenchOpts {
            clients: 10,
            rows: 100_000,
            publishers: 64,
            window: 256,
            pairs: 3,
            dir: None,
        }
    }
}

async fn ingest_round(swarm: &Swarm, rows: usize, publishers: usize, window: usize, round: usize) -> Result<f64, String> {
    let per = rows / publishers.max(1);
    let data: Vec<Vec<edgeswarm_core::Metric>> = (0..publishers)
        .map(|p| {
            (0..per)
                .map(|i| edgeswarm_core::Metric::new(format!("bench-{round}-{p}"), "ingest", (i % 2000) as f64, (i % 500) as i64))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for records in data {
        let s = swarm.clone();
        tasks.push(tokio::spawn(async move {
            let mut inflight = std::collections::VecDeque::with_capacity(window);
            for m in records {
                inflight.push_back(s.store().enqueue_record(m).await.map_err(|e| e.to_string())?);
                if inflight.len() >= window.max(1) {
                    if let Some(a) = inflight.pop_front() {
                        a.wait().await.map_err(|e| e.to_string())?;
                    }
                }
            }
            for a in inflight {
                a.wait().await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok((per * publishers) as f64 / started.elapsed().as_secs_f64())
}

/// Connects `n` SSE readers; returns their stop flag, byte counter and tasks.
async fn connect_pages(addr: std::net::SocketAddr, n: usize) -> Result<(Arc<AtomicBool>, Arc<AtomicU64>, Vec<tokio::task::JoinHandle<()>>), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(format!("GET /events HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let (stop, bytes) = (stop.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(k)) => {
                        bytes.fetch_add(k as u64, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
        }));
    }
    Ok((stop, bytes, tasks))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// Runs the benchmark; returns one JSON object.
pub async fn bench(opts: BenchOpts) -> Result<Value, String> {
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("edgeswarm-dashboard-bench-{}", edgeswarm_core::new_id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let swarm = Swarm::builder()
        .path(dir.join("bench.db"))
        .start()
        .await
        .map_err(|e| format!("cannot start the swarm: {e}"))?;
    let r = run(&swarm, &opts).await;
    let _ = swarm.shutdown().await;
    if opts.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

async fn run(swarm: &Swarm, opts: &BenchOpts) -> Result<Value, String> {
    let cfg = DashboardConfig::new("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?);
    let every = cfg.sample_interval;
    let d = swarm.serve_dashboard_with(cfg).await.map_err(|e| e.to_string())?;
    // Warm up (page cache, statement caches, the first batches).
    ingest_round(swarm, opts.rows / 4, opts.publishers, opts.window, 0).await?;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut bytes_read, mut loaded_secs) = (0u64, 0.0f64);
    let mut round = 1;
    for _ in 0..opts.pairs.max(1) {
        for loaded in [false, true, true, false] {
            if loaded {
                let (stop, bytes, tasks) = connect_pages(d.local_addr(), opts.clients).await?;
                // Let every page get its snapshot first.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let t = Instant::now();
                with.push(ingest_round(swarm, opts.rows, opts.publishers, opts.window, round).await?);
                loaded_secs += t.elapsed().as_secs_f64();
                bytes_read += bytes.load(Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
                for t in tasks {
                    let _ = t.await;
                }
            } else {
                without.push(ingest_round(swarm, opts.rows, opts.publishers, opts.window, round).await?);
            }
            round += 1;
        }
    }
    let dropped = d.dropped_clients();
    d.stop().await;
    // The producer's own cost: time per sample on this swarm, times the sampling rate.
    let mut s = Sampler::new(swarm.clone());
    let n = 40;
    let t = Instant::now();
    for _ in 0..n {
        let _ = s.sample(opts.clients, 0).await;
    }
    let per_sample_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let producer_share = per_sample_us / every.as_secs_f64() / 1e6 * 100.0;
    let (w0, w1) = (median(&mut without.clone()), median(&mut with.clone()));
    let overhead = if w0 > 0.0 { (w0 - w1) / w0 * 100.0 } else { 0.0 };
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    Ok(json!({
        "bench": "dashboard",
        "clients": opts.clients,
        "rows_per_round": opts.rows,
        "publishers": opts.publishers,
        "rounds_each": without.len(),
        "ingest_rows_per_s_0_clients": without.iter().map(|x| x.round()).collect::<Vec<_>>(),
        "ingest_rows_per_s_with_clients": with.iter().map(|x| x.round()).collect::<Vec<_>>(),
        "median_0_clients": w0.round(),
        "median_with_clients": w1.round(),
        "overhead_pct": (overhead * 100.0).round() / 100.0,
        "under_1pct": overhead < 1.0,
        "sample_interval_ms": every.as_millis() as u64,
        "producer_us_per_sample": r1(per_sample_us),
        "producer_cpu_share_pct": (producer_share * 1000.0).round() / 1000.0,
        "sse_bytes_per_client_per_s": if loaded_secs > 0.0 { (bytes_read as f64 / opts.clients.max(1) as f64 / loaded_secs).round() } else { 0.0 },
        "clients_dropped": dropped,
        "note": "overhead_pct = (median without pages - median with pages) / median without; rounds alternate A B B A on one swarm; a negative value is noise",
    }))
}
