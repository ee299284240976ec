//! The dashboard's view of the swarm: one sampler reads what `Swarm` already exposes
//! (agents, store stats, sync status, search latency and status, the seed's tables) and
//! turns it into one JSON document, plus one chart point per second.
//!
//! Rates and percentiles are windowed: rates over the last second, percentiles over the
//! last five (from deltas of the cumulative power-of-two histograms the store and the
//! facade keep, so a percentile is exact to its bucket and interpolated inside it).
//! Objects never hold `null` members: an unknown value is left out, which the page shows
//! as "n/a" (and which keeps JSON Merge Patch deltas unambiguous).

use crate::{AgentStatus, Swarm, SwarmEvent};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The seed report's throughput query (`performance_tests`), as written there.
pub const SEED_THROUGHPUT_SQL: &str =
    "SELECT operation_type, AVG(throughput) as avg_ops_per_sec FROM performance_tests GROUP BY operation_type";
/// The seed report's latency-by-region query (`edge_replicas`), as written there.
pub const SEED_REGIONS_SQL: &str = "SELECT region, avg_latency_ms, performance_tier FROM edge_replicas ORDER BY avg_latency_ms";

/// Lines kept in the event log shown on the page.
const LOG_LINES: usize = 40;
/// Window for percentiles.
const PCT_WINDOW: Duration = Duration::from_secs(5);
/// Window for rates.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Cumulative counters at one instant, for windowed rates and percentiles.
#[derive(Debug, Clone)]
struct Counters {
    /// When they were read.
    at: Instant,
    /// Writes committed.
    ops: u64,
    /// Batches committed.
    batches: u64,
    /// Commit latency histogram (µs, power-of-two buckets).
    commit: Vec<u64>,
    /// Queue-to-ack latency histogram (µs).
    ack: Vec<u64>,
    /// Search latency histogram (µs).
    search: Vec<u64>,
    /// Tasks finished by all agents (ok + failed).
    tasks: u64,
}

/// Reads the swarm and keeps what windows and logs need between samples.
pub struct Sampler {
    /// The swarm observed.
    swarm: Swarm,
    /// For `uptime_s`.
    started: Instant,
    /// Samples taken (slower sources run every few).
    tick: u64,
    /// Per agent: tasks done at the last sample and the smoothed rate (tasks/s).
    agent_rates: HashMap<String, (u64, f64)>,
    /// When the last sample was taken (per-agent rate smoothing).
    last_at: Option<Instant>,
    /// Recent cumulative counters, oldest first (about `PCT_WINDOW`).
    ring: VecDeque<Counters>,
    /// The search actor's last status (refreshed once a second).
    search_status: Option<edgeswarm_search::actor::SearchStatus>,
    /// The seed's two tables (refreshed every two seconds).
    seed: Value,
    /// Each region's last (status, partitioned), to log transitions.
    region_prev: HashMap<String, (String, bool)>,
    /// Lifecycle events from the swarm, turned into log lines.
    events: broadcast::Receiver<SwarmEvent>,
    /// Recent log lines, newest first.
    log: VecDeque<Value>,
    /// When the last chart point was made.
    last_point: Option<Instant>,
    /// Most agents listed individually (the rest are counted in `agent_totals`).
    pub max_agents: usize,
}

fn now_ms() -> i64 {
    edgeswarm_core::record::now_millis()
}

/// A number rounded to `digits` decimals; `None` when not finite.
pub fn num(x: f64, digits: i32) -> Option<Value> {
    if !x.is_finite() {
        return None;
    }
    let m = 10f64.powi(digits);
    let r = (x * m).round() / m;
    serde_json::Number::from_f64(r).map(Value::Number)
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v);
    }
}

/// `p`-quantile of a power-of-two histogram (index i counts values in (2^(i-1), 2^i]),
/// interpolated linearly inside its bucket; `None` when empty.
pub fn pow2_quantile(h: &[u64], p: f64) -> Option<f64> {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * p).ceil().max(1.0) as u64;
    let mut cum = 0u64;
    for (i, &n) in h.iter().enumerate() {
        if n > 0 && cum + n >= rank {
            let upper = (1u64 << i.min(62)) as f64;
            let lower = if i == 0 { 0.0 } else { upper / 2.0 };
            return Some(lower + (upper - lower) * ((rank - cum) as f64 / n as f64));
        }
        cum += n;
    }
    None
}

fn hist_delta(now: &[u64], then: &[u64]) -> Vec<u64> {
    now.iter()
        .enumerate()
        .map(|(i, n)| n.saturating_sub(then.get(i).copied().unwrap_or(0)))
        .collect()
}

fn sql_json(v: &edgeswarm_store::SqlValue) -> Value {
    use edgeswarm_store::SqlValue as S;
    match v {
        S::Null => Value::Null,
        S::Integer(i) => json!(i),
        S::Real(f) => num(*f, 1).unwrap_or(Value::Null),
        S::Text(s) => json!(s),
        S::Blob(b) => json!(format!("<{} bytes>", b.len())),
    }
}

fn status_str(s: AgentStatus) -> &'static str {
    match s {
        AgentStatus::Running => "running",
        AgentStatus::Restarting => "restarting",
        AgentStatus::Stopped => "stopped",
    }
}

impl Sampler {
    pub fn new(swarm: Swarm) -> Self {
        let events = swarm.events();
        Sampler {
            swarm,
            started: Instant::now(),
            tick: 0,
            agent_rates: HashMap::new(),
            last_at: None,
            ring: VecDeque::new(),
            search_status: None,
            seed: json!({}),
            region_prev: HashMap::new(),
            events,
            log: VecDeque::new(),
            last_point: None,
            max_agents: 500,
        }
    }

    /// True once the swarm has begun shutting down.
    pub fn swarm_is_shut(&self) -> bool {
        self.swarm.is_shut_down()
    }

    fn log(&mut self, level: &str, text: String) {
        self.log.push_front(json!({"ts": now_ms(), "level": level, "text": text}));
        self.log.truncate(LOG_LINES);
    }

    /// The counters `window` ago (or the oldest kept).
    fn back(&self, window: Duration) -> Option<&Counters> {
        let now = self.ring.back()?.at;
        self.ring
            .iter()
            .rev()
            .find(|c| now.duration_since(c.at) >= window)
            .or_else(|| self.ring.front())
    }

    async fn refresh_slow(&mut self) {
        let every = |n: u64| self.tick.checked_rem(n) == Some(0);
        if every(4) {
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(250), self.swarm.search().status()).await {
                self.search_status = Some(s);
            }
        }
        if every(8) {
            let read = self.swarm.store().read(|r| {
                let a = r.query(SEED_THROUGHPUT_SQL, vec![])?;
                let b = r.query(SEED_REGIONS_SQL, vec![])?;
                Ok((a, b))
            });
            if let Ok(Ok((a, b))) = tokio::time::timeout(Duration::from_millis(500), read).await {
                let t = |q: &edgeswarm_store::QueryResult, sql: &str| {
                    json!({
                        "query": sql,
                        "columns": q.columns,
                        "rows": q.rows.iter().map(|r| r.iter().map(sql_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
                    })
                };
                self.seed = json!({"performance_tests": t(&a, SEED_THROUGHPUT_SQL), "edge_replicas": t(&b, SEED_REGIONS_SQL)});
            }
        }
    }

    /// Takes one sample: the whole state, and a chart point when a second has passed
    /// since the last one.
    pub async fn sample(&mut self, clients: usize, dropped_clients: u64) -> (Value, Option<Value>) {
        let at = Instant::now();
        let shut = self.swarm.is_shut_down();
        if !shut {
            self.refresh_slow().await;
        }
        self.tick += 1;
        loop {
            match self.events.try_recv() {
                Ok(SwarmEvent::AgentStarted { .. }) => {}
                Ok(SwarmEvent::AgentRestarted { id, reason, restarts }) => {
                    self.log("warn", format!("agent {id} restarted (#{restarts}): {reason}"))
                }
                Ok(SwarmEvent::AgentStopped { id, reason }) => self.log("error", format!("agent {id} stopped: {reason}")),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.log("warn", format!("{n} lifecycle events not shown")),
                Err(_) => break,
            }
        }

        // ---- agents
        let dt = self.last_at.map(|t| at.duration_since(t).as_secs_f64()).unwrap_or(0.0);
        self.last_at = Some(at);
        let alpha = if dt > 0.0 { 1.0 - (-dt / 2.0).exp() } else { 1.0 };
        let infos = self.swarm.agents();
        let mut totals = (0usize, 0usize, 0usize, 0u64, 0u64, 0.0f64, 0u64);
        let mut rows: Vec<(String, Map<String, Value>, f64, bool)> = Vec::with_capacity(infos.len());
        let mut seen = HashMap::with_capacity(infos.len());
        for a in &infos {
            let done = a.tasks_ok + a.tasks_failed;
            let rate = match self.agent_rates.get(&a.id) {
                Some(&(prev, r)) if dt > 0.0 => r + alpha * ((done.saturating_sub(prev)) as f64 / dt - r),
                Some(&(_, r)) => r,
                None => 0.0,
            };
            seen.insert(a.id.clone(), (done, rate));
            match a.status {
                AgentStatus::Running => totals.0 += 1,
                AgentStatus::Restarting => totals.1 += 1,
                AgentStatus::Stopped => totals.2 += 1,
            }
            totals.3 += a.restarts;
            totals.4 += a.tasks_failed;
            totals.5 += rate;
            totals.6 += done;
            let mut m = Map::new();
            m.insert("region".into(), json!(a.region));
            m.insert("status".into(), json!(status_str(a.status)));
            m.insert("tasks_ok".into(), json!(a.tasks_ok));
            m.insert("tasks_failed".into(), json!(a.tasks_failed));
            put(&mut m, "tasks_per_s", num(rate, 1));
            m.insert("restarts".into(), json!(a.restarts));
            m.insert("mailbox".into(), json!(a.mailbox_depth));
            put(&mut m, "last_error", a.last_error.as_ref().map(|e| json!(e)));
            let notable = a.last_error.is_some() || a.restarts > 0 || a.status != AgentStatus::Running;
            rows.push((a.id.clone(), m, rate, notable));
        }
        self.agent_rates = seen;
        if rows.len() > self.max_agents {
            rows.sort_by(|a, b| b.3.cmp(&a.3).then(b.2.total_cmp(&a.2)));
            rows.truncate(self.max_agents);
        }
        let shown = rows.len();
        let agents: Map<String, Value> = rows.into_iter().map(|(id, m, _, _)| (id, Value::Object(m))).collect();

        // ---- writer and search counters
        let st = self.swarm.store().stats();
        let (search_hist, _) = self.swarm.search_latency_hist();
        let c = Counters {
            at,
            ops: st.ops,
            batches: st.batches,
            commit: st.commit_us_hist.clone(),
            ack: st.ack_us_hist.clone(),
            search: search_hist,
            tasks: totals.6,
        };
        self.ring.push_back(c.clone());
        while self.ring.len() > 2 && at.duration_since(self.ring[1].at) >= PCT_WINDOW {
            self.ring.pop_front();
        }
        let rate_of = |f: fn(&Counters) -> u64, b: Option<&Counters>| {
            b.and_then(|b| {
                let secs = at.duration_since(b.at).as_secs_f64();
                (secs > 0.0).then(|| f(&c).saturating_sub(f(b)) as f64 / secs)
            })
        };
        let r1 = self.back(RATE_WINDOW).cloned();
        let p5 = self.back(PCT_WINDOW).cloned();
        let acked_per_s = rate_of(|c| c.ops, r1.as_ref());
        let tasks_per_s = rate_of(|c| c.tasks, r1.as_ref());
        let search_qps = rate_of(|c| c.search.iter().sum(), r1.as_ref());
        let commit_d = p5.as_ref().map(|b| hist_delta(&c.commit, &b.commit)).unwrap_or_default();
        let ack_d = p5.as_ref().map(|b| hist_delta(&c.ack, &b.ack)).unwrap_or_default();
        let search_d = p5.as_ref().map(|b| hist_delta(&c.search, &b.search)).unwrap_or_default();
        let batch_mean = p5.as_ref().and_then(|b| {
            let n = c.batches.saturating_sub(b.batches);
            (n > 0).then(|| c.ops.saturating_sub(b.ops) as f64 / n as f64)
        });
        let ms = |us: Option<f64>| us.and_then(|u| num(u / 1000.0, 2));

        let mut writer = Map::new();
        writer.insert("queue_depth".into(), json!(st.queue_depth));
        writer.insert("queue_capacity".into(), json!(st.queue_capacity));
        writer.insert("read_queue_depth".into(), json!(st.read_queue_depth));
        writer.insert("batch_last".into(), json!(st.last_batch_size));
        put(&mut writer, "batch_mean", batch_mean.and_then(|b| num(b, 1)));
        put(&mut writer, "commit_p50_ms", ms(pow2_quantile(&commit_d, 0.50)));
        put(&mut writer, "commit_p99_ms", ms(pow2_quantile(&commit_d, 0.99)));
        put(&mut writer, "ack_p99_ms", ms(pow2_quantile(&ack_d, 0.99)));
        put(&mut writer, "acked_per_s", acked_per_s.and_then(|r| num(r, 0)));
        writer.insert("ops_total".into(), json!(st.ops));
        writer.insert("batches_total".into(), json!(st.batches));
        writer.insert("failed_batches".into(), json!(st.failed_batches));
        writer.insert("rejected".into(), json!(st.queue_rejected));
        writer.insert("writer_restarts".into(), json!(st.writer_restarts));

        let mut search = Map::new();
        put(&mut search, "qps", search_qps.and_then(|r| num(r, 1)));
        put(&mut search, "p50_ms", ms(pow2_quantile(&search_d, 0.50)));
        put(&mut search, "p99_ms", ms(pow2_quantile(&search_d, 0.99)));
        search.insert("total".into(), json!(c.search.iter().sum::<u64>()));
        if let Some(s) = &self.search_status {
            put(&mut search, "embedder", s.active_embedder.as_ref().map(|e| json!(e)));
            put(&mut search, "building", s.building_embedder.as_ref().map(|e| json!(e)));
            search.insert("vectors_missing".into(), json!(s.vectors_missing));
            search.insert("pending".into(), json!(s.pending_changes));
            let complete = s.active_embedder.is_some() && s.building_embedder.is_none() && s.vectors_missing == 0 && s.pending_changes == 0;
            search.insert("vectors_complete".into(), json!(complete));
            search.insert("mode".into(), serde_json::to_value(s.default_mode).unwrap_or(json!("lexical")));
            search.insert("cache_entries".into(), json!(s.cache_entries));
            put(&mut search, "last_error", s.last_error.as_ref().map(|e| json!(e)));
        }

        // ---- regions
        let mut regions = Map::new();
        let mut transitions = Vec::new();
        if let Some(ss) = self.swarm.sync_status() {
            for r in ss.regions {
                let partitioned = r.partitioned.unwrap_or(false);
                let status = if partitioned { "partitioned" } else { r.health.as_str() };
                let mut m = Map::new();
                m.insert("status".into(), json!(status));
                m.insert("health".into(), json!(r.health.as_str()));
                put(&mut m, "partitioned", r.partitioned.map(|p| json!(p)));
                put(&mut m, "link_ms", r.link_ms.and_then(|v| num(v, 1)));
                put(&mut m, "push_rtt_ms", r.push_rtt_ms.and_then(|v| num(v, 1)));
                put(&mut m, "rtt_ewma_ms", r.rtt_ewma_ms.and_then(|v| num(v, 1)));
                put(&mut m, "tier", r.performance_tier.map(|t| json!(t)));
                put(&mut m, "lag_p50_ms", r.lag_p50_ms.map(|v| json!(v)));
                put(&mut m, "lag_p99_ms", r.lag_p99_ms.map(|v| json!(v)));
                m.insert("lag_ms".into(), json!(r.lag_ms));
                m.insert("changes_queued".into(), json!(r.lag_rows));
                m.insert("conflicts".into(), json!(r.conflicts));
                m.insert("pushed_rows".into(), json!(r.pushed_rows));
                put(&mut m, "push_rows_per_s", num(r.push_rows_per_sec, 0));
                m.insert("applied_rows".into(), json!(r.applied_rows));
                m.insert("errors".into(), json!(r.errors));
                put(&mut m, "last_error", r.last_error.as_ref().map(|e| json!(e)));
                put(&mut m, "last_sync_at", r.last_sync_at.map(|t| json!(t)));
                let now = (status.to_string(), partitioned);
                match self.region_prev.get(&r.region) {
                    Some(prev) if *prev != now => transitions.push((r.region.clone(), prev.0.clone(), now.0.clone())),
                    _ => {}
                }
                self.region_prev.insert(r.region.clone(), now);
                regions.insert(r.region, Value::Object(m));
            }
        }
        for (name, from, to) in transitions {
            let level = if to == "healthy" { "info" } else { "warn" };
            self.log(level, format!("region {name}: {from} → {to}"));
        }

        // ---- chart point, once a second
        let point = if self.last_point.is_none_or(|t| at.duration_since(t) >= Duration::from_millis(990)) {
            self.last_point = Some(at);
            let mut p = Map::new();
            p.insert("t".into(), json!(now_ms()));
            put(&mut p, "writes_s", acked_per_s.and_then(|r| num(r, 0)));
            put(&mut p, "tasks_s", tasks_per_s.and_then(|r| num(r, 1)));
            put(&mut p, "search_qps", search_qps.and_then(|r| num(r, 1)));
            put(&mut p, "commit_p99_ms", ms(pow2_quantile(&commit_d, 0.99)));
            put(&mut p, "search_p99_ms", ms(pow2_quantile(&search_d, 0.99)));
            p.insert("queue_depth".into(), json!(st.queue_depth));
            let per = |k: &str| -> Map<String, Value> {
                regions
                    .iter()
                    .filter_map(|(n, v)| v.get(k).map(|x| (n.clone(), x.clone())))
                    .collect()
            };
            p.insert("queued".into(), Value::Object(per("changes_queued")));
            p.insert("lag_p99".into(), Value::Object(per("lag_p99_ms")));
            Some(Value::Object(p))
        } else {
            None
        };

        let mut totals_m = Map::new();
        totals_m.insert("total".into(), json!(infos.len()));
        totals_m.insert("shown".into(), json!(shown));
        totals_m.insert("running".into(), json!(totals.0));
        totals_m.insert("restarting".into(), json!(totals.1));
        totals_m.insert("stopped".into(), json!(totals.2));
        totals_m.insert("restarts".into(), json!(totals.3));
        totals_m.insert("tasks_failed".into(), json!(totals.4));
        totals_m.insert("tasks_done".into(), json!(totals.6));
        put(&mut totals_m, "tasks_per_s", tasks_per_s.and_then(|r| num(r, 1)));

        let state = json!({
            "v": 1,
            "ts": now_ms(),
            "node": self.swarm.store().origin(),
            "db": self.swarm.store().config().path.display().to_string(),
            "swarm": if shut { "shut down" } else { "running" },
            "uptime_s": self.started.elapsed().as_secs(),
            "agents": agents,
            "agent_totals": totals_m,
            "regions": regions,
            "writer": writer,
            "search": search,
            "seed": self.seed,
            "log": self.log.iter().cloned().collect::<Vec<_>>(),
            "dashboard": {"clients": clients, "dropped_clients": dropped_clients},
        });
        (state, point)
    }
}

/// JSON Merge Patch (RFC 7386) that turns `old` into `new`; `None` when equal.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut p = Map::new();
            for (k, v) in b {
                match a.get(k) {
                    Some(o) => {
                        if let Some(d) = merge_diff(o, v) {
                            p.insert(k.clone(), d);
                        }
                    }
                    None => {
                        p.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in a.keys() {
                if !b.contains_key(k) {
                    p.insert(k.clone(), Value::Null);
                }
            }
            (!p.is_empty()).then_some(Value::Object(p))
        }
        (a, b) if a == b => None,
        (_, b) => Some(b.clone()),
    }
}

/// Applies a JSON Merge Patch (what the page does with each delta).
pub fn merge_apply(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_apply(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_pow2_buckets() {
        assert_eq!(pow2_quantile(&[0, 0, 0], 0.5), None);
        // 100 values in (512, 1024] µs.
        let mut h = vec![0u64; 11];
        h[10] = 100;
        let p50 = pow2_quantile(&h, 0.5).unwrap();
        assert!(p50 > 512.0 && p50 <= 1024.0, "{p50}");
        assert_eq!(pow2_quantile(&h, 1.0), Some(1024.0));
        h[1] = 100;
        assert!(pow2_quantile(&h, 0.25).unwrap() <= 2.0);
    }

    #[test]
    fn merge_patch_round_trips() {
        let a = json!({"ts": 1, "agents": {"a": {"tasks": 1, "err": "x"}, "b": {"tasks": 2}}, "rows": [[1, null]]});
        let b = json!({"ts": 2, "agents": {"a": {"tasks": 3}, "c": {"tasks": 0}}, "rows": [[1, null], [2, 3]]});
        let p = merge_diff(&a, &b).unwrap();
        assert_eq!(p["agents"]["b"], Value::Null);
        assert_eq!(p["agents"]["a"]["err"], Value::Null);
        assert!(p.get("rows").is_some());
        let mut x = a.clone();
        merge_apply(&mut x, &p);
        assert_eq!(x, b);
        assert_eq!(merge_diff(&b, &b), None);
        assert_eq!(num(f64::NAN, 1), None);
        assert_eq!(num(1.26, 1), Some(json!(1.3)));
    }
}
