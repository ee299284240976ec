//! The swarm simulation behind `examples/swarm_sim.rs` and `edgeswarm demo`: agents in
//! the seed's four regions analyse code, claim work through shared memory, record
//! metrics, conversations and knowledge; one agent crashes on purpose and is restarted.
//! At the end the seed's tables hold figures measured in this run.

use edgeswarm::{
    Agent, AgentCtx, AgentOptions, BoxError, CasOutcome, Error, Knowledge, MetricAgg, MetricsSummary, RegionConfig, RestartPolicy, Result,
    Swarm, SwarmBuilder, SwarmEvent, TaskReport, WriteConsistency,
};
use edgeswarm_store::{QueryResult, SqlValue};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The seed's four regions and their latencies (ms).
pub const SEED_REGIONS: [(&str, u64); 4] = [("us-west-2", 25), ("eu-central-1", 45), ("ap-southeast-1", 85), ("sa-east-1", 120)];

/// Simulation settings.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Agents, spread over the regions. Default 64.
    pub agents: usize,
    /// How long agents work. Default 15 s.
    pub seconds: u64,
    /// Home database. Default `./edgeswarm.db` (kept between runs).
    pub db: PathBuf,
    /// Regions (name, latency ms). Default: the seed's four.
    pub regions: Vec<(String, u64)>,
    /// Seed for the work generator, so runs are comparable.
    pub seed: u64,
    /// Replicate to the regions (a libSQL file per region beside the home file, behind a
    /// link with the region's latency). Default true.
    pub replicate: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            agents: 64,
            seconds: 15,
            db: PathBuf::from("./edgeswarm.db"),
            regions: SEED_REGIONS.iter().map(|(n, l)| (n.to_string(), *l)).collect(),
            seed: 42,
            replicate: true,
        }
    }
}

impl SimOptions {
    /// Where the region files live: `regions/` beside the home file.
    pub fn regions_dir(&self) -> PathBuf {
        self.db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| p.join("regions"))
            .unwrap_or_else(|| PathBuf::from("regions"))
    }

    /// A swarm builder for this simulation: the home file and, when `replicate`, one
    /// `LocalLink` region per configured region.
    pub fn builder(&self) -> Result<SwarmBuilder> {
        let mut b = Swarm::builder().path(&self.db);
        if self.replicate {
            let dir = self.regions_dir();
            std::fs::create_dir_all(&dir).map_err(|e| Error::Invalid(format!("cannot create {}: {e}", dir.display())))?;
            for (name, latency) in &self.regions {
                b = b.region(RegionConfig::local(name.clone(), dir.join(format!("{name}.db")), *latency));
            }
        }
        Ok(b)
    }
}

/// Live counters, for a progress bar.
#[derive(Debug, Default)]
pub struct SimProgress {
    /// Work items analysed to the end (claimed, worked, recorded).
    pub tasks_done: AtomicU64,
    /// Offers an agent lost because another agent claimed the item first (the CAS path).
    pub claims_lost: AtomicU64,
    /// Records the agents wrote (conversations, knowledge, kv results), for the report.
    pub writes: AtomicU64,
    /// Agent restarts seen on the swarm's event stream (the planned crash shows as 1).
    pub restarts: AtomicU64,
    /// Time since the producer started, for the progress bar's position.
    pub elapsed_ms: AtomicU64,
}

impl SimProgress {
    /// One line for a progress bar.
    pub fn summary(&self) -> String {
        format!(
            "tasks {} · writes {} · restarts {}",
            self.tasks_done.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
            self.restarts.load(Ordering::Relaxed)
        )
    }
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimReport {
    /// This run's id: the prefix of its kv keys, sessions and `performance_tests` rows.
    pub run_id: String,
    /// The home file, canonical, so the reader knows which file holds the tables.
    pub db_path: String,
    /// Agents spawned.
    pub agents: usize,
    /// How long the agents worked (s, measured).
    pub seconds: f64,
    /// See [`SimProgress::tasks_done`].
    pub tasks_done: u64,
    /// See [`SimProgress::claims_lost`].
    pub claims_lost: u64,
    /// Records written by the agents, plus one metric row per task.
    pub writes: u64,
    /// See [`SimProgress::restarts`].
    pub agent_restarts: u64,
    /// The seed's performance query, run against this run's rows.
    pub throughput: QueryResult,
    /// The seed's latency-by-region query.
    pub regions: QueryResult,
    /// Task-duration aggregates (count, mean, percentiles) over this run's metric rows.
    pub metrics: MetricsSummary,
}

#[derive(Clone)]
enum Work {
    /// Try to claim and analyse work item `n`.
    Claim(u64),
}

/// An agent that claims work items and "analyses" them.
#[derive(Clone)]
struct Analyst {
    /// The simulated round trip to the agent's region (its latency), slept per item.
    latency: Duration,
    /// Shared counters the progress bar and the report read.
    progress: Arc<SimProgress>,
    /// The one agent that crashes on purpose (once).
    crash_once: Option<Arc<AtomicBool>>,
    /// Prefix of every key and session this run writes, so runs sharing a file stay apart.
    run_id: Arc<str>,
}

impl Agent for Analyst {
    type Task = Work;
    async fn on_task(&mut self, ctx: &AgentCtx, task: Work) -> Result<TaskReport, BoxError> {
        let Work::Claim(n) = task;
        let key = format!("{}/item-{n}", self.run_id);
        match ctx
            .kv_cas("claims", &key, None, json!(ctx.id()), Some(Duration::from_secs(3600)))
            .await?
        {
            CasOutcome::Conflict { .. } => {
                self.progress.claims_lost.fetch_add(1, Ordering::Relaxed);
                return Ok(TaskReport::new("claim-lost", 0));
            }
            CasOutcome::Swapped { .. } => {}
        }
        if let Some(flag) = &self.crash_once {
            // On its first claimed item: with `n % 7 == 3` as well, a short run on a busy
            // machine could end before this agent claimed such an item (a flaky test).
            if flag.swap(false, Ordering::SeqCst) {
                panic!("simulated agent crash on item {n}");
            }
        }
        // The region's round trip plus some work that depends on the item.
        tokio::time::sleep(self.latency + Duration::from_millis(n % 20)).await;
        let tokens = 500 + (n * 37 % 3000) as i64;
        let session = format!("{}-session-{}", self.run_id, n % 50);
        ctx.add_conversation(
            &session,
            "user",
            &format!("Analyse module {n} for latency issues"),
            Some(json!({"region": ctx.region(), "latency": self.latency.as_millis() as u64})),
        )
        .await?;
        ctx.add_conversation(
            &session,
            "assistant",
            &format!("Module {n}: {} findings, {tokens} tokens", n % 5),
            None,
        )
        .await?;
        let mut writes = 3;
        if n % 4 == 0 {
            let topics = ["latency-optimization", "caching", "connection-pooling", "batching", "replication"];
            let k = Knowledge::new(
                "edge-computing",
                topics[(n % 5) as usize],
                format!(
                    "Finding from module {n}: prefer batched writes and regional caching; observed {} ms",
                    self.latency.as_millis()
                ),
            )
            .tags(["performance", "edge", "distributed"])
            .metadata(json!({"regions": [ctx.region()], "item": n}));
            ctx.add_knowledge(k).await?;
            writes += 1;
        }
        if n % 4 == 2 {
            // Consult what other agents learned before reporting.
            ctx.search_knowledge("batched writes regional caching", 5).await?;
        }
        ctx.kv_set(
            "results",
            &key,
            json!({"agent": ctx.id(), "tokens": tokens}),
            Some(Duration::from_secs(3600)),
        )
        .await?;
        self.progress.tasks_done.fetch_add(1, Ordering::Relaxed);
        self.progress.writes.fetch_add(writes + 1, Ordering::Relaxed);
        Ok(TaskReport::new("code-analysis", tokens))
    }
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Runs the simulation on a started swarm and returns what it measured.
pub async fn run_on(swarm: &Swarm, opts: &SimOptions, progress: Arc<SimProgress>) -> Result<SimReport> {
    let run_id: Arc<str> = format!("run-{}", edgeswarm_core::new_id()).into();
    let crash = Arc::new(AtomicBool::new(true));
    let mut events = swarm.events();
    let restarts = progress.clone();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if let SwarmEvent::AgentRestarted { .. } = e {
                restarts.restarts.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut ids = Vec::new();
    for i in 0..opts.agents.max(1) {
        let (region, latency) = &opts.regions[i % opts.regions.len().max(1)];
        let id = format!("{}-agent-{i:03}", &run_id[4..12]);
        let a = Analyst {
            latency: Duration::from_millis(*latency),
            progress: progress.clone(),
            crash_once: (i == 7 % opts.agents.max(1)).then(|| crash.clone()),
            run_id: run_id.clone(),
        };
        let o = AgentOptions {
            restart: RestartPolicy {
                max_restarts: 3,
                within: Duration::from_secs(60),
            },
            mailbox: 256,
            record_task_metrics: true,
        };
        swarm.spawn_agent_with(&id, region, a, o).await?;
        ids.push(id);
    }

    // Producer: each work item is offered to three agents; exactly one claims it.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let mut rng = opts.seed.max(1);
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..8 {
            for _ in 0..3 {
                let id = &ids[(next(&mut rng) % ids.len() as u64) as usize];
                let _ = swarm.send(id, Work::Claim(n)).await;
            }
            n += 1;
        }
        progress.elapsed_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let agents finish what they hold, then stop them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in &ids {
        let _ = swarm.stop_agent(id).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    swarm.store().flush().await?;

    // Measured throughput per operation type, written to the seed's table. INSERT and
    // SELECT are measured in short bursts after the agents stop (the agents' own rate is
    // bounded by their simulated work, not by the store).
    let writes = progress.writes.load(Ordering::Relaxed) + progress.tasks_done.load(Ordering::Relaxed); // + one metric row per task
    let pushed = |sw: &Swarm| {
        sw.sync_status()
            .map(|s| s.regions.iter().map(|r| r.pushed_rows).sum::<u64>())
            .unwrap_or(0)
    };
    let sync_t0 = Instant::now();
    let pushed0 = pushed(swarm);
    let (inserts, insert_secs) = measure_inserts(swarm, &run_id).await?;
    let caught_up = wait_caught_up(swarm, Duration::from_secs(60)).await;
    let sync_secs = sync_t0.elapsed().as_secs_f64();
    let synced = pushed(swarm).saturating_sub(pushed0);
    let (reads, read_secs) = measure_selects(swarm, &run_id).await?;
    let store = swarm.store();
    let mut ops_measured = vec![
        ("INSERT", inserts as f64 / insert_secs, inserts, insert_secs * 1000.0),
        ("SELECT", reads as f64 / read_secs, reads, read_secs * 1000.0),
    ];
    if swarm.sync().is_some() && synced > 0 {
        if !caught_up {
            tracing::warn!("regions had not caught up after 60 s; SYNC throughput counts what was pushed by then");
        }
        // Row versions acked by the regions per second, from the burst to catch-up.
        ops_measured.push(("SYNC", synced as f64 / sync_secs, synced, sync_secs * 1000.0));
    }
    for (op, tp, ops, ms) in ops_measured {
        store
            .execute_sql(
                "INSERT INTO performance_tests (run_id, operation_type, throughput, ops, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                vec![run_id.to_string().into(), op.into(), tp.into(), (ops as i64).into(), ms.into()],
            )
            .await?;
    }
    let throughput = store
        .read_sql(
            "SELECT operation_type, AVG(throughput) as avg_ops_per_sec FROM performance_tests WHERE run_id = ?1 GROUP BY operation_type",
            vec![run_id.to_string().into()],
        )
        .await?;
    let regions = store
        .read_sql(
            "SELECT region, avg_latency_ms, performance_tier FROM edge_replicas ORDER BY avg_latency_ms",
            vec![],
        )
        .await?;
    let since = chrono_ms() - (elapsed * 1000.0) as i64 - 5_000;
    let metrics = swarm.metrics(Some(since)).await?;
    Ok(SimReport {
        run_id: run_id.to_string(),
        db_path: std::fs::canonicalize(&opts.db)
            .unwrap_or_else(|_| opts.db.clone())
            .display()
            .to_string(),
        agents: opts.agents,
        seconds: elapsed,
        tasks_done: progress.tasks_done.load(Ordering::Relaxed),
        claims_lost: progress.claims_lost.load(Ordering::Relaxed),
        writes,
        agent_restarts: progress.restarts.load(Ordering::Relaxed),
        throughput,
        regions,
        metrics,
    })
}

fn chrono_ms() -> i64 {
    edgeswarm_core::record::now_millis()
}

/// Waits until every region has acked everything (lag 0), up to `limit`.
async fn wait_caught_up(swarm: &Swarm, limit: Duration) -> bool {
    let Some(sync) = swarm.sync() else { return true };
    let Ok(seq) = sync.latest_seq().await else { return false };
    sync.wait_replicated(seq, WriteConsistency::All, limit).await.is_ok()
}

/// 64 publishers write 32,768 metric rows through the storage actor, pipelined.
async fn measure_inserts(swarm: &Swarm, run_id: &str) -> Result<(u64, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..64 {
        let s = swarm.clone();
        let agent = format!("{run_id}-bulk-{p}");
        tasks.push(tokio::spawn(async move {
            let mut acks = std::collections::VecDeque::new();
            let mut n = 0u64;
            for i in 0..512 {
                acks.push_back(
                    s.store()
                        .enqueue_record(edgeswarm_core::Metric::new(agent.clone(), "bulk-insert", i as f64 / 10.0, 0))
                        .await?,
                );
                if acks.len() >= 128 {
                    if let Some(a) = acks.pop_front() {
                        a.wait().await?;
                        n += 1;
                    }
                }
            }
            for a in acks {
                a.wait().await?;
                n += 1;
            }
            Ok::<_, Error>(n)
        }));
    }
    join_counts(tasks, started).await
}

/// Sums the counts of measurement tasks; returns (total, seconds since `started`).
async fn join_counts<T: std::ops::AddAssign + Default>(
    tasks: Vec<tokio::task::JoinHandle<Result<T>>>,
    started: Instant,
) -> Result<(T, f64)> {
    let mut total = T::default();
    for t in tasks {
        total += t.await.map_err(|e| Error::Spawn(e.to_string()))??;
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

/// Indexed reads of this run's sessions from 2 concurrent readers for ~1 s.
async fn measure_selects(swarm: &Swarm, run_id: &str) -> Result<(u64, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..2u64 {
        let s = swarm.clone();
        let run = run_id.to_string();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let end = Instant::now() + Duration::from_secs(1);
            while Instant::now() < end {
                let sid = format!("{run}-session-{}", (n + r * 7) % 50);
                s.store()
                    .read(move |rd| {
                        rd.query(
                            "SELECT id, role, content FROM conversations WHERE session_id = ?1 ORDER BY created_at, id LIMIT 20",
                            vec![SqlValue::Text(sid)],
                        )
                    })
                    .await?;
                n += 1;
            }
            Ok::<_, Error>(n)
        }));
    }
    join_counts(tasks, started).await
}

/// Formats a query result as an aligned text table.
pub fn table(r: &QueryResult) -> String {
    let cells: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    SqlValue::Null => "".into(),
                    SqlValue::Integer(i) => i.to_string(),
                    SqlValue::Real(f) => format!("{f:.1}"),
                    SqlValue::Text(s) => s.clone(),
                    SqlValue::Blob(b) => format!("<{} bytes>", b.len()),
                })
                .collect()
        })
        .collect();
    let mut w: Vec<usize> = r.columns.iter().map(|c| c.len()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |vals: &[String]| {
        vals.iter()
            .enumerate()
            .map(|(i, v)| format!("{:w$}", v, w = w[i]))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut out = format!("| {} |\n", line(&r.columns));
    out += &format!("|{}|\n", w.iter().map(|n| "-".repeat(n + 2)).collect::<Vec<_>>().join("|"));
    for row in &cells {
        out += &format!("| {} |\n", line(row));
    }
    out
}

/// The report as text: the seed's tables with this run's figures.
pub fn render(r: &SimReport) -> String {
    let mut s = String::new();
    s += &format!(
        "\nedgeswarm swarm_sim — {} agents for {:.1} s: {} tasks done, {} claims lost to other agents, {} writes, {} agent restarts\n",
        r.agents, r.seconds, r.tasks_done, r.claims_lost, r.writes, r.agent_restarts
    );
    s += "\nThroughput by operation (SELECT operation_type, AVG(throughput) FROM performance_tests GROUP BY operation_type)\n";
    s += &table(&r.throughput);
    s += "\nLatency by region (SELECT region, avg_latency_ms, performance_tier FROM edge_replicas ORDER BY avg_latency_ms)\n";
    if r.regions.rows.is_empty() {
        s += "(no regions replicated in this run)\n";
    } else {
        s += &table(&r.regions);
    }
    s += "\nAgent metrics by task type (ms)\n";
    s += &metric_table(&r.metrics.by_task_type);
    s += "\nAgent metrics by region (ms)\n";
    s += &metric_table(&r.metrics.by_region);
    s += &format!("\nDatabase: {}\n", r.db_path);
    s
}

fn metric_table(v: &[MetricAgg]) -> String {
    let qr = QueryResult {
        columns: ["key", "count", "mean", "p50", "p95", "p99", "tokens"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows: v
            .iter()
            .map(|a| {
                vec![
                    a.key.clone().into(),
                    (a.count as i64).into(),
                    a.mean_ms.into(),
                    a.p50_ms.into(),
                    a.p95_ms.into(),
                    a.p99_ms.into(),
                    a.tokens.into(),
                ]
            })
            .collect(),
        ..Default::default()
    };
    table(&qr)
}
