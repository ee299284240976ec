//! `bench dashboard`: what the dashboard costs the swarm. In one run, on one swarm with
//! the dashboard serving, ingest throughput (publishers writing metric rows through the
//! storage actor, pipelined) is measured alternately with 0 and with N pages connected to
//! `/events` (real HTTP clients reading the stream), in A B B A order per pair so drift
//! cancels. Also reports the producer's own cost: the time one sample takes, times the
//! sampling rate. Self-contained: the CLI calls [`bench`] and prints its JSON.

use edgeswarm::dashboard::snapshot::Sampler;
use edgeswarm::DashboardConfig;
use edgeswarm::Swarm;
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
    /// A B B A pairs (each pair: two rounds without pages, two with). Default 4.
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
            pairs: 4,
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
async fn connect_pages(
    addr: std::net::SocketAddr,
    n: usize,
) -> Result<(Arc<AtomicBool>, Arc<AtomicU64>, Vec<tokio::task::JoinHandle<()>>), String> {
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

/// CPU time this process has used (all threads), in seconds; Linux only.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at `) `.
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, s) = (f.get(11)?.parse::<f64>().ok()?, f.get(12)?.parse::<f64>().ok()?);
    // USER_HZ is 100 on every Linux ABI.
    Some((u + s) / 100.0)
}

/// CPU this process uses per wall second over `secs` (idle swarm): the dashboard's own
/// cost with the pages connected as they are.
async fn idle_cpu_share(secs: f64) -> Option<f64> {
    let (c0, t0) = (cpu_secs()?, Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    Some((cpu_secs()? - c0) / t0.elapsed().as_secs_f64() * 100.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() & 1 == 0 {
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
    // Direct CPU accounting on the idle swarm: 0 pages, then N pages (their in-process
    // readers included, so this is an upper bound of the server side).
    let idle_0 = idle_cpu_share(4.0).await;
    let (stop, _bytes, tasks) = connect_pages(d.local_addr(), opts.clients).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_n = idle_cpu_share(4.0).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // CPU the ingest itself uses per wall second (one more round, measured).
    let (c0, t0) = (cpu_secs(), Instant::now());
    ingest_round(swarm, opts.rows, opts.publishers, opts.window, round).await?;
    let ingest_cpu = c0.and_then(|c0| cpu_secs().map(|c1| (c1 - c0) / t0.elapsed().as_secs_f64() * 100.0));
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
    let spread = |v: &[f64], m: f64| {
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
        if m > 0.0 && !v.is_empty() {
            r1((hi - lo) / m * 100.0)
        } else {
            0.0
        }
    };
    let dash_cpu = match (idle_0, idle_n) {
        (Some(a), Some(b)) => Some((b - a).max(0.0)),
        _ => None,
    };
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
        "under_1pct_by_throughput": overhead < 1.0,
        "under_1pct_by_cpu": match (dash_cpu, ingest_cpu) {
            (Some(d), Some(i)) if i > 0.0 => Some(d / i * 100.0 < 1.0),
            _ => None,
        },
        "sample_interval_ms": every.as_millis() as u64,
        "producer_us_per_sample": r1(per_sample_us),
        "producer_cpu_share_pct": (producer_share * 1000.0).round() / 1000.0,
        "sse_bytes_per_client_per_s": if loaded_secs > 0.0 { (bytes_read as f64 / opts.clients.max(1) as f64 / loaded_secs).round() } else { 0.0 },
        "clients_dropped": dropped,
        "spread_0_clients_pct": spread(&without, w0),
        "spread_with_clients_pct": spread(&with, w1),
        "idle_cpu_pct_0_clients": idle_0.map(r1),
        "idle_cpu_pct_with_clients": idle_n.map(r1),
        "ingest_cpu_pct": ingest_cpu.map(r1),
        "dashboard_cpu_vs_ingest_cpu_pct": match (dash_cpu, ingest_cpu) {
            (Some(d), Some(i)) if i > 0.0 => Some((d / i * 10000.0).round() / 100.0),
            _ => None,
        },
        "note": "overhead_pct = (median without pages - median with pages) / median without, rounds A B B A on one swarm (compare with spread_*: round-to-round noise); dashboard_cpu_vs_ingest_cpu_pct = CPU of the dashboard with the pages (idle swarm, readers included) / CPU of ingest, percent (CPU% = of one core)",
    }))
}
