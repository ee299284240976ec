//! The soak: `edgeswarm bench soak --minutes N`. A swarm with two local regions runs a
//! steady mixed load for N minutes: typed writes (conversations, metrics, knowledge added
//! and deleted so its live set stays bounded), knowledge searches, kv churn with TTLs
//! (rotating keys and short-lived unique ones, swept by the kv sweeper), and a region
//! partition (one region's link is cut for a while and then healed, over and over).
//!
//! So that a steady state is reached inside a short run, the swarm is configured as a
//! long-running deployment would be, with short periods: conversations and metrics are
//! kept for `retention` (default 90 s; `RetentionConfig`, swept every
//! `retention_sweep`, 15 s), and the sync layer keeps history and tombstones for
//! `keep_history` (90 s) and compacts every `compact_interval` (15 s). The first line
//! (`"header": true`) states these.
//!
//! Every sample interval (one minute by default, `--sample-secs`) it emits one JSON
//! line: the process's RSS (VmRSS, VmHWM, RssAnon, RssFile) and the heap SQLite holds
//! (`sqlite_heap_mb`: page caches, statements), the home file's and each
//! region file's size and `-wal` size, and rows and bytes of the internal tables
//! (`_changes`, `_knowledge_touched`, kv and its tombstones, knowledge tombstones,
//! `distributed_transactions`, `conflicts`, and in each region `_region_log` and the
//! `_region_prev_*` tables) and of the user tables (home and regions). The last line is
//! a verdict: each figure compared with its value after warm-up (see [`verdict`]); user
//! tables and file sizes are judged too, since retention bounds them. RSS is the hard
//! failure (it is the one that would exhaust a host); with `strict` (the default) a
//! table or file that is not flat fails the run too.

use crate::error::{BenchError, Result};
use crate::util::{loadavg, scratch_dir};
use edgeswarm::{CacheConfig, Knowledge, Message, Metric, RegionConfig, RetentionConfig, Swarm, SyncConfig};
use edgeswarm_store::SqlValue;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Soak settings.
#[derive(Debug, Clone)]
pub struct SoakOpts {
    /// How long the load runs. Default 30 minutes.
    pub duration: Duration,
    /// Time between two samples (one JSON line each). Default 60 s.
    pub sample_every: Duration,
    /// Where the home and region files go (a fresh temp directory when `None`; removed
    /// at the end either way unless `keep`).
    pub dir: Option<PathBuf>,
    /// Leave the files behind for inspection. Default false.
    pub keep: bool,
    /// Writer tasks; each writes a conversation and a metric every 100 ms and a knowledge
    /// entry every 200 ms (deleting the oldest past `live_knowledge`). Default 4.
    pub writers: usize,
    /// Live knowledge entries kept per writer; older ones are deleted. Default 200.
    pub live_knowledge: usize,
    /// Search tasks, each searching every 100 ms. Default 2.
    pub searchers: usize,
    /// kv tasks; each sets a rotating key and a unique key with a 5 s TTL every 50 ms,
    /// and a CAS every 100 ms. Default 2.
    pub kv_tasks: usize,
    /// The partition cycle: region `soak-far` is cut off from `partition_at` into each
    /// cycle for `partition_for`, then healed. Default 120 s, 20 s, 30 s.
    pub partition_cycle: Duration,
    /// See `partition_cycle`.
    pub partition_at: Duration,
    /// See `partition_cycle`.
    pub partition_for: Duration,
    /// Relative tolerance of the flatness check. Default 0.2 (20%).
    pub tolerance: f64,
    /// The run fails if RSS ever passes this, whatever the run's length. Default 1024 MiB.
    pub max_rss_mb: f64,
    /// How long conversations and metrics are kept (the swarm's `RetentionConfig`).
    /// Default 90 s, so the user tables reach their steady size inside the run.
    pub retention: Duration,
    /// How often the retention sweeper runs. Default 15 s.
    pub retention_sweep: Duration,
    /// The sync layer's `keep_history` (tombstones, transaction history). Default 90 s.
    pub keep_history: Duration,
    /// The sync layer's `compact_interval`. Default 15 s.
    pub compact_interval: Duration,
    /// Warm-up: each figure's reference is the first sample taken at or after this.
    /// Default 120 s: retention and keep_history (90 s) plus two compaction passes.
    pub warmup: Duration,
    /// The home file's page caches and memory map; `None` (default): the store's
    /// defaults. Lets a run measure how much of RSS they are.
    pub cache: Option<CacheConfig>,
    /// When true (default), a table or file figure that is not flat fails the run too;
    /// when false only RSS does and the others are reported in `not_flat`.
    pub strict: bool,
}

impl Default for SoakOpts {
    fn default() -> Self {
        SoakOpts {
            duration: Duration::from_secs(30 * 60),
            sample_every: Duration::from_secs(60),
            dir: None,
            keep: false,
            writers: 4,
            live_knowledge: 200,
            searchers: 2,
            kv_tasks: 2,
            partition_cycle: Duration::from_secs(120),
            partition_at: Duration::from_secs(20),
            partition_for: Duration::from_secs(30),
            tolerance: 0.2,
            max_rss_mb: 1024.0,
            retention: Duration::from_secs(90),
            retention_sweep: Duration::from_secs(15),
            keep_history: Duration::from_secs(90),
            compact_interval: Duration::from_secs(15),
            warmup: Duration::from_secs(120),
            cache: None,
            strict: true,
        }
    }
}

/// The regions: (name, simulated latency ms). The second one is partitioned.
const REGIONS: [(&str, u64); 2] = [("soak-near", 10), ("soak-far", 40)];
const PARTITIONED: &str = "soak-far";

/// Operation counters shared by the load tasks.
#[derive(Debug, Default)]
struct Counters {
    /// Typed writes acked (conversations, metrics, knowledge adds and deletes).
    writes: AtomicU64,
    /// Searches answered.
    searches: AtomicU64,
    /// kv sets and CAS calls answered.
    kv: AtomicU64,
    /// Calls that failed (any kind); the soak goes on.
    errors: AtomicU64,
}

impl Counters {
    fn count(&self, c: &AtomicU64, r: std::result::Result<impl Sized, impl std::fmt::Display>) {
        match r {
            Ok(_) => c.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    tracing::warn!("soak: a call failed: {e}");
                }
                0
            }
        };
    }
}

/// Runs the soak; `emit` gets each sample line as it is taken, then the verdict (also
/// returned). The verdict's `rss_ok` is false when RSS grew past the tolerance after
/// warm-up or passed `max_rss_mb`.
pub async fn soak(opts: SoakOpts, emit: &mut dyn FnMut(&Value)) -> Result<Value> {
    let dir = scratch_dir(opts.dir.as_deref(), "soak")?;
    let r = run(&opts, &dir, emit).await;
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

async fn run(opts: &SoakOpts, dir: &Path, emit: &mut dyn FnMut(&Value)) -> Result<Value> {
    let home = dir.join("home.db");
    let regions_dir = dir.join("regions");
    std::fs::create_dir_all(&regions_dir).map_err(|e| BenchError::io(format!("cannot create {}", regions_dir.display()), e))?;
    let retention = RetentionConfig {
        conversations: Some(opts.retention),
        metrics: Some(opts.retention),
        sweep_interval: opts.retention_sweep,
        ..RetentionConfig::default()
    };
    let sync = SyncConfig {
        keep_history: opts.keep_history,
        compact_interval: opts.compact_interval,
        ..SyncConfig::default()
    };
    let cache = opts.cache.clone().unwrap_or_default();
    emit(&json!({
        "bench": "soak",
        "header": true,
        "minutes": round1(opts.duration.as_secs_f64() / 60.0),
        "sample_secs": opts.sample_every.as_secs_f64(),
        "retention_s": opts.retention.as_secs_f64(),
        "retention_sweep_s": opts.retention_sweep.as_secs_f64(),
        "keep_history_s": opts.keep_history.as_secs_f64(),
        "compact_interval_s": opts.compact_interval.as_secs_f64(),
        "warmup_s": opts.warmup.as_secs_f64(),
        "strict": opts.strict,
        "cache": cache,
        "load": {"writers": opts.writers, "live_knowledge": opts.live_knowledge, "searchers": opts.searchers, "kv_tasks": opts.kv_tasks},
    }));
    let mut b = Swarm::builder().path(&home).retention(retention).sync_config(sync);
    if let Some(c) = &opts.cache {
        b = b.cache(c.clone());
    }
    for (name, latency) in REGIONS {
        b = b.region(RegionConfig::local(name, regions_dir.join(format!("{name}.db")), latency));
    }
    let swarm = b.start().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    for w in 0..opts.writers {
        tasks.push(tokio::spawn(writer(
            swarm.clone(),
            w,
            opts.live_knowledge,
            stop.clone(),
            counters.clone(),
        )));
    }
    for s in 0..opts.searchers {
        tasks.push(tokio::spawn(searcher(swarm.clone(), s, stop.clone(), counters.clone())));
    }
    for k in 0..opts.kv_tasks {
        tasks.push(tokio::spawn(kv_churn(swarm.clone(), k, stop.clone(), counters.clone())));
    }

    let started = Instant::now();
    let mut samples: Vec<Value> = Vec::new();
    let mut next_sample = opts.sample_every;
    let mut partitioned = false;
    let mut partitions = 0u64;
    let mut healed_at: Option<Instant> = None;
    let settle = opts.compact_interval * 2;
    loop {
        let t = started.elapsed();
        let in_cycle = Duration::from_nanos((t.as_nanos() % opts.partition_cycle.as_nanos().max(1)) as u64);
        let want = in_cycle >= opts.partition_at && in_cycle < opts.partition_at + opts.partition_for;
        if want != partitioned {
            swarm.partition(PARTITIONED, want)?;
            partitioned = want;
            partitions += u64::from(want);
            if !want {
                healed_at = Some(Instant::now());
            }
        }
        if t >= next_sample || t >= opts.duration {
            let mut s = sample(&swarm, &home, &regions_dir, started, &counters, partitioned).await?;
            // Right after a heal the cut-off region holds the backlog, and rows retention
            // expired meanwhile, until the next compaction pass reaches it.
            s["settling"] = json!(healed_at.is_some_and(|h| h.elapsed() < settle));
            emit(&s);
            samples.push(s);
            next_sample += opts.sample_every;
        }
        if t >= opts.duration {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    if partitioned {
        swarm.partition(PARTITIONED, false)?;
    }
    swarm.shutdown().await?;
    let mut v = verdict(
        &samples,
        opts.tolerance,
        opts.max_rss_mb,
        opts.warmup.as_secs_f64() / 60.0,
        opts.strict,
    );
    if let Value::Object(m) = &mut v {
        m.insert("bench".into(), json!("soak"));
        m.insert("partitions".into(), json!(partitions));
        m.insert("errors".into(), json!(counters.errors.load(Ordering::Relaxed)));
        m.insert("loadavg".into(), loadavg());
    }
    emit(&v);
    Ok(v)
}

/// Every 100 ms: a conversation message and a metric; every 200 ms a knowledge entry,
/// deleting the oldest one past `live` (so the live set stays bounded and deletes leave
/// tombstones).
async fn writer(swarm: Swarm, w: usize, live: usize, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut alive: VecDeque<String> = VecDeque::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let m = Message::new(
            format!("soak-{w}-{}", n % 32),
            "user",
            format!("soak message {n} from writer {w}: check the edge cache and the batch size"),
        );
        c.count(&c.writes, swarm.add_conversation(m).await);
        c.count(
            &c.writes,
            swarm
                .record_metric(Metric::new(format!("soak-agent-{w}"), "soak", (n % 50) as f64, (n % 900) as i64))
                .await,
        );
        if n.is_multiple_of(2) {
            let k = Knowledge::new(
                "soak",
                format!("topic {}", n % 17),
                format!(
                    "writer {w} finding {n}: {} latency improves with batching and regional caching",
                    WORDS[(n as usize) % WORDS.len()]
                ),
            );
            match swarm.add_knowledge(k).await {
                Ok(id) => {
                    c.writes.fetch_add(1, Ordering::Relaxed);
                    alive.push_back(id);
                }
                Err(e) => c.count(&c.writes, Err::<(), _>(e)),
            }
            while alive.len() > live {
                if let Some(old) = alive.pop_front() {
                    c.count(&c.writes, swarm.delete_knowledge(&old).await);
                }
            }
        }
    }
}

const WORDS: [&str; 8] = [
    "replication",
    "cache",
    "latency",
    "batching",
    "partition",
    "region",
    "throughput",
    "index",
];

/// A search every 100 ms, rotating through queries.
async fn searcher(swarm: Swarm, s: usize, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n = s;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let q = format!("{} {}", WORDS[n % WORDS.len()], WORDS[(n / 3) % WORDS.len()]);
        c.count(&c.searches, swarm.search_knowledge(&q, 10).await);
    }
}

/// Every 50 ms: a rotating key (1,000 per task) and a unique key, both with a 5 s TTL
/// (the sweeper expires them); every 100 ms a CAS on a shared counter.
async fn kv_churn(swarm: Swarm, k: usize, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let ttl = Some(Duration::from_secs(5));
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        c.count(
            &c.kv,
            swarm.kv_set("soak", &format!("rot-{k}-{}", n % 1000), json!({"n": n}), ttl).await,
        );
        c.count(&c.kv, swarm.kv_set("soak-lease", &format!("lease-{k}-{n}"), json!(n), ttl).await);
        if n.is_multiple_of(2) {
            let cur = swarm
                .kv_get("soak", &format!("counter-{k}"))
                .await
                .ok()
                .flatten()
                .map(|e| e.version);
            c.count(&c.kv, swarm.kv_cas("soak", &format!("counter-{k}"), cur, json!(n), None).await);
        }
    }
}

/// VmRSS, VmHWM, RssAnon and RssFile of this process, in MiB (Linux; `None` elsewhere).
/// RssAnon is heap and other private memory (what a leak grows); RssFile is file pages
/// mapped by the readers' mmap, which the kernel can drop.
fn rss_mb() -> [Option<f64>; 4] {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return [None; 4];
    };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| round1(kb / 1024.0))
    };
    [field("VmRSS:"), field("VmHWM:"), field("RssAnon:"), field("RssFile:")]
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Size of a file in MiB (0 when absent).
fn file_mb(p: &Path) -> f64 {
    round1(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64)
}

fn side(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Rows of `sql` (a count) or -1 when it failed (a table that does not exist yet).
fn count_of(r: std::result::Result<edgeswarm_store::QueryResult, edgeswarm_store::StoreError>) -> i64 {
    r.ok()
        .and_then(|r| r.rows.first().and_then(|row| row.first()).and_then(SqlValue::as_i64))
        .unwrap_or(-1)
}

/// One sample: RSS, file sizes, internal and user table rows and KiB.
async fn sample(swarm: &Swarm, home: &Path, regions_dir: &Path, started: Instant, c: &Counters, partitioned: bool) -> Result<Value> {
    let [rss, hwm, anon, file] = rss_mb();
    // Rows of the home tables and their size in pages (dbstat: every b-tree, indexes
    // included under their own names, so a table's figure is its b-tree alone).
    let home_tables = swarm
        .store()
        .read(|rd| {
            let counts = [
                ("_changes", "SELECT count(*) FROM _changes"),
                ("_knowledge_touched", "SELECT count(*) FROM _knowledge_touched"),
                ("kv", "SELECT count(*) FROM kv"),
                ("kv_tombstones", "SELECT count(*) FROM kv WHERE deleted = 1"),
                ("knowledge", "SELECT count(*) FROM knowledge"),
                ("knowledge_tombstones", "SELECT count(*) FROM knowledge WHERE deleted = 1"),
                ("distributed_transactions", "SELECT count(*) FROM distributed_transactions"),
                ("conflicts", "SELECT count(*) FROM conflicts"),
                ("_sync_cursors", "SELECT count(*) FROM _sync_cursors"),
                ("conversations", "SELECT count(*) FROM conversations"),
                ("agent_metrics", "SELECT count(*) FROM agent_metrics"),
            ];
            let mut rows = Map::new();
            for (name, sql) in counts {
                rows.insert(name.into(), json!(count_of(rd.query(sql, vec![]))));
            }
            let kib = rd
                .query("SELECT name, SUM(pgsize) / 1024 FROM dbstat GROUP BY name", vec![])
                .map(|r| {
                    r.rows
                        .into_iter()
                        .filter_map(|row| Some((row.first()?.as_str()?.to_string(), row.get(1)?.as_i64()?)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            Ok((rows, kib))
        })
        .await?;
    let (rows, kib) = home_tables;
    let mut tables = Map::new();
    for (name, n) in rows {
        let base = name.trim_end_matches("_tombstones");
        let size = if name.ends_with("_tombstones") {
            Value::Null
        } else {
            kib.iter().find(|(t, _)| t == base).map(|(_, k)| json!(k)).unwrap_or(Value::Null)
        };
        tables.insert(name, json!({"rows": n, "kib": size}));
    }
    let mut regions = Map::new();
    for (name, _) in REGIONS {
        let p = regions_dir.join(format!("{name}.db"));
        regions.insert(name.into(), region_sample(&p).await);
    }
    let status = swarm.sync_status();
    let lag: Map<String, Value> = status
        .map(|s| s.regions.into_iter().map(|r| (r.region, json!(r.lag_rows))).collect())
        .unwrap_or_default();
    let elapsed = started.elapsed().as_secs_f64();
    Ok(json!({
        "minute": round1(elapsed / 60.0),
        "elapsed_s": round1(elapsed),
        "rss_mb": rss,
        "hwm_mb": hwm,
        "rss_anon_mb": anon,
        "rss_file_mb": file,
        "sqlite_heap_mb": round1(edgeswarm_store::raw::memory_used() as f64 / (1 << 20) as f64),
        "db_mb": file_mb(home),
        "wal_mb": file_mb(&side(home, "-wal")),
        "tables": tables,
        "regions": regions,
        "lag_rows": lag,
        "partitioned": partitioned,
        "ops": {
            "writes": c.writes.load(Ordering::Relaxed),
            "searches": c.searches.load(Ordering::Relaxed),
            "kv": c.kv.load(Ordering::Relaxed),
            "errors": c.errors.load(Ordering::Relaxed),
        },
    }))
}

/// A region file's size, `-wal` size, and rows and KiB of its internal tables
/// (`_region_log`, `_region_prev_*`) and of its copies of the user tables, read on a
/// short-lived read-only connection.
async fn region_sample(p: &Path) -> Value {
    let mut out = Map::new();
    out.insert("db_mb".into(), json!(file_mb(p)));
    out.insert("wal_mb".into(), json!(file_mb(&side(p, "-wal"))));
    let tables = async {
        let db = libsql::Builder::new_local(p)
            .flags(libsql::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .build()
            .await?;
        let c = db.connect()?;
        let mut names = Vec::new();
        let mut rows = c
            .query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND (name IN ('_region_log', 'conversations', 'agent_metrics', 'knowledge', 'kv') \
                 OR name LIKE '\\_region\\_prev\\_%' ESCAPE '\\')",
                (),
            )
            .await?;
        while let Some(r) = rows.next().await? {
            names.push(r.get::<String>(0)?);
        }
        let mut t = Map::new();
        for n in names {
            let q = format!("SELECT count(*), (SELECT SUM(pgsize) / 1024 FROM dbstat WHERE name = ?1) FROM \"{}\"", n.replace('"', "\"\""));
            let mut r = c.query(&q, [n.clone()]).await?;
            if let Some(row) = r.next().await? {
                t.insert(n, json!({"rows": row.get::<i64>(0)?, "kib": row.get::<Option<i64>>(1)?}));
            }
        }
        Ok::<_, libsql::Error>(t)
    }
    .await;
    match tables {
        Ok(t) => out.insert("tables".into(), Value::Object(t)),
        Err(e) => out.insert("error".into(), json!(e.to_string())),
    };
    Value::Object(out)
}

/// Every judged figure of a sample, by a flat name (`rss_mb`, `db_mb`, `wal_mb`,
/// `tables._changes.rows`, `regions.soak-far.tables._region_log.rows`, ...): RSS, every
/// file, and the rows of every table, internal and user (retention bounds the user
/// tables too).
fn judged(s: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for k in ["rss_mb", "db_mb", "wal_mb"] {
        if let Some(x) = s[k].as_f64() {
            out.push((k.to_string(), x));
        }
    }
    if let Some(t) = s["tables"].as_object() {
        for (name, v) in t {
            if let Some(x) = v["rows"].as_f64() {
                out.push((format!("tables.{name}.rows"), x));
            }
        }
    }
    if let Some(r) = s["regions"].as_object() {
        for (region, v) in r {
            for k in ["db_mb", "wal_mb"] {
                if let Some(x) = v[k].as_f64() {
                    out.push((format!("regions.{region}.{k}"), x));
                }
            }
            if let Some(t) = v["tables"].as_object() {
                for (name, tv) in t {
                    if let Some(x) = tv["rows"].as_f64() {
                        out.push((format!("regions.{region}.tables.{name}.rows"), x));
                    }
                }
            }
        }
    }
    out
}

/// Tables bounded by construction rather than by compaction: their cap in rows. A
/// figure at or under its cap is flat even while it still fills up. `_knowledge_touched`
/// is trimmed to its newest 65,536 entries by the knowledge triggers.
const CAPPED: [(&str, f64); 1] = [("tables._knowledge_touched.rows", 65_536.0)];

/// The soak's verdict. Warm-up is the time before `warmup_min` minutes; the samples from
/// the first one at or after it to the end are judged. Periodic compaction and the
/// partitions (a backlog builds while a region is cut off and goes after it heals) make
/// the internal tables a sawtooth, so no single pair of samples decides. A figure is
/// flat when either
/// - its peak over the second half of the judged samples is at most its peak over the
///   first half × (1 + tolerance) plus a slack, or
/// - the growth its least-squares trend projects over the judged span is at most its
///   mean × tolerance plus the slack.
///
/// A figure that really grows fails both. The slack is small and absolute (32 MiB for
/// RSS, 4 MiB for files, 100 rows for tables) so near-empty figures do not flap. A table
/// bounded by construction ([`CAPPED`]) is flat while under its cap. Samples marked
/// `settling` (taken less than two compaction intervals after a partition healed: the
/// region that was cut off still holds its backlog and the rows retention expired
/// meanwhile, until the next compaction pass reaches it) are reported but not judged;
/// the RSS cap applies to every sample. A run with no sample after the reference is too short to judge flatness (`judged: false`); only the
/// `max_rss_mb` cap applies to it. `rss_ok` is false when RSS is not flat or passed the
/// cap; `ok` (the run's result) is `rss_ok`, and with `strict` also needs every other
/// figure flat.
pub fn verdict(samples: &[Value], tolerance: f64, max_rss_mb: f64, warmup_min: f64, strict: bool) -> Value {
    let peak = samples.iter().filter_map(|s| s["rss_mb"].as_f64()).fold(0.0, f64::max);
    let under_cap = peak <= max_rss_mb;
    let all = samples.len();
    let steady: Vec<Value> = samples.iter().filter(|s| s["settling"] != json!(true)).cloned().collect();
    let samples = &steady[..];
    let reference = samples
        .iter()
        .position(|s| s["minute"].as_f64().unwrap_or(0.0) >= warmup_min - 1e-9);
    let judged_run = reference.is_some_and(|i| i + 1 < samples.len());
    let mut figures = Map::new();
    let mut not_flat = Vec::new();
    let mut rss_flat = true;
    if let (true, Some(ri)) = (judged_run, reference) {
        let after = &samples[ri..];
        let (first, second) = after.split_at((after.len() / 2).max(1));
        let minute = |s: &Value| s["minute"].as_f64().unwrap_or(0.0);
        let minutes = minute(&after[after.len() - 1]) - minute(&after[0]);
        let peaks = |window: &[Value]| {
            let mut m: Vec<(String, f64)> = Vec::new();
            for s in window {
                for (name, x) in judged(s) {
                    match m.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, v)) => *v = v.max(x),
                        None => m.push((name, x)),
                    }
                }
            }
            m
        };
        let (warm_peaks, last_peaks) = (peaks(first), peaks(second));
        let series: Vec<(f64, Vec<(String, f64)>)> = after.iter().map(|s| (minute(s), judged(s))).collect();
        // Least-squares slope (per minute) and mean of one figure over the judged samples.
        let trend = |name: &str| {
            let pts: Vec<(f64, f64)> = series
                .iter()
                .filter_map(|(t, figs)| figs.iter().find(|(n, _)| n == name).map(|(_, v)| (*t, *v)))
                .collect();
            let n = pts.len() as f64;
            let (mt, mv) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
            let var: f64 = pts.iter().map(|p| (p.0 - mt).powi(2)).sum();
            let cov: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
            (if var > 0.0 { cov / var } else { 0.0 }, mv)
        };
        let (start_figs, end_figs) = (judged(&after[0]), judged(&after[after.len() - 1]));
        let value_of = |figs: &[(String, f64)], name: &str| figs.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        for (name, r) in warm_peaks {
            let Some(l) = value_of(&last_peaks, &name) else {
                continue;
            };
            let slack = if name == "rss_mb" {
                32.0
            } else if name.ends_with("_mb") {
                4.0
            } else {
                100.0
            };
            let cap = CAPPED.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
            let (slope, mean) = trend(&name);
            let peaks_flat = l <= r * (1.0 + tolerance) + slack;
            let trend_flat = slope * minutes <= mean * tolerance + slack;
            let flat = peaks_flat || trend_flat || cap.is_some_and(|c| l <= c);
            if !flat {
                not_flat.push(json!(name));
            }
            if name == "rss_mb" {
                rss_flat = flat;
            }
            let ends = match (value_of(&start_figs, &name), value_of(&end_figs, &name)) {
                (Some(a), Some(b)) => json!([a, b]),
                _ => Value::Null,
            };
            let mut f = json!({
                "warm": r, "last": l, "first_last": ends, "per_minute": round1(slope), "mean": round1(mean), "flat": flat,
            });
            if let Some(c) = cap {
                f["cap"] = json!(c);
            }
            figures.insert(name, f);
        }
    }
    let rss_ok = under_cap && rss_flat;
    let flat = judged_run && not_flat.is_empty();
    json!({
        "summary": true,
        "samples": all,
        "judged_samples": if judged_run { samples.len() - reference.unwrap_or(0) } else { 0 },
        "judged": judged_run,
        "warmup_min": warmup_min,
        "tolerance": tolerance,
        "strict": strict,
        "rss_peak_mb": peak,
        "max_rss_mb": max_rss_mb,
        "rss_ok": rss_ok,
        "flat": flat,
        "ok": rss_ok && (!strict || !judged_run || flat),
        "not_flat": not_flat,
        "figures": figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(minute: f64, rss: f64, changes: i64) -> Value {
        json!({"minute": minute, "rss_mb": rss, "wal_mb": 4.0, "tables": {"_changes": {"rows": changes}, "conversations": {"rows": changes * 10}}})
    }

    #[test]
    fn flat_after_warmup_passes_and_growth_is_named() {
        let v = verdict(
            &[s(1.0, 80.0, 10), s(2.0, 100.0, 1000), s(3.0, 105.0, 1100), s(10.0, 110.0, 1150)],
            0.2,
            1024.0,
            2.0,
            true,
        );
        assert_eq!((v["rss_ok"].clone(), v["ok"].clone()), (json!(true), json!(true)));
        assert_eq!(v["flat"], json!(true), "{v}");
        // User tables are judged too (retention bounds them).
        assert_eq!(v["figures"]["tables.conversations.rows"]["warm"], json!(10_000.0));

        let grow = [s(1.0, 80.0, 10), s(2.0, 100.0, 1000), s(3.0, 140.0, 5000), s(10.0, 300.0, 90_000)];
        let v = verdict(&grow, 0.2, 1024.0, 2.0, true);
        assert_eq!(v["rss_ok"], json!(false));
        assert_eq!(
            v["not_flat"],
            json!(["rss_mb", "tables._changes.rows", "tables.conversations.rows"]),
            "{v}"
        );
        // The reference is the first sample at or after the warm-up.
        let v = verdict(&grow, 0.2, 1024.0, 2.5, true);
        assert_eq!(v["figures"]["rss_mb"]["warm"], json!(140.0), "{v}");
    }

    #[test]
    fn strict_fails_on_tables_and_capped_tables_pass_under_their_cap() {
        let t = |minute: f64, changes: i64, touched: i64| json!({"minute": minute, "rss_mb": 100.0, "tables": {"_changes": {"rows": changes}, "_knowledge_touched": {"rows": touched}}});
        let samples = [t(1.0, 10, 100), t(2.0, 1000, 4000), t(5.0, 9000, 20_000)];
        let v = verdict(&samples, 0.2, 1024.0, 2.0, true);
        assert_eq!(v["not_flat"], json!(["tables._changes.rows"]), "{v}");
        assert_eq!((v["rss_ok"].clone(), v["ok"].clone()), (json!(true), json!(false)));
        let v = verdict(&samples, 0.2, 1024.0, 2.0, false);
        assert_eq!(v["ok"], json!(true));
        // Past its cap a capped table is judged like any other.
        let v = verdict(&[t(2.0, 10, 60_000), t(5.0, 10, 80_000)], 0.2, 1024.0, 2.0, true);
        assert_eq!(v["not_flat"], json!(["tables._knowledge_touched.rows"]), "{v}");
    }

    #[test]
    fn a_sawtooth_is_flat_when_its_peaks_are() {
        let t = |minute: f64, changes: i64| json!({"minute": minute, "rss_mb": 100.0, "tables": {"_changes": {"rows": changes}}});
        // A backlog builds while a region is cut off and is compacted after: the last
        // sample lands on a peak, the reference did not.
        let saw = [t(1.0, 10), t(2.0, 1000), t(2.5, 6000), t(3.0, 1000), t(4.0, 1200), t(5.0, 6500)];
        let v = verdict(&saw, 0.2, 1024.0, 2.0, true);
        assert_eq!((v["flat"].clone(), v["ok"].clone()), (json!(true), json!(true)), "{v}");
        assert_eq!(v["figures"]["tables._changes.rows"]["warm"], json!(6000.0), "the first half's peak");
        // Peaks that differ while the trend is level: flat as well.
        let level = [
            t(2.0, 5100),
            t(2.5, 5550),
            t(3.0, 5400),
            t(3.5, 5330),
            t(4.0, 5270),
            t(4.5, 5550),
            t(5.0, 6900),
        ];
        let v = verdict(&level, 0.2, 1024.0, 2.0, true);
        assert_eq!(v["flat"], json!(true), "{v}");
        // Peaks that keep rising are growth.
        let rising = [t(2.0, 1000), t(2.5, 6000), t(3.0, 1000), t(4.0, 1200), t(5.0, 9000)];
        let v = verdict(&rising, 0.2, 1024.0, 2.0, true);
        assert_eq!(v["not_flat"], json!(["tables._changes.rows"]), "{v}");
    }

    #[test]
    fn settling_samples_are_not_judged_but_count_for_the_cap() {
        let t = |minute: f64, rows: i64, settling: bool| json!({"minute": minute, "rss_mb": 100.0, "settling": settling, "tables": {"_region_log": {"rows": rows}}});
        let v = verdict(
            &[
                t(2.0, 10_000, false),
                t(3.0, 17_000, true),
                t(4.0, 10_200, false),
                t(5.0, 17_300, true),
            ],
            0.2,
            1024.0,
            2.0,
            true,
        );
        assert_eq!((v["flat"].clone(), v["judged_samples"].clone()), (json!(true), json!(2)), "{v}");
        let mut spike = t(5.0, 10, true);
        spike["rss_mb"] = json!(2000.0);
        let v = verdict(&[t(2.0, 10, false), t(3.0, 10, false), spike], 0.2, 1024.0, 2.0, true);
        assert_eq!(v["rss_ok"], json!(false));
    }

    #[test]
    fn short_runs_are_not_judged_but_the_cap_holds() {
        let v = verdict(&[s(1.0, 80.0, 10)], 0.2, 1024.0, 2.0, true);
        assert_eq!(
            (v["judged"].clone(), v["rss_ok"].clone(), v["ok"].clone()),
            (json!(false), json!(true), json!(true))
        );
        let v = verdict(&[s(1.0, 80.0, 10), s(2.0, 500.0, 10)], 0.2, 1024.0, 2.0, true);
        assert_eq!(v["judged"], json!(false), "no sample after the reference");
        let v = verdict(&[s(1.0, 2000.0, 10)], 0.2, 1024.0, 2.0, true);
        assert_eq!((v["rss_ok"].clone(), v["ok"].clone()), (json!(false), json!(false)));
    }
}
