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
use crate::park::{self, Direction, Parked, Reason};
use crate::router::{performance_tier, Health, HealthTracker, RouteInfo, Router};
use crate::row::{Registry, RowVersion};
use edgeswarm_core::record::now_millis;
use edgeswarm_store::{SqlValue, Store};
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
    /// Round trip of whole pushes (send a batch, the region commits it, ack), EWMA in
    /// ms: what a write waits for beyond the link itself.
    pub push_rtt_ms: Option<f64>,
    /// The link's own latency: the smallest round trip among the last
    /// [`LINK_SAMPLES`] requests of any kind (as TCP estimates a path's RTT: the minimum
    /// filters out queueing and work at either end).
    pub link_ms: Option<f64>,
    /// Versions parked for this region (`_sync_parked`): rows one side refused, and
    /// far-future versions waiting for the wall clock. Retried on later pulls; see
    /// [`crate::park`].
    pub parked: i64,
    /// The most recently tried parked version, with its error.
    pub parked_latest: Option<crate::park::ParkedInfo>,
    /// Times this node found the region wiped or restored (its identity changed, or its
    /// log restarted below this node's pull cursor) and re-seeded it from home.
    pub reseeds: u64,
    /// The region's identity (`_region_meta.epoch`) as this node last saw it.
    pub epoch: Option<String>,
    /// The simulated link's partition switch (`None` for HTTP regions, which have none).
    /// Filled in by `sync_status`.
    pub partitioned: Option<bool>,
}

/// How many recent round trips `RegionStatus::link_ms` takes its minimum over.
pub const LINK_SAMPLES: usize = 16;

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
    /// The region's identity as home last recorded it (`_sync_regions`) and the
    /// highest region log position seen: `None` until loaded, then the epoch (`None`
    /// if home never saw one) and the position. Async lock: the pull task holds it
    /// across the home read.
    pub epoch: tokio::sync::Mutex<Option<(Option<String>, i64)>>,
    /// The highest region log position seen (copy of the one under `epoch`, for the
    /// status write to persist without taking the async lock).
    pub seen_end: AtomicI64,
    /// Re-seeds so far: a cursor write captured before a re-seed carries an older
    /// value and is skipped (checked on the writer, which orders it with the re-seed's
    /// cursor reset), so a stale cursor cannot be written back over the reset.
    pub reseed_gen: std::sync::atomic::AtomicU64,
}

/// Home's record of each region's identity and of the highest position of its log
/// seen (sync-owned): a log that ends below it was restored from an older copy.
pub const REGIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS _sync_regions (region TEXT PRIMARY KEY, epoch TEXT, \
    seen_end INTEGER NOT NULL DEFAULT 0, seen_at INTEGER NOT NULL)";

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
    /// The q-quantile (0..=1) of the samples (ms, rounded), by the one percentile
    /// definition in `edgeswarm_core::latency` (nearest rank).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.buf.is_empty() {
            return None;
        }
        let h = edgeswarm_core::LatencyHistogram::from_ms(self.buf.iter().map(|&ms| ms as f64));
        Some(h.percentile_ms(q).round() as u64)
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
    /// A pull found the region wiped or restored: push and pull start over from 0.
    Reseed { reason: String },
}

/// Mutable state of a SyncActor: the push window, the pull cursor, the counters behind
/// the status, and the link's health, probe and status schedule.
pub struct SyncState {
    /// Which `_changes` ranges are being pushed and which the region has acked.
    push: PushWindow,
    /// Where this node is in the region's log, and when it reads it next.
    pull: PullCursor,
    /// Counters and rates for `sync_status`, the router and `edge_replicas`.
    stats: SyncStats,
    /// Up/degraded/down, RTT and probe backoff: decides whether the actor talks to the
    /// region at all, and feeds the router and the retry delay.
    health: HealthTracker,
    /// Last successful request: a probe is sent only after `probe_interval` without one
    /// (pushes and pulls already prove the link is alive).
    last_ok: Instant,
    /// A probe is running: at most one at a time.
    probe_inflight: bool,
    /// When the status is next published and written to `edge_replicas`.
    next_status: Instant,
    /// A status write is running: at most one at a time (they would only race).
    status_inflight: bool,
    /// The `Tick` interval timer, aborted when the actor stops (its task would outlive
    /// the actor otherwise).
    timer: Option<tokio::task::JoinHandle<()>>,
}

/// The push side: a window of up to `window` batches in flight over `_changes` ranges
/// `(from, to]`, and the acked cursor that advances over their contiguous acked prefix.
struct PushWindow {
    /// Attempt number, carried by every push task: raised on a failure (or when the
    /// region goes down or comes back), so `Cut`/`PushDone` replies of the abandoned
    /// attempt are recognised and ignored.
    epoch: u64,
    /// Highest contiguous `_changes.seq` the region has acked: what consistency waits,
    /// lag and the persisted push cursor are based on, and where a retry restarts.
    acked: i64,
    /// Where the next batch starts (the end of the last batch cut).
    next_send: i64,
    /// Batches in flight, by `from`: (end, acked). The end is provisional (the limit
    /// given to the task) until its `Cut` arrives; acked batches stay until every batch
    /// before them is acked too, since batches may complete out of order.
    inflight: BTreeMap<i64, (i64, bool)>,
    /// `from` of the in-flight batch whose end is not known yet (its task is cutting
    /// it by rows); no further batch starts until it is.
    cutting: Option<i64>,
    /// A `LingerDone` timer is pending (so a linger never arms two).
    linger_timer: bool,
    /// The last batch cut was full (its row budget reached): a backlog is draining,
    /// so the next partial batch need not linger.
    last_full: bool,
    /// Row budget of the next batch: starts at [`SLOW_START_ROWS`] (after start and
    /// after a failure) and doubles per batch up to `batch_rows`.
    budget: usize,
    /// After a push failure, no batch starts before this instant (the health tracker's
    /// retry delay), so a failing region is not hammered.
    retry_at: Option<Instant>,
    /// When the last batch started: a partial batch lingers at most `push_linger` from
    /// here (Nagle-like batching of a trickle of commits).
    last_dispatch: Instant,
}

impl PushWindow {
    fn new(acked: i64, now: Instant) -> Self {
        PushWindow {
            epoch: 0,
            acked,
            next_send: acked,
            inflight: BTreeMap::new(),
            cutting: None,
            linger_timer: false,
            last_full: false,
            budget: SLOW_START_ROWS,
            retry_at: None,
            last_dispatch: now,
        }
    }

    /// Abandons every batch in flight and restarts from the acked cursor, slow start
    /// included; a new epoch makes the abandoned tasks' late replies harmless.
    fn restart(&mut self) {
        self.epoch += 1;
        self.inflight.clear();
        self.cutting = None;
        self.budget = SLOW_START_ROWS;
        self.next_send = self.acked;
    }

    /// Records where the batch starting at `from` ends; idempotent.
    fn apply_cut(&mut self, from: i64, to: i64) {
        let mut full = false;
        if let Some(e) = self.inflight.get_mut(&from) {
            // Cut before the limit it was given: the row budget was reached.
            full = to < e.0;
            e.0 = to;
        }
        if self.cutting == Some(from) {
            self.cutting = None;
            self.next_send = to;
            self.last_full = full;
        }
    }

    /// Marks the batch starting at `from` acked and advances the acked cursor over the
    /// contiguous acked prefix; true if it moved.
    fn ack(&mut self, from: i64) -> bool {
        if let Some(e) = self.inflight.get_mut(&from) {
            e.1 = true;
        }
        let before = self.acked;
        while let Some((&f, &(t, done))) = self.inflight.iter().next() {
            if !done || f != self.acked {
                break;
            }
            self.inflight.remove(&f);
            self.acked = t;
        }
        self.acked != before
    }
}

/// The pull side: this node's position in the region's log.
struct PullCursor {
    /// Region log position applied up to (persisted in `_sync_cursors` with each
    /// applied page and each status write, so a restart resumes here).
    seq: i64,
    /// A pull is running: at most one at a time, so pages apply in order.
    inflight: bool,
    /// When the next pull is due: at once after a full page (more is waiting), else
    /// after `pull_interval`.
    next: Instant,
}

/// Counters behind the status (`sync_status`, `edge_replicas`, the router's lag).
struct SyncStats {
    /// Row versions pushed and acked since start.
    pushed_rows: u64,
    /// Batches pushed and acked since start.
    pushed_batches: u64,
    /// Pulled row versions applied (won LWW) since start.
    applied_rows: u64,
    /// Conflicts resolved while applying pulls since start.
    conflicts: u64,
    /// `pushed_rows` at the last status, to compute the push rate over the interval.
    rows_at_last_status: u64,
    /// When the last status was computed (the rate's interval start).
    last_status_at: Instant,
    /// Push throughput over the last status interval, rows/s.
    rate: f64,
    /// Last successful push or pull (ms since epoch), shown in the status.
    last_sync_at: Option<i64>,
    /// When the region last held everything home had: `lag_ms` counts from here, and
    /// the router avoids regions that lag.
    caught_up_at: Instant,
    /// EWMA of push round trips in ms (see `RegionStatus::push_rtt_ms`).
    push_rtt_ms: Option<f64>,
    /// The last [`LINK_SAMPLES`] round trips of any request, in ms (ring), for `link_ms`.
    recent_rtts: std::collections::VecDeque<f64>,
}

impl SyncStats {
    fn new(now: Instant) -> Self {
        SyncStats {
            pushed_rows: 0,
            pushed_batches: 0,
            applied_rows: 0,
            conflicts: 0,
            rows_at_last_status: 0,
            last_status_at: now,
            rate: 0.0,
            last_sync_at: None,
            caught_up_at: now,
            push_rtt_ms: None,
            recent_rtts: std::collections::VecDeque::with_capacity(LINK_SAMPLES),
        }
    }
}

fn tx_err(e: edgeswarm_store::StoreError) -> SyncError {
    SyncError::Store(e)
}

impl SyncActor {
    fn publish(&self, st: &SyncState) {
        let c = &self.ctx;
        let home = c.home_max.load(Ordering::SeqCst);
        let lag_rows = (home - st.push.acked).max(0);
        let lag_ms = if lag_rows == 0 {
            0
        } else {
            st.stats.caught_up_at.elapsed().as_millis() as u64
        };
        let rtt = st.health.rtt_ewma_ms;
        {
            let mut s = c.shared.status.lock().unwrap_or_else(|p| p.into_inner());
            s.health = st.health.health;
            s.rtt_ewma_ms = rtt;
            s.performance_tier = rtt.map(performance_tier);
            s.lag_rows = lag_rows;
            s.lag_ms = lag_ms;
            s.acked_seq = st.push.acked;
            s.pull_seq = st.pull.seq;
            s.pushed_rows = st.stats.pushed_rows;
            s.pushed_batches = st.stats.pushed_batches;
            s.applied_rows = st.stats.applied_rows;
            s.conflicts = st.stats.conflicts;
            s.push_rows_per_sec = st.stats.rate;
            s.errors = st.health.errors_total;
            s.last_error = st.health.last_error.clone();
            s.last_sync_at = st.stats.last_sync_at;
            s.push_rtt_ms = st.stats.push_rtt_ms;
            s.link_ms = st.stats.recent_rtts.iter().copied().reduce(f64::min);
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
        if let Some(t) = st.push.retry_at {
            if Instant::now() < t {
                return;
            }
            st.push.retry_at = None;
        }
        let home = self.ctx.home_max.load(Ordering::SeqCst);
        let now = Instant::now();
        while st.push.cutting.is_none() && st.push.inflight.len() < self.ctx.cfg.window.max(1) && st.push.next_send < home {
            // Nagle-like: a partial batch waits up to `push_linger` while another batch
            // is in flight, so a trickle of commits does not become one tiny batch each.
            // Only while trickling: right after a full batch (a backlog draining) the
            // rest goes at once, or the tail of every backlog would wait the linger.
            // (An entry is at least one row, so fewer entries than the budget may still
            // be a full batch of rows; such a batch at most waits the linger.)
            let partial = ((home - st.push.next_send) as usize) < st.push.budget.min(self.ctx.cfg.batch_rows);
            let waited = now.duration_since(st.push.last_dispatch);
            if partial && !st.push.last_full && !st.push.inflight.is_empty() && waited < self.ctx.cfg.push_linger {
                // Come back exactly when the linger ends (not on the next tick).
                if !st.push.linger_timer {
                    st.push.linger_timer = true;
                    // The timer task runs detached; its handle is not needed.
                    drop(me.send_after(self.ctx.cfg.push_linger - waited, || SyncMsg::LingerDone));
                }
                break;
            }
            st.push.last_dispatch = now;
            // The task cuts the batch at `batch_rows` rows (a rowid-range entry counts
            // as the rows it covers) and reports the end with `Cut`.
            let from = st.push.next_send;
            st.push.cutting = Some(from);
            st.push.inflight.insert(from, (home, false));
            let max = self.ctx.cfg.batch_rows.max(1);
            let budget = st.push.budget.min(max);
            st.push.budget = (budget * 2).min(max);
            self.spawn_push(me.clone(), st.push.epoch, from, home, budget);
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
                            other => edgeswarm_store::StoreError::sql(other.to_string()),
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
                        let r = match c.link.push(&batch).await {
                            Ok(_) => Ok(t0.elapsed()),
                            // The region refused a statement of the batch: push the rows
                            // one by one and park the ones it refuses, so one bad row
                            // does not hold back the log for good.
                            Err(SyncError::RegionSql { .. }) => push_rows_one_by_one(&c, &batch).await.map(|_| t0.elapsed()),
                            Err(e) => Err(e),
                        };
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
                let gen = c.shared.reseed_gen.load(Ordering::SeqCst);
                let res = async {
                    let page = c.link.pull(after, &c.origin, c.cfg.pull_rows.max(1), &c.registry).await?;
                    let rtt = t0.elapsed();
                    if let Some(reason) = check_identity(&c, after, &page).await? {
                        let _ = me.cast(SyncMsg::Reseed { reason });
                        return Ok((0, false, ApplyStats::default(), rtt));
                    }
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
                        let latency = rtt.as_secs_f64() * 1000.0;
                        let out = apply_page(&c, Arc::new(versions), last, latency, gen).await?;
                        stats.applied = out.applied;
                        stats.conflicts = out.conflicts;
                    }
                    // Parked versions due for another try (after the page: a parent
                    // row it brought lets a parked child apply).
                    stats.applied += retry_parked(&c, false).await?;
                    refresh_parked(&c).await;
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
        let (acked, pull) = (st.push.acked, st.pull.seq);
        let shared = c.shared.clone();
        let gen = shared.reseed_gen.load(Ordering::SeqCst);
        tokio::spawn(async move {
            let region = c.name.clone();
            let r = c
                .store
                .transact(move |ctx| {
                    // Checked on the writer, so it orders with the removal's DELETE.
                    if shared.retired.load(Ordering::SeqCst) {
                        return Ok(());
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
                    record_cursor(ctx, &shared, &region, (acked, pull), now_millis(), gen)?;
                    ctx.execute(
                        "UPDATE _sync_regions SET seen_end = MAX(seen_end, ?2) WHERE region = ?1",
                        vec![region.clone().into(), shared.seen_end.load(Ordering::SeqCst).into()],
                    )?;
                    Ok(())
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
        if let Some(r) = rtt {
            if st.stats.recent_rtts.len() >= LINK_SAMPLES {
                st.stats.recent_rtts.pop_front();
            }
            st.stats.recent_rtts.push_back(r.as_secs_f64() * 1000.0);
        }
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

/// Upserts the region's cursors unless the region was removed: checked on the writer
/// thread, so it orders with the removal's DELETE and a push or pull still on the wire
/// when the region left cannot bring its cursor back.
/// Skipped too when the region was re-seeded since `gen` was read (see
/// [`RegionShared::reseed_gen`]).
fn record_cursor(
    ctx: &mut edgeswarm_store::TxCtx<'_>,
    shared: &RegionShared,
    region: &str,
    (push, pull): (i64, i64),
    now: i64,
    gen: u64,
) -> edgeswarm_store::Result<()> {
    if shared.retired.load(Ordering::SeqCst) || shared.reseed_gen.load(Ordering::SeqCst) != gen {
        return Ok(());
    }
    ctx.execute(CURSOR_UPSERT, vec![region.into(), push.into(), pull.into(), now.into()])?;
    Ok(())
}

/// Applies a pulled page at home and records the pull cursor at `last`. The page is
/// first tried as one transaction; if a row of it is refused (a poison row, see
/// [`crate::park`]), every row is applied as its own op (the writer gives each its own
/// savepoint and still commits them together), the refused ones are parked, and the
/// cursor moves on. Far-future versions are parked either way. Errors that are not the
/// rows' fault (disk, I/O, shutdown) fail the pull with the cursor unmoved.
async fn apply_page(
    c: &Arc<RegionCtx>,
    versions: Arc<Vec<RowVersion>>,
    last: i64,
    latency: f64,
    gen: u64,
) -> Result<ApplyStats, SyncError> {
    let page = PageRecord {
        shared: c.shared.clone(),
        region: c.name.clone(),
        home_region: c.home_region.clone(),
        last,
        rows: versions.len(),
        latency,
        gen,
    };
    let (reg, vs, p) = (c.registry.clone(), versions.clone(), page.clone());
    let first = c
        .store
        .transact(move |ctx| {
            let (st, future) = home::apply_remote_parking(ctx, &reg, &vs)?;
            if !future.is_empty() {
                tracing::warn!(region = %p.region, versions = future.len(), "far-future versions parked until the wall clock catches up");
            }
            p.record(ctx, st, &future)
        })
        .await;
    match first {
        Ok(st) => Ok(st),
        Err(e) if park::is_poison(&e) => {
            tracing::warn!(region = %c.name, error = %e, "a pulled page has a row home refuses; applying it row by row and parking the refused rows");
            let tries = versions.iter().map(|v| {
                let (reg, one) = (c.registry.clone(), v.clone());
                c.store
                    .transact(move |ctx| home::apply_remote_parking(ctx, &reg, std::slice::from_ref(&one)))
            });
            let results = futures::future::join_all(tries).await;
            let mut total = ApplyStats::default();
            let mut parked = Vec::new();
            for (v, r) in versions.iter().zip(results) {
                match r {
                    Ok((st, future)) => {
                        total.applied += st.applied;
                        total.conflicts += st.conflicts;
                        parked.extend(future);
                    }
                    Err(e) if park::is_poison(&e) => {
                        tracing::warn!(region = %c.name, table = %v.tbl, row = %v.row_id, error = %e, "parked a pulled row home refuses");
                        parked.push(Parked {
                            version: v.clone(),
                            reason: Reason::Poison,
                            error: e.to_string(),
                        })
                    }
                    Err(e) => return Err(tx_err(e)),
                }
            }
            c.store.transact(move |ctx| page.record(ctx, total, &parked)).await.map_err(tx_err)
        }
        Err(e) => Err(tx_err(e)),
    }
}

/// What the end of an applied pull page writes: parked versions, the pull cursor and
/// the `distributed_transactions` row.
#[derive(Clone)]
struct PageRecord {
    /// For the retired check of [`record_cursor`].
    shared: Arc<RegionShared>,
    /// The region pulled from.
    region: String,
    /// `target_region` of the record.
    home_region: String,
    /// The new pull cursor.
    last: i64,
    /// Versions in the page.
    rows: usize,
    /// Round trip of the pull, ms.
    latency: f64,
    /// [`RegionShared::reseed_gen`] when the pull started.
    gen: u64,
}

impl PageRecord {
    fn record(&self, ctx: &mut edgeswarm_store::TxCtx<'_>, st: ApplyStats, parked: &[Parked]) -> edgeswarm_store::Result<ApplyStats> {
        let now = now_millis();
        park::park(ctx, &self.region, Direction::Pull, parked, now)?;
        record_cursor(ctx, &self.shared, &self.region, (0, self.last), now, self.gen)?;
        ctx.execute(
            DT_INSERT,
            vec![
                edgeswarm_core::new_id().into(),
                self.region.clone().into(),
                self.home_region.clone().into(),
                "eventual".into(),
                (self.rows as i64).into(),
                (st.conflicts as i64).into(),
                self.latency.into(),
                "applied".into(),
                now.into(),
            ],
        )?;
        Ok(st)
    }
}

/// Retries parked versions of this region (only those due, unless `all`): pulled ones
/// are applied at home again, pushed ones pushed to the region again. A version that
/// applies (or that home or the region now holds something newer than) leaves the
/// table; one that fails again stays with its attempt count raised and its error
/// updated. Returns how many left the table.
pub(crate) async fn retry_parked(c: &Arc<RegionCtx>, all: bool) -> Result<usize, SyncError> {
    let region = c.name.clone();
    let limit = if all { i64::MAX } else { park::RETRY_BATCH };
    let (pulls, pushes) = c
        .store
        .read(move |r| {
            let now = now_millis();
            Ok((
                park::due(r, &region, Direction::Pull, now, all, limit)?,
                park::due(r, &region, Direction::Push, now, all, limit)?,
            ))
        })
        .await
        .map_err(tx_err)?;
    let mut done = 0;
    for v in pulls {
        let (reg, region, one) = (c.registry.clone(), c.name.clone(), v.clone());
        let r = c
            .store
            .transact(move |ctx| {
                let (_, future) = home::apply_remote_parking(ctx, &reg, std::slice::from_ref(&one))?;
                if future.is_empty() {
                    park::unpark(ctx, &region, Direction::Pull, &one)?;
                } else {
                    park::park(ctx, &region, Direction::Pull, &future, now_millis())?;
                }
                Ok(future.is_empty())
            })
            .await;
        match r {
            Ok(true) => {
                done += 1;
                tracing::info!(region = %c.name, table = %v.tbl, row = %v.row_id, "a parked row applied");
            }
            Ok(false) => {}
            Err(e) if park::is_poison(&e) => {
                let region = c.name.clone();
                let p = Parked {
                    version: v,
                    reason: Reason::Poison,
                    error: e.to_string(),
                };
                c.store
                    .transact(move |ctx| park::park(ctx, &region, Direction::Pull, &[p], now_millis()))
                    .await
                    .map_err(tx_err)?;
            }
            Err(e) => return Err(tx_err(e)),
        }
    }
    for v in pushes {
        let Some(spec) = c.registry.get(&v.tbl) else { continue };
        let tables = HashMap::from([(v.tbl.clone(), spec)]);
        let batch = PushBatch::new(edgeswarm_core::new_id(), c.origin.clone(), vec![v.clone()], tables, 1);
        let region = c.name.clone();
        match c.link.push(&batch).await {
            Ok(_) => {
                c.store
                    .transact(move |ctx| park::unpark(ctx, &region, Direction::Push, &v))
                    .await
                    .map_err(tx_err)?;
                done += 1;
            }
            Err(SyncError::RegionSql { message, .. }) => {
                let p = Parked {
                    version: v,
                    reason: Reason::Poison,
                    error: message,
                };
                c.store
                    .transact(move |ctx| park::park(ctx, &region, Direction::Push, &[p], now_millis()))
                    .await
                    .map_err(tx_err)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Compares the region's identity and log end in a pull page with what home knows:
/// `Some(reason)` when the region was wiped (another epoch, or none: its tables are
/// gone) or restored from an older copy (its log ends below this node's cursor). A
/// first-seen epoch is recorded in `_sync_regions` (a region file from before epochs
/// gets one on its first connection; that is not a wipe).
async fn check_identity(c: &Arc<RegionCtx>, after: i64, page: &crate::link::PullPage) -> Result<Option<String>, SyncError> {
    let mut known = c.shared.epoch.lock().await;
    if known.is_none() {
        let region = c.name.clone();
        let k = c
            .store
            .read(move |r| {
                let q = r.query("SELECT epoch, seen_end FROM _sync_regions WHERE region = ?1", vec![region.into()])?;
                Ok(q.rows
                    .first()
                    .map(|r| (r[0].as_str().map(str::to_string), r[1].as_i64().unwrap_or(0)))
                    .unwrap_or((None, 0)))
            })
            .await
            .map_err(tx_err)?;
        *known = Some(k);
    }
    let (k, seen) = known.clone().unwrap_or((None, 0));
    let seen = seen.max(after);
    let reason = match (&k, &page.epoch) {
        (Some(k), Some(e)) if k != e => Some(format!("its identity changed from {k} to {e}")),
        (Some(_), None) => Some("its identity and tables are gone".to_string()),
        _ if page.end < seen => Some(format!(
            "its log ends at {} below position {seen} seen before (restored from an older copy?)",
            page.end
        )),
        _ => None,
    };
    let new_seen = if reason.is_some() { page.end } else { seen.max(page.end) };
    let mut epoch = page.epoch.clone();
    if reason.is_some() && epoch.is_some() && epoch == k {
        // Restored (same identity, shorter log): give the region a new identity first,
        // so every other node re-seeds it too.
        let e = edgeswarm_core::new_id();
        c.link.set_epoch(&e).await?;
        epoch = Some(e);
    }
    let persist = epoch != k || reason.is_some();
    *known = Some((epoch.clone(), new_seen));
    c.shared.seen_end.store(new_seen, Ordering::SeqCst);
    if persist {
        let (region, e) = (c.name.clone(), epoch.clone());
        c.store
            .transact(move |ctx| {
                ctx.execute(
                    "INSERT INTO _sync_regions (region, epoch, seen_end, seen_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT(region) DO UPDATE SET epoch = excluded.epoch, seen_end = excluded.seen_end, seen_at = excluded.seen_at",
                    vec![region.into(), e.into(), new_seen.into(), now_millis().into()],
                )?;
                Ok(())
            })
            .await
            .map_err(tx_err)?;
    }
    c.shared.status.lock().unwrap_or_else(|p| p.into_inner()).epoch = epoch;
    Ok(reason)
}

/// Copies the region's parked count and latest parked version into its status.
pub(crate) async fn refresh_parked(c: &Arc<RegionCtx>) {
    let region = c.name.clone();
    if let Ok((n, latest)) = c.store.read(move |r| park::summary(r, &region)).await {
        let mut s = c.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        s.parked = n;
        s.parked_latest = latest;
    }
}

/// Pushes a refused batch's rows one at a time; rows the region refuses are parked
/// (direction `push`) and the batch counts as delivered. Any other failure fails the
/// push (it is retried whole).
///
/// A refusal that is not about the row (the region's tables are gone: "no such
/// table") fails the push, and so does a batch of several rows none of which the
/// region takes (more likely a region-wide fault than a batch of poison rows; it is
/// retried whole, and parked once a row of it is accepted).
async fn push_rows_one_by_one(c: &Arc<RegionCtx>, batch: &PushBatch) -> Result<(), SyncError> {
    let mut parked = Vec::new();
    let mut first_err = None;
    let mut accepted = 0usize;
    for v in &batch.rows {
        let Some(spec) = batch.tables.get(&v.tbl) else { continue };
        let tables = HashMap::from([(v.tbl.clone(), spec.clone())]);
        let one = PushBatch::new(edgeswarm_core::new_id(), batch.pusher.clone(), vec![v.clone()], tables, 1);
        match c.link.push(&one).await {
            Ok(_) => accepted += 1,
            Err(e @ SyncError::RegionSql { .. }) if e.to_string().contains("no such table") => return Err(e),
            Err(e @ SyncError::RegionSql { .. }) => {
                let message = match &e {
                    SyncError::RegionSql { message, .. } => message.clone(),
                    _ => e.to_string(),
                };
                first_err.get_or_insert(e);
                tracing::warn!(region = %c.name, table = %v.tbl, row = %v.row_id, error = %message, "parked a pushed row the region refuses");
                parked.push(Parked {
                    version: v.clone(),
                    reason: Reason::Poison,
                    error: message,
                });
            }
            Err(e) => return Err(e),
        }
    }
    if accepted == 0 && batch.rows.len() > 1 {
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    if !parked.is_empty() {
        let region = c.name.clone();
        c.store
            .transact(move |ctx| park::park(ctx, &region, Direction::Push, &parked, now_millis()))
            .await
            .map_err(tx_err)?;
    }
    Ok(())
}

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
            push: PushWindow::new(push_seq, now),
            pull: PullCursor {
                seq: pull_seq,
                inflight: false,
                next: now,
            },
            stats: SyncStats::new(now),
            health: HealthTracker::new(now, cfg.rtt_alpha, cfg.down_after, cfg.probe_interval, cfg.max_probe_backoff),
            last_ok: now,
            probe_inflight: false,
            next_status: now,
            status_inflight: false,
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
                st.push.linger_timer = false;
                self.maybe_push(&me, st);
            }
            SyncMsg::Tick => {
                let now = Instant::now();
                if st.push.acked >= self.ctx.home_max.load(Ordering::SeqCst) {
                    st.stats.caught_up_at = now;
                }
                if self.can_talk(st) {
                    self.maybe_push(&me, st);
                    if !st.pull.inflight && now >= st.pull.next {
                        st.pull.inflight = true;
                        self.spawn_pull(me.clone(), st.pull.seq);
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
                    let dt = now.duration_since(st.stats.last_status_at).as_secs_f64();
                    if dt > 0.0 {
                        st.stats.rate = (st.stats.pushed_rows - st.stats.rows_at_last_status) as f64 / dt;
                    }
                    st.stats.rows_at_last_status = st.stats.pushed_rows;
                    st.stats.last_status_at = now;
                    st.next_status = now + self.ctx.cfg.status_interval;
                    st.status_inflight = true;
                    self.publish(st);
                    self.spawn_status(me.clone(), st);
                }
            }
            SyncMsg::Cut { epoch, from, to } => {
                if epoch == st.push.epoch {
                    st.push.apply_cut(from, to);
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
                if epoch != st.push.epoch {
                    return Ok(());
                }
                match result {
                    Ok(rtt) => {
                        st.push.apply_cut(from, to);
                        if rows > 0 {
                            self.on_success(st, Some(rtt));
                            let ms = rtt.as_secs_f64() * 1000.0;
                            let a = self.ctx.cfg.rtt_alpha;
                            st.stats.push_rtt_ms = Some(st.stats.push_rtt_ms.map_or(ms, |p| p + a * (ms - p)));
                        }
                        let advanced = st.push.ack(from);
                        if rows > 0 {
                            st.stats.pushed_rows += rows as u64;
                            st.stats.pushed_batches += 1;
                            st.stats.last_sync_at = Some(now_millis());
                            let now = now_millis() as u64;
                            let mut l = self.ctx.shared.lags.lock().unwrap_or_else(|p| p.into_inner());
                            for m in &change_millis {
                                l.push(now.saturating_sub(*m));
                            }
                        }
                        if advanced {
                            self.ctx.shared.acked.send_replace(st.push.acked);
                            self.ctx.acked_notify.notify_waiters();
                            if st.push.acked >= self.ctx.home_max.load(Ordering::SeqCst) {
                                st.stats.caught_up_at = Instant::now();
                            }
                        }
                        if rows > 0 || self.ctx.cfg.record_empty_batches {
                            let c = self.ctx.clone();
                            let acked = st.push.acked;
                            let latency = rtt.as_secs_f64() * 1000.0;
                            let gen = self.ctx.shared.reseed_gen.load(Ordering::SeqCst);
                            tokio::spawn(async move {
                                let (region, home_region) = (c.name.clone(), c.home_region.clone());
                                let shared = c.shared.clone();
                                let r = c
                                    .store
                                    .transact(move |ctx| {
                                        let now = now_millis();
                                        record_cursor(ctx, &shared, &region, (acked, 0), now, gen)?;
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
                                        Ok(())
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
                        st.push.restart();
                        st.push.retry_at = Some(Instant::now() + st.health.retry_delay());
                    }
                }
                self.maybe_push(&me, st);
                self.publish(st);
            }
            SyncMsg::PullDone { result } => {
                st.pull.inflight = false;
                match result {
                    Ok((last, full, stats, rtt)) => {
                        self.on_success(st, Some(rtt));
                        if last > st.pull.seq {
                            st.pull.seq = last;
                        }
                        st.stats.applied_rows += stats.applied as u64;
                        st.stats.conflicts += stats.conflicts as u64;
                        if stats.applied > 0 {
                            st.stats.last_sync_at = Some(now_millis());
                        }
                        st.pull.next = if full {
                            Instant::now()
                        } else {
                            Instant::now() + self.ctx.cfg.pull_interval
                        };
                        if full && self.can_talk(st) {
                            st.pull.inflight = true;
                            self.spawn_pull(me.clone(), st.pull.seq);
                        }
                    }
                    Err(e) => {
                        self.on_failure(st, &e);
                        st.pull.next = Instant::now() + self.ctx.cfg.pull_interval;
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
                            st.push.restart();
                            st.push.retry_at = None;
                            st.pull.next = Instant::now();
                            self.maybe_push(&me, st);
                        }
                    }
                    Err(e) => {
                        self.on_failure(st, &e);
                        if st.health.health == Health::Down {
                            st.push.restart();
                        }
                    }
                }
                self.publish(st);
            }
            SyncMsg::Persisted => {
                st.status_inflight = false;
            }
            SyncMsg::Reseed { reason } => {
                tracing::warn!(region = %self.ctx.name, %reason, "the region was wiped or restored; re-seeding it from home (push and pull start over)");
                st.push.acked = 0;
                st.push.restart();
                st.push.retry_at = None;
                st.pull.seq = 0;
                st.pull.next = Instant::now();
                self.ctx.shared.acked.send_replace(0);
                self.ctx.shared.reseed_gen.fetch_add(1, Ordering::SeqCst);
                {
                    let mut s = self.ctx.shared.status.lock().unwrap_or_else(|p| p.into_inner());
                    s.reseeds += 1;
                }
                let c = self.ctx.clone();
                tokio::spawn(async move {
                    let region = c.name.clone();
                    let r = c
                        .store
                        .transact(move |ctx| {
                            ctx.execute(
                                "UPDATE _sync_cursors SET push_seq = 0, pull_seq = 0 WHERE region = ?1",
                                vec![region.into()],
                            )?;
                            Ok(())
                        })
                        .await;
                    if let Err(e) = r {
                        tracing::warn!(region = %c.name, error = %e, "could not reset the cursors of a re-seeded region");
                    }
                });
                self.maybe_push(&me, st);
                self.publish(st);
            }
        }
        Ok(())
    }
}
