//! `SyncActor`: one per region. Pushes the home change log in atomic, pipelined
//! batches; pulls the region's log and applies it through the storage actor; probes
//! health; publishes status for the router and `sync_status`.
//!
//! Mailbox: ractor mailboxes are unbounded, so this actor bounds its own input:
//! `Wake` is coalesced (at most one queued, see [`RegionShared::wake_pending`]), `Tick`
//! comes from one interval timer, `LingerDone` from at most one pending timer, and
//! completions come only from tasks the actor started (at most `window` pushes, each
//! with one `Cut`, + one pull + one probe + one status write).
//!
//! New commits are noticed by event, not by polling: the storage writer's commit
//! event raises the shared `home_max` and sends a coalesced `Wake`; a partial batch held
//! back by `push_linger` is sent by its own timer when the linger ends. Each batch is
//! cut by rows (see [`crate::home::cut_batch`]) by its push task, which reports the
//! cut before reading the rows, so the next batch can start meanwhile.
//!
//! Ordering and delivery: batches cover `_changes` ranges `(from, to]`. Up to `window`
//! are in flight; they may be applied out of order (LWW makes that harmless). The
//! acked cursor advances only over the contiguous prefix of acked ranges; it is
//! persisted in `_sync_cursors` after the ack (monotonic `MAX`), so a crash re-sends
//! at most the unpersisted tail: at-least-once delivery, exactly-once effect. On any
//! push failure every range after the acked cursor is re-sent (an epoch counter makes
//! late replies of the old attempt harmless).

use crate::config::SyncConfig;
use crate::error::SyncError;
use crate::home::{self, ApplyStats};
use crate::link::{PushBatch, RegionLink};
use crate::router::{performance_tier, Health, HealthTracker, RouteInfo, Router};
use crate::row::{Registry, RowVersion};
use edgeswarm_core::record::now_millis;
use edgeswarm_store::{OpOutput, SqlValue, Store};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::Instrument;

/// Per-region status, as shown by `sync_status`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RegionStatus {
    /// Region name.
    pub region: String,
    /// Configured url, redacted (a token in it is never shown).
    pub url: String,
    /// How the server certificate is verified: none (file: or http://), the system
    /// roots, or the region's `ca_file`.
    pub tls: crate::link::TlsMode,
    /// What the server reported itself as (`tursodb 0.7.0`, sqld's `/version`), once
    /// the link asked; `None` for file: regions and servers that do not say.
    pub server_version: Option<String>,
    /// Health state.
    pub health: Health,
    /// RTT EWMA in ms (None before the first sample).
    pub rtt_ewma_ms: Option<f64>,
    /// The seed's tier for that latency.
    pub performance_tier: Option<&'static str>,
    /// Home `_changes` entries not yet acked by the region.
    pub lag_rows: i64,
    /// How long the region has been behind (0 when caught up), in ms.
    pub lag_ms: u64,
    /// Highest `_changes.seq` the region holds (contiguous).
    pub acked_seq: i64,
    /// Region log position this node has applied up to.
    pub pull_seq: i64,
    /// Row versions pushed and acked.
    pub pushed_rows: u64,
    /// Batches pushed and acked.
    pub pushed_batches: u64,
    /// Row versions pulled from other nodes and applied (won LWW).
    pub applied_rows: u64,
    /// Conflicts resolved while applying pulls (losers recorded in `conflicts`).
    pub conflicts: u64,
    /// Push throughput over the last status interval, rows/s.
    pub push_rows_per_sec: f64,
    /// Failed requests since start.
    pub errors: u64,
    /// The last failure, with what to do about it (every error message ends with the
    /// fix). Kept after the region recovers, so a past failure stays explainable.
    pub last_error: Option<String>,
    /// Last successful push or pull (ms since epoch).
    pub last_sync_at: Option<i64>,
    /// Replication lag of acked rows (commit to region ack), p50/p99 in ms, over the
    /// last 4,096 rows. Computed when the status is read (`sync_status`), not on every
    /// ack: sorting the ring on each of hundreds of acks a second cost real CPU.
    pub lag_p50_ms: Option<u64>,
    /// See `lag_p50_ms`.
    pub lag_p99_ms: Option<u64>,
}

/// State shared between a region's actor and the handle (read without messaging).
pub struct RegionShared {
    /// Region name.
    pub name: String,
    /// Latest status snapshot.
    pub status: Mutex<RegionStatus>,
    /// Highest contiguous `_changes.seq` acked by the region (for consistency waits).
    pub acked: watch::Sender<i64>,
    /// Set while a `Wake` is queued, so wakes never pile up in the mailbox.
    pub wake_pending: AtomicBool,
    /// Recent per-row replication lags (ms), a ring of 4,096.
    pub lags: Mutex<LagRing>,
    /// Set when the region is being removed from a running system
    /// ([`crate::SyncHandle::remove_region`]): the actor may still drain pushes, but
    /// it no longer offers itself to the router or writes `edge_replicas`.
    pub retired: AtomicBool,
}

/// A fixed ring of recent lag samples.
#[derive(Debug, Default)]
pub struct LagRing {
    buf: Vec<u64>,
    next: usize,
}

impl LagRing {
    const CAP: usize = 4096;
    /// Adds a sample.
    pub fn push(&mut self, v: u64) {
        if self.buf.len() < Self::CAP {
            self.buf.push(v);
        } else {
            self.buf[self.next] = v;
        }
        self.next = (self.next + 1) % Self::CAP;
    }
    /// The q-quantile (0..=1) of the samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.buf.is_empty() {
            return None;
        }
        let mut v = self.buf.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v.get(i).copied()
    }
    /// Drops all samples.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.next = 0;
    }
}

/// Read-only context of one region's actor.
pub struct RegionCtx {
    /// Region name.
    pub name: String,
    /// How to reach it.
    pub link: Arc<dyn RegionLink>,
    /// The home store.
    pub store: Store,
    /// Replicated tables.
    pub registry: Arc<Registry>,
    /// Tuning.
    pub cfg: SyncConfig,
    /// Shared status and ack watch.
    pub shared: Arc<RegionShared>,
    /// Highest `_changes.seq` known at home (shared by all actors).
    pub home_max: Arc<AtomicI64>,
    /// Router to publish health to.
    pub router: Arc<Router>,
    /// Notified on every ack advance (consistency waits).
    pub acked_notify: Arc<Notify>,
    /// `source_region` of pushes / `target_region` of pulls.
    pub home_region: String,
    /// This node's id.
    pub origin: String,
    /// Configured latency (router prior).
    pub configured_latency_ms: u64,
    /// Position in configuration.
    pub order: usize,
}

/// The actor: its struct is the read-only context.
pub struct SyncActor {
    /// Read-only configuration and handles.
    pub ctx: Arc<RegionCtx>,
}

/// Messages of a SyncActor. Built only by this crate.
pub enum SyncMsg {
    /// New commits at home (coalesced).
    Wake,
    /// Timer tick.
    Tick,
    /// A partial batch's `push_linger` is over (one timer at a time).
    LingerDone,
    /// A push task found where its batch ends (`to`), before reading the rows: the
    /// next batch can start from there while this one is read and shipped.
    Cut { epoch: u64, from: i64, to: i64 },
    /// A pushed batch finished (`to` is where it ended; the cut, if `Cut` was lost).
    PushDone {
        epoch: u64,
        from: i64,
        to: i64,
        rows: usize,
        change_millis: Vec<u64>,
        txid: String,
        result: Result<Duration, SyncError>,
    },
    /// A pull finished: new cursor, whether the page was full, what was applied.
    PullDone {
        result: Result<(i64, bool, ApplyStats, Duration), SyncError>,
    },
    /// A probe finished.
    ProbeDone { result: Result<Duration, SyncError> },
    /// A status/cursor write finished.
    Persisted,
}

/// Mutable state of a SyncActor.
pub struct SyncState {
    epoch: u64,
    acked: i64,
    next_send: i64,
    inflight: BTreeMap<i64, (i64, bool)>,
    /// `from` of the in-flight batch whose end is not known yet (its task is cutting
    /// it by rows); no further batch starts until it is.
    cutting: Option<i64>,
    /// A `LingerDone` timer is pending.
    linger_timer: bool,
    /// The last batch cut was full (its row budget reached): a backlog is draining,
    /// so the next partial batch need not linger.
    last_full: bool,
    /// Row budget of the next batch: starts at [`SLOW_START_ROWS`] (after start and
    /// after a failure) and doubles per batch up to `batch_rows`.
    budget: usize,
    retry_at: Option<Instant>,
    last_dispatch: Instant,
    pull_seq: i64,
    pull_inflight: bool,
    next_pull: Instant,
    probe_inflight: bool,
    health: HealthTracker,
    last_ok: Instant,
    caught_up_at: Instant,
    next_status: Instant,
    status_inflight: bool,
    pushed_rows: u64,
    pushed_batches: u64,
    applied_rows: u64,
    conflicts: u64,
    rows_at_last_status: u64,
    last_status_at: Instant,
    rate: f64,
    last_sync_at: Option<i64>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

fn tx_err(e: edgeswarm_store::StoreError) -> SyncError {
    SyncError::Store(e)
}

impl SyncActor {
    fn publish(&self, st: &SyncState) {
        let c = &self.ctx;
        let home = c.home_max.load(Ordering::SeqCst);
        let lag_rows = (home - st.acked).max(0);
        let lag_ms = if lag_rows == 0 {
            0
        } else {
            st.caught_up_at.elapsed().as_millis() as u64
        };
        let rtt = st.health.rtt_ewma_ms;
        {
            let mut s = c.shared.status.lock().unwrap_or_else(|p| p.into_inner());
            s.health = st.health.health;
            s.rtt_ewma_ms = rtt;
            s.performance_tier = rtt.map(performance_tier);
            s.lag_rows = lag_rows;
            s.lag_ms = lag_ms;
            s.acked_seq = st.acked;
            s.pull_seq = st.pull_seq;
            s.pushed_rows = st.pushed_rows;
            s.pushed_batches = st.pushed_batches;
            s.applied_rows = st.applied_rows;
            s.conflicts = st.conflicts;
            s.push_rows_per_sec = st.rate;
            s.errors = st.health.errors_total;
            s.last_error = st.health.last_error.clone();
            s.last_sync_at = st.last_sync_at;
        }
        if c.shared.retired.load(Ordering::SeqCst) {
            c.router.remove(&c.name);
            return;
        }
        c.router.update(
            &c.name,
            RouteInfo {
                health: st.health.health,
                rtt_ms: rtt.unwrap_or(c.configured_latency_ms as f64),
                lag_ms,
                order: c.order,
            },
        );
    }

    fn can_talk(&self, st: &SyncState) -> bool {
        st.health.health != Health::Down
    }

    fn maybe_push(&self, me: &ActorRef<SyncMsg>, st: &mut SyncState) {
        if !self.can_talk(st) {
            return;
        }
        if let Some(t) = st.retry_at {
            if Instant::now() < t {
                return;
            }
            st.retry_at = None;
        }
        let home = self.ctx.home_max.load(Ordering::SeqCst);
        let now = Instant::now();
        while st.cutting.is_none() && st.inflight.len() < self.ctx.cfg.window.max(1) && st.next_send < home {
            // Nagle-like: a partial batch waits up to `push_linger` while another batch
            // is in flight, so a trickle of commits does not become one tiny batch each.
            // Only while trickling: right after a full batch (a backlog draining) the
            // rest goes at once, or the tail of every backlog would wait the linger.
            // (An entry is at least one row, so fewer entries than the budget may still
            // be a full batch of rows; such a batch at most waits the linger.)
            let partial = ((home - st.next_send) as usize) < st.budget.min(self.ctx.cfg.batch_rows);
            let waited = now.duration_since(st.last_dispatch);
            if partial && !st.last_full && !st.inflight.is_empty() && waited < self.ctx.cfg.push_linger {
                // Come back exactly when the linger ends (not on the next tick).
                if !st.linger_timer {
                    st.linger_timer = true;
                    // The timer task runs detached; its handle is not needed.
                    drop(me.send_after(self.ctx.cfg.push_linger - waited, || SyncMsg::LingerDone));
                }
                break;
            }
            st.last_dispatch = now;
            // The task cuts the batch at `batch_rows` rows (a rowid-range entry counts
            // as the rows it covers) and reports the end with `Cut`.
            let from = st.next_send;
            st.cutting = Some(from);
            st.inflight.insert(from, (home, false));
            let max = self.ctx.cfg.batch_rows.max(1);
            let budget = st.budget.min(max);
            st.budget = (budget * 2).min(max);
            self.spawn_push(me.clone(), st.epoch, from, home, budget);
        }
    }

    /// Records where the batch starting at `from` ends; idempotent.
    fn apply_cut(st: &mut SyncState, from: i64, to: i64) {
        let mut full = false;
        if let Some(e) = st.inflight.get_mut(&from) {
            // Cut before the limit it was given: the row budget was reached.
            full = to < e.0;
            e.0 = to;
        }
        if st.cutting == Some(from) {
            st.cutting = None;
            st.next_send = to;
            st.last_full = full;
        }
    }

    fn spawn_push(&self, me: ActorRef<SyncMsg>, epoch: u64, from: i64, limit: i64, budget: usize) {
        let c = self.ctx.clone();
        let span = tracing::debug_span!("push_batch", region = %c.name, from, limit);
        tokio::spawn(
            async move {
                let reg = c.registry.clone();
                let txid = edgeswarm_core::new_id();
                let (id, pusher) = (txid.clone(), c.origin.clone());
                let per_statement = c.link.rows_per_statement();
                let cut_to = me.clone();
                // Cut the batch, then read the rows and build the region statements, on
                // a reader thread.
                let read = c
                    .store
                    .read(move |r| {
                        let as_store = |e: SyncError| match e {
                            SyncError::Store(s) => s,
                            other => edgeswarm_store::StoreError::Sql(other.to_string()),
                        };
                        let to = home::cut_batch(r, &reg, from, limit, budget).map_err(as_store)?;
                        let _ = cut_to.cast(SyncMsg::Cut { epoch, from, to });
                        let b = home::read_batch(r, &reg, from, to).map_err(as_store)?;
                        if b.rows.is_empty() {
                            return Ok((to, None, b.change_millis));
                        }
                        let tables = b
                            .rows
                            .iter()
                            .filter_map(|r| reg.get(&r.tbl).map(|s| (r.tbl.clone(), s)))
                            .collect::<HashMap<_, _>>();
                        Ok((to, Some(PushBatch::new(id, pusher, b.rows, tables, per_statement)), b.change_millis))
                    })
                    .await;
                let (to, rows, change_millis, result) = match read {
                    Err(e) => (from, 0, vec![], Err(tx_err(e))),
                    Ok((to, None, millis)) => (to, 0, millis, Ok(Duration::ZERO)),
                    // The actor stopped (region removed, or shutdown) while the batch
                    // was read: nothing new goes out after a stop.
                    Ok((to, Some(_), millis)) if me.get_status() != ractor::ActorStatus::Running => (to, 0, millis, Err(SyncError::Closed)),
                    Ok((to, Some(batch), millis)) => {
                        let n = batch.rows.len();
                        let t0 = Instant::now();
                        let r = c.link.push(&batch).await.map(|_| t0.elapsed());
                        // Free the batch here, not on the actor.
                        drop(batch);
                        (to, n, millis, r)
                    }
                };
                let _ = me.cast(SyncMsg::PushDone {
                    epoch,
                    from,
                    to,
                    rows,
                    change_millis,
                    txid,
                    result,
                });
            }
            .instrument(span),
        );
    }

    fn spawn_pull(&self, me: ActorRef<SyncMsg>, after: i64) {
        let c = self.ctx.clone();
        let span = tracing::debug_span!("pull_batch", region = %c.name, after);
        tokio::spawn(
            async move {
                let t0 = Instant::now();
                let res = async {
                    let page = c.link.pull(after, &c.origin, c.cfg.pull_rows.max(1), &c.registry).await?;
                    let rtt = t0.elapsed();
                    let (full, last, entries) = (page.full, page.last, page.entries);
                    // Each wanted entry comes with the version it names (or, from a
                    // region written before superseded versions were kept, possibly a
                    // newer one: then several entries may carry the same version, and
                    // one may be this node's own, which it holds already).
                    let mut seen = HashSet::new();
                    let mut versions: Vec<RowVersion> = Vec::new();
                    for e in entries {
                        let (Some(vals), Some(spec)) = (e.row, c.registry.get(&e.tbl)) else {
                            continue;
                        };
                        if let Some(v) = RowVersion::from_row(spec.name.clone(), e.row_id, spec.columns.clone(), vals) {
                            if v.origin != c.origin && seen.insert((v.tbl.clone(), v.row_id.clone(), v.hlc, v.origin.clone())) {
                                versions.push(v);
                            }
                        }
                    }
                    let mut stats = ApplyStats::default();
                    if !versions.is_empty() {
                        let reg = c.registry.clone();
                        let (region, home_region) = (c.name.clone(), c.home_region.clone());
                        let latency = rtt.as_secs_f64() * 1000.0;
                        let n = versions.len();
                        let out = c
                            .store
                            .transact(move |ctx| {
                                let st = home::apply_remote(ctx, &reg, &versions)?;
                                let now = now_millis();
                                ctx.execute(CURSOR_UPSERT, vec![region.clone().into(), 0i64.into(), last.into(), now.into()])?;
                                ctx.execute(
                                    DT_INSERT,
                                    vec![
                                        edgeswarm_core::new_id().into(),
                                        region.into(),
                                        home_region.into(),
                                        "eventual".into(),
                                        (n as i64).into(),
                                        (st.conflicts as i64).into(),
                                        latency.into(),
                                        "applied".into(),
                                        now.into(),
                                    ],
                                )?;
                                Ok(OpOutput::Json(serde_json::to_value(st).unwrap_or_default()))
                            })
                            .await
                            .map_err(tx_err)?;
                        if let OpOutput::Json(v) = out {
                            stats.applied = v["applied"].as_u64().unwrap_or(0) as usize;
                            stats.conflicts = v["conflicts"].as_u64().unwrap_or(0) as usize;
                        }
                    }
                    Ok::<_, SyncError>((last, full, stats, rtt))
                }
                .await;
                let _ = me.cast(SyncMsg::PullDone { result: res });
            }
            .instrument(span),
        );
    }

    fn spawn_probe(&self, me: ActorRef<SyncMsg>) {
        let c = self.ctx.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = c.link.ping().await.map(|_| t0.elapsed());
            let _ = me.cast(SyncMsg::ProbeDone { result: r });
        });
    }

    fn spawn_status(&self, me: ActorRef<SyncMsg>, st: &SyncState) {
        let c = self.ctx.clone();
        let s = c.shared.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let url = c.link.url().to_string();
        let (acked, pull) = (st.acked, st.pull_seq);
        let shared = c.shared.clone();
        tokio::spawn(async move {
            let region = c.name.clone();
            let r = c
                .store
                .transact(move |ctx| {
                    // Checked on the writer, so it orders with the removal's DELETE.
                    if shared.retired.load(Ordering::SeqCst) {
                        return Ok(OpOutput::Unit);
                    }
                    ctx.execute(
                        "INSERT INTO edge_replicas (region, url, status, avg_latency_ms, performance_tier, lag_rows, lag_ms, last_sync_at, errors) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(region) DO UPDATE SET url = excluded.url, status = excluded.status, \
                         avg_latency_ms = COALESCE(excluded.avg_latency_ms, edge_replicas.avg_latency_ms), \
                         performance_tier = COALESCE(excluded.performance_tier, edge_replicas.performance_tier), lag_rows = excluded.lag_rows, \
                         lag_ms = excluded.lag_ms, last_sync_at = COALESCE(excluded.last_sync_at, edge_replicas.last_sync_at), errors = excluded.errors",
                        vec![
                            region.clone().into(),
                            url.into(),
                            s.health.as_str().into(),
                            s.rtt_ewma_ms.map(|v| (v * 10.0).round() / 10.0).into(),
                            s.performance_tier.map(str::to_string).into(),
                            s.lag_rows.into(),
                            (s.lag_ms as i64).into(),
                            s.last_sync_at.into(),
                            (s.errors as i64).into(),
                        ],
                    )?;
                    ctx.execute(CURSOR_UPSERT, vec![region.into(), acked.into(), pull.into(), now_millis().into()])?;
                    Ok(OpOutput::Unit)
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(region = %c.name, error = %e, "could not record region status");
            }
            let _ = me.cast(SyncMsg::Persisted);
        });
    }

    fn on_failure(&self, st: &mut SyncState, e: &SyncError) {
        let now = Instant::now();
        let went_down = st.health.failure(now, e.to_string());
        if went_down {
            tracing::warn!(region = %self.ctx.name, error = %e, "region is down; writes stay queued in the change log");
        } else {
            tracing::debug!(region = %self.ctx.name, error = %e, "region request failed");
        }
    }

    fn on_success(&self, st: &mut SyncState, rtt: Option<Duration>) {
        let was = st.health.health;
        st.health.success(Instant::now(), rtt);
        st.last_ok = Instant::now();
        if was == Health::Down {
            tracing::info!(region = %self.ctx.name, "region is back; draining the queued changes");
        }
    }
}

/// Row budget of the first batch after start or a failure; each further batch may
/// carry twice as many rows, up to `batch_rows`. A backlog then starts with a few small
/// batches, so reading at home, the network and applying in the region overlap from
/// the start (a fresh region's 500 rows: three batches instead of one that is read,
/// then shipped, then applied); a long backlog soon moves in full batches.
const SLOW_START_ROWS: usize = 128;

/// Upserts both cursors monotonically.
const CURSOR_UPSERT: &str = "INSERT INTO _sync_cursors (region, push_seq, pull_seq, updated_at) VALUES (?1, ?2, ?3, ?4) \
    ON CONFLICT(region) DO UPDATE SET push_seq = MAX(push_seq, excluded.push_seq), pull_seq = MAX(pull_seq, excluded.pull_seq), updated_at = excluded.updated_at";

/// One `distributed_transactions` row.
const DT_INSERT: &str = "INSERT INTO distributed_transactions (transaction_id, source_region, target_region, consistency_level, conflict_resolution, rows, conflicts, latency_ms, status, created_at) \
    VALUES (?1, ?2, ?3, ?4, 'last_writer_wins', ?5, ?6, ?7, ?8, ?9) ON CONFLICT(transaction_id) DO NOTHING";

impl Actor for SyncActor {
    type Msg = SyncMsg;
    type State = SyncState;
    type Arguments = (i64, i64);

    async fn pre_start(&self, me: ActorRef<Self::Msg>, (push_seq, pull_seq): (i64, i64)) -> Result<Self::State, ActorProcessingErr> {
        let now = Instant::now();
        let cfg = &self.ctx.cfg;
        let timer = me.send_interval(cfg.tick, || SyncMsg::Tick);
        let st = SyncState {
            epoch: 0,
            acked: push_seq,
            next_send: push_seq,
            inflight: BTreeMap::new(),
            cutting: None,
            linger_timer: false,
            last_full: false,
            budget: SLOW_START_ROWS,
            retry_at: None,
            last_dispatch: now,
            pull_seq,
            pull_inflight: false,
            next_pull: now,
            probe_inflight: false,
            health: HealthTracker::new(now, cfg.rtt_alpha, cfg.down_after, cfg.probe_interval, cfg.max_probe_backoff),
            last_ok: now,
            caught_up_at: now,
            next_status: now,
            status_inflight: false,
            pushed_rows: 0,
            pushed_batches: 0,
            applied_rows: 0,
            conflicts: 0,
            rows_at_last_status: 0,
            last_status_at: now,
            rate: 0.0,
            last_sync_at: None,
            timer: Some(timer),
        };
        self.ctx.shared.acked.send_replace(push_seq);
        self.publish(&st);
        // Make sure the region has the tables (a failure just marks it degraded).
        let _ = me.cast(SyncMsg::Tick);
        Ok(st)
    }

    async fn post_stop(&self, _me: ActorRef<Self::Msg>, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.timer.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(&self, me: ActorRef<Self::Msg>, msg: Self::Msg, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
        let _span = tracing::trace_span!("sync_actor", region = %self.ctx.name).entered();
        match msg {
            SyncMsg::Wake => {
                self.ctx.shared.wake_pending.store(false, Ordering::SeqCst);
                self.maybe_push(&me, st);
            }
            SyncMsg::LingerDone => {
                st.linger_timer = false;
                self.maybe_push(&me, st);
            }
            SyncMsg::Tick => {
                let now = Instant::now();
                if st.acked >= self.ctx.home_max.load(Ordering::SeqCst) {
                    st.caught_up_at = now;
                }
                if self.can_talk(st) {
                    self.maybe_push(&me, st);
                    if !st.pull_inflight && now >= st.next_pull {
                        st.pull_inflight = true;
                        self.spawn_pull(me.clone(), st.pull_seq);
                    }
                    let idle = now.duration_since(st.last_ok) >= self.ctx.cfg.probe_interval;
                    if idle && !st.probe_inflight && now >= st.health.next_probe {
                        st.probe_inflight = true;
                        st.health.next_probe = now + self.ctx.cfg.probe_interval;
                        self.spawn_probe(me.clone());
                    }
                } else if !st.probe_inflight && now >= st.health.next_probe {
                    st.probe_inflight = true;
                    self.spawn_probe(me.clone());
                }
                if now >= st.next_status && !st.status_inflight {
                    let dt = now.duration_since(st.last_status_at).as_secs_f64();
                    if dt > 0.0 {
                        st.rate = (st.pushed_rows - st.rows_at_last_status) as f64 / dt;
                    }
                    st.rows_at_last_status = st.pushed_rows;
                    st.last_status_at = now;
                    st.next_status = now + self.ctx.cfg.status_interval;
                    st.status_inflight = true;
                    self.publish(st);
                    self.spawn_status(me.clone(), st);
                }
            }
            SyncMsg::Cut { epoch, from, to } => {
                if epoch == st.epoch {
                    Self::apply_cut(st, from, to);
                    self.maybe_push(&me, st);
                }
            }
            SyncMsg::PushDone {
                epoch,
                from,
                to,
                rows,
                change_millis,
                txid,
                result,
            } => {
                if epoch != st.epoch {
                    return Ok(());
                }
                match result {
                    Ok(rtt) => {
                        Self::apply_cut(st, from, to);
                        if rows > 0 {
                            self.on_success(st, Some(rtt));
                        }
                        if let Some(e) = st.inflight.get_mut(&from) {
                            e.1 = true;
                        }
                        let before = st.acked;
                        while let Some((&f, &(t, done))) = st.inflight.iter().next() {
                            if !done || f != st.acked {
                                break;
                            }
                            st.inflight.remove(&f);
                            st.acked = t;
                        }
                        if rows > 0 {
                            st.pushed_rows += rows as u64;
                            st.pushed_batches += 1;
                            st.last_sync_at = Some(now_millis());
                            let now = now_millis() as u64;
                            let mut l = self.ctx.shared.lags.lock().unwrap_or_else(|p| p.into_inner());
                            for m in &change_millis {
                                l.push(now.saturating_sub(*m));
                            }
                        }
                        if st.acked != before {
                            self.ctx.shared.acked.send_replace(st.acked);
                            self.ctx.acked_notify.notify_waiters();
                            if st.acked >= self.ctx.home_max.load(Ordering::SeqCst) {
                                st.caught_up_at = Instant::now();
                            }
                        }
                        if rows > 0 || self.ctx.cfg.record_empty_batches {
                            let c = self.ctx.clone();
                            let acked = st.acked;
                            let latency = rtt.as_secs_f64() * 1000.0;
                            tokio::spawn(async move {
                                let (region, home_region) = (c.name.clone(), c.home_region.clone());
                                let r = c
                                    .store
                                    .transact(move |ctx| {
                                        let now = now_millis();
                                        ctx.execute(CURSOR_UPSERT, vec![region.clone().into(), acked.into(), 0i64.into(), now.into()])?;
                                        ctx.execute(
                                            DT_INSERT,
                                            vec![
                                                txid.into(),
                                                home_region.into(),
                                                region.into(),
                                                "eventual".into(),
                                                (rows as i64).into(),
                                                0i64.into(),
                                                SqlValue::Real(latency),
                                                "committed".into(),
                                                now.into(),
                                            ],
                                        )?;
                                        Ok(OpOutput::Unit)
                                    })
                                    .await;
                                if let Err(e) = r {
                                    tracing::warn!(region = %c.name, error = %e, "could not persist the push cursor");
                                }
                            });
                        }
                    }
                    Err(e) => {
                        self.on_failure(st, &e);
                        st.epoch += 1;
                        st.inflight.clear();
                        st.cutting = None;
                        st.budget = SLOW_START_ROWS;
                        st.next_send = st.acked;
                        st.retry_at = Some(Instant::now() + st.health.retry_delay());
                    }
                }
                self.maybe_push(&me, st);
                self.publish(st);
            }
            SyncMsg::PullDone { result } => {
                st.pull_inflight = false;
                match result {
                    Ok((last, full, stats, rtt)) => {
                        self.on_success(st, Some(rtt));
                        if last > st.pull_seq {
                            st.pull_seq = last;
                        }
                        st.applied_rows += stats.applied as u64;
                        st.conflicts += stats.conflicts as u64;
                        if stats.applied > 0 {
                            st.last_sync_at = Some(now_millis());
                        }
                        st.next_pull = if full {
                            Instant::now()
                        } else {
                            Instant::now() + self.ctx.cfg.pull_interval
                        };
                        if full && self.can_talk(st) {
                            st.pull_inflight = true;
                            self.spawn_pull(me.clone(), st.pull_seq);
                        }
                    }
                    Err(e) => {
                        self.on_failure(st, &e);
                        st.next_pull = Instant::now() + self.ctx.cfg.pull_interval;
                    }
                }
                self.publish(st);
            }
            SyncMsg::ProbeDone { result } => {
                st.probe_inflight = false;
                match result {
                    Ok(rtt) => {
                        let was_down = st.health.health == Health::Down;
                        self.on_success(st, Some(rtt));
                        if was_down {
                            st.epoch += 1;
                            st.inflight.clear();
                            st.cutting = None;
                            st.budget = SLOW_START_ROWS;
                            st.next_send = st.acked;
                            st.retry_at = None;
                            st.next_pull = Instant::now();
                            self.maybe_push(&me, st);
                        }
                    }
                    Err(e) => {
                        self.on_failure(st, &e);
                        if st.health.health == Health::Down {
                            st.epoch += 1;
                            st.inflight.clear();
                            st.cutting = None;
                            st.budget = SLOW_START_ROWS;
                            st.next_send = st.acked;
                        }
                    }
                }
                self.publish(st);
            }
            SyncMsg::Persisted => {
                st.status_inflight = false;
            }
        }
        Ok(())
    }
}
