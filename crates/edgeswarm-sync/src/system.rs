//! `SyncSystem`: starts one SyncActor per region over a home [`Store`] and gives back a
//! [`SyncHandle`], the only API callers need.

use crate::actor::{RegionCtx, RegionShared, RegionStatus, SyncActor, SyncMsg};
use crate::config::{validate, RegionConfig, SyncConfig};
use crate::error::{Result, SyncError};
use crate::home::{self, APPEND_ONLY, USER_TABLES_KEY};
use crate::link::{HranaLink, LocalLink, RegionLink};
use crate::router::{ReadTarget, Router};
use crate::row::{content_hash, quote, Registry, Resolver};
use edgeswarm_core::{ReadConsistency, WriteConsistency};
use edgeswarm_store::{QueryResult, SqlValue, Store};
use ractor::{Actor, ActorRef};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Starts replication. See [`SyncSystem::start`].
pub struct SyncSystem;

struct RegionRuntime {
    ctx: Arc<RegionCtx>,
    actor: ActorRef<SyncMsg>,
    done: Mutex<Option<tokio::task::JoinHandle<()>>>,
    partition: Option<Arc<AtomicBool>>,
}

/// What every region's actor shares, kept to start regions on a running system.
struct Base {
    store: Store,
    router: Arc<Router>,
    registry: Arc<Registry>,
    home_max: Arc<AtomicI64>,
    acked_notify: Arc<Notify>,
    /// Tuning every actor gets (also those added later).
    cfg: SyncConfig,
    /// `source_region` of pushes, fixed at start.
    home_region: String,
}

struct Inner {
    base: Base,
    /// The running regions, in configuration order (added ones last). Copy-on-write:
    /// readers take a snapshot, [`SyncHandle::add_region`]/[`SyncHandle::remove_region`]
    /// swap in a new list.
    regions: std::sync::RwLock<Arc<Vec<Arc<RegionRuntime>>>>,
    /// Serialises topology changes (one add or remove at a time).
    topology: tokio::sync::Mutex<()>,
    /// Router tie-break order of the next added region.
    next_order: std::sync::atomic::AtomicUsize,
    forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The compaction timer task (see [`crate::compact`]), aborted at shutdown.
    compactor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Inner {
    /// The running regions now.
    fn regions(&self) -> Arc<Vec<Arc<RegionRuntime>>> {
        self.regions.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl std::ops::Deref for Inner {
    type Target = Base;
    fn deref(&self) -> &Base {
        &self.base
    }
}

/// What [`SyncHandle::remove_region`] did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegionRemoved {
    /// The region.
    pub region: String,
    /// Home's `_changes.seq` when the removal started: the drain target.
    pub target_seq: i64,
    /// Where the region's acked cursor stood when its actor stopped.
    pub acked_seq: i64,
    /// The region holds everything up to `target_seq` (false: the drain timed out or
    /// the region was down, and the rest was abandoned for it).
    pub drained: bool,
    /// How long the drain took, in ms.
    pub drain_ms: u64,
}

/// The handle to a running sync system. Cheap to clone.
#[derive(Clone)]
pub struct SyncHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHandle").field("regions", &self.regions()).finish()
    }
}

/// Everything `sync_status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    /// This node's id.
    pub node: String,
    /// Highest `_changes.seq` at home.
    pub home_seq: i64,
    /// Per region, in configuration order.
    pub regions: Vec<RegionStatus>,
    /// Conflicts resolved by this node since start (sum over regions).
    pub conflicts_resolved: u64,
}

/// A write's replication state when a consistency wait succeeded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Replicated {
    /// The `_changes.seq` waited for.
    pub seq: i64,
    /// Regions that hold it.
    pub reached: Vec<String>,
    /// Regions the level required.
    pub required: usize,
}

/// One table's checksum on one replica.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableChecksum {
    /// Table name.
    pub table: String,
    /// Row count.
    pub rows: u64,
    /// Content hash of every row in key order (all columns, hlc and origin included).
    pub hash: u64,
}

fn required(level: WriteConsistency, n: usize) -> usize {
    match level {
        WriteConsistency::Local => 0,
        WriteConsistency::Quorum => n / 2 + 1,
        WriteConsistency::All => n,
    }
}

/// A region's link and, for simulated links, its partition switch.
pub type OpenedLink = (Arc<dyn RegionLink>, Option<Arc<AtomicBool>>);

/// Opens the link a region config names.
/// `link_capacity` bounds a `file:` region's request channel (`ChannelConfig::region_link`).
pub fn open_link(r: &RegionConfig, cfg: &SyncConfig, link_capacity: usize) -> Result<OpenedLink> {
    if let Some(path) = r.url.strip_prefix("file:") {
        let mut profile = cfg.local_profile.clone();
        profile.latency = Duration::from_millis(r.latency_ms);
        let l = LocalLink::open(&r.name, path, profile, link_capacity)?;
        let sw = l.partition_switch();
        Ok((Arc::new(l), Some(sw)))
    } else {
        let l = HranaLink::with_ca(
            &r.name,
            &r.url,
            r.token_env.as_deref(),
            r.ca_file.as_deref(),
            cfg.request_timeout,
            cfg.http_attempts,
        )?
        .with_max_reply_bytes(cfg.max_reply_bytes);
        Ok((Arc::new(l), None))
    }
}

impl SyncSystem {
    /// Starts one SyncActor per region. Fails only on bad configuration (duplicate or
    /// empty names, bad url schemes, missing token variables); a region that cannot be
    /// reached or opened starts anyway, is reported `degraded`/`down` with its error,
    /// and keeps being probed while the other regions sync.
    pub async fn start(store: Store, regions: Vec<RegionConfig>, cfg: SyncConfig) -> Result<SyncHandle> {
        validate(&regions)?;
        let mut links = Vec::new();
        for r in &regions {
            links.push(open_link(r, &cfg, store.config().channels.region_link)?);
        }
        // Everything start needs from the home file, in one read (one trip to a reader
        // thread instead of one per question: start is on the path of a full sync).
        let (has_ranges, specs, home_seq, cursors) = store
            .read(|r| {
                let q = r.query("SELECT COUNT(*) FROM pragma_table_info('_changes') WHERE name = 'rowid_lo'", vec![])?;
                let has_ranges = q.rows[0][0].as_i64().unwrap_or(0) > 0;
                // Built-in tables, then user tables registered earlier.
                let v = r.query("SELECT value FROM _meta WHERE key = ?1", vec![USER_TABLES_KEY.into()])?;
                let user: Vec<String> = v
                    .rows
                    .first()
                    .and_then(|r| r[0].as_str())
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default();
                let mut names: Vec<(String, bool)> = edgeswarm_store::schema::REPLICATED_TABLES
                    .iter()
                    .map(|t| (t.to_string(), APPEND_ONLY.contains(t)))
                    .collect();
                names.extend(user.into_iter().map(|t| (t, false)));
                let mut specs = Vec::new();
                for (t, ao) in names {
                    let spec = home::load_spec(r, &t, ao).map_err(|e| edgeswarm_store::StoreError::sql(e.to_string()))?;
                    specs.push((t, spec));
                }
                let home_seq = max_seq_in(r)?;
                let q = r.query("SELECT region, push_seq, pull_seq FROM _sync_cursors", vec![])?;
                let cursors: HashMap<String, (i64, i64)> = q
                    .rows
                    .iter()
                    .filter_map(|r| Some((r[0].as_str()?.to_string(), (r[1].as_i64()?, r[2].as_i64()?))))
                    .collect();
                Ok((has_ranges, specs, home_seq, cursors))
            })
            .await?;
        let registry = Arc::new(Registry::default());
        registry.set_change_ranges(has_ranges);
        for (t, spec) in specs {
            match spec {
                Some(s) if !s.pk.is_empty() && s.col("hlc").is_some() => registry.insert(s),
                _ => {
                    tracing::warn!(table = %t, "replicated table is missing or has no key; skipped")
                }
            }
        }
        install_triggers(&store, &registry).await?;

        let home_max = Arc::new(AtomicI64::new(home_seq));
        let home_region = cfg.home_region.clone().unwrap_or_else(|| {
            regions
                .iter()
                .min_by_key(|r| r.latency_ms)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| "home".into())
        });
        let base = Base {
            store: store.clone(),
            router: Arc::new(Router::default()),
            registry,
            home_max,
            acked_notify: Arc::new(Notify::new()),
            cfg,
            home_region,
        };
        let mut rts = Vec::new();
        for (i, (r, (link, partition))) in regions.iter().zip(links).enumerate() {
            let (push, pull) = cursors.get(&r.name).copied().unwrap_or((0, 0));
            rts.push(Arc::new(spawn_region(&base, r, link, partition, (push, pull), i).await?));
        }
        let inner = Arc::new(Inner {
            base,
            next_order: std::sync::atomic::AtomicUsize::new(rts.len()),
            regions: std::sync::RwLock::new(Arc::new(rts)),
            topology: tokio::sync::Mutex::new(()),
            forwarder: Mutex::new(None),
            compactor: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        let fwd = tokio::spawn(forward_commits(Arc::downgrade(&inner), store));
        *inner.forwarder.lock().unwrap_or_else(|p| p.into_inner()) = Some(fwd);
        if !inner.cfg.compact_interval.is_zero() {
            let every = inner.cfg.compact_interval;
            let weak = Arc::downgrade(&inner);
            let task = tokio::spawn(async move {
                let mut t = tokio::time::interval(every);
                t.tick().await;
                loop {
                    t.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Err(e) = compact_pass(&inner).await {
                        tracing::warn!(error = %e, "log compaction failed; retried next interval");
                    }
                }
            });
            *inner.compactor.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Ok(SyncHandle { inner })
    }
}

/// One compaction pass (see [`crate::compact`]): home's `_changes` below the lowest
/// acked push cursor of the running regions, and every region's log.
async fn compact_pass(inner: &Inner) -> Result<crate::compact::Compacted> {
    let regions = inner.regions();
    let running: Vec<Arc<RegionCtx>> = regions
        .iter()
        .filter(|r| !r.ctx.shared.retired.load(Ordering::SeqCst))
        .map(|r| r.ctx.clone())
        .collect();
    let floor = running.iter().map(|c| *c.shared.acked.borrow()).min().unwrap_or(0);
    crate::compact::pass(&inner.store, &running, floor).await
}

/// Starts the actor of one region with the given cursors.
async fn spawn_region(
    base: &Base,
    r: &RegionConfig,
    link: Arc<dyn RegionLink>,
    partition: Option<Arc<AtomicBool>>,
    (push, pull): (i64, i64),
    order: usize,
) -> Result<RegionRuntime> {
    let (acked, _) = watch::channel(push);
    let shared = Arc::new(RegionShared {
        name: r.name.clone(),
        status: Mutex::new(RegionStatus {
            region: r.name.clone(),
            url: link.url().to_string(),
            tls: link.tls(),
            ..Default::default()
        }),
        acked,
        wake_pending: AtomicBool::new(false),
        lags: Mutex::new(Default::default()),
        retired: AtomicBool::new(false),
        epoch: tokio::sync::Mutex::new(None),
        seen_end: AtomicI64::new(0),
        reseed_gen: std::sync::atomic::AtomicU64::new(0),
    });
    let ctx = Arc::new(RegionCtx {
        name: r.name.clone(),
        link,
        store: base.store.clone(),
        registry: base.registry.clone(),
        cfg: base.cfg.clone(),
        shared,
        home_max: base.home_max.clone(),
        router: base.router.clone(),
        acked_notify: base.acked_notify.clone(),
        home_region: base.home_region.clone(),
        origin: base.store.origin().to_string(),
        configured_latency_ms: r.latency_ms,
        order,
    });
    let (actor, done) = Actor::spawn(None, SyncActor { ctx: ctx.clone() }, (push, pull))
        .await
        .map_err(|e| SyncError::Internal(format!("cannot start the SyncActor for `{}`: {e}", r.name)))?;
    Ok(RegionRuntime {
        ctx,
        actor,
        done: Mutex::new(Some(done)),
        partition,
    })
}

/// The highest `_changes.seq` (0 for an empty log).
fn max_seq_in(r: &mut edgeswarm_store::Reader) -> edgeswarm_store::Result<i64> {
    let q = r.query("SELECT COALESCE(MAX(seq), 0) FROM _changes", vec![])?;
    Ok(q.rows[0][0].as_i64().unwrap_or(0))
}

async fn max_seq(store: &Store) -> Result<i64> {
    Ok(store.read(max_seq_in).await?)
}

async fn install_triggers(store: &Store, reg: &Registry) -> Result<()> {
    let ddl: Vec<String> = reg.all().iter().flat_map(|s| home::trigger_ddl(s)).collect();
    store
        .transact(move |ctx| {
            for d in &ddl {
                ctx.execute(d, vec![])?;
            }
            ctx.execute(
                "CREATE INDEX IF NOT EXISTS conflicts_by_loser ON conflicts(tbl, row_id, loser_hlc, loser_origin)",
                vec![],
            )?;
            ctx.execute(crate::park::PARKED_DDL, vec![])?;
            ctx.execute(crate::actor::REGIONS_DDL, vec![])?;
            Ok(())
        })
        .await?;
    Ok(())
}

fn wake_all(inner: &Inner) {
    for r in inner.regions().iter() {
        if !r.ctx.shared.wake_pending.swap(true, Ordering::SeqCst) {
            let _ = r.actor.cast(SyncMsg::Wake);
        }
    }
}

/// Follows commits: raises `home_max`, merges trigger-made stamps into the clock, and
/// wakes every actor (coalesced).
async fn forward_commits(inner: std::sync::Weak<Inner>, store: Store) {
    let mut rx = store.subscribe();
    loop {
        let ev = rx.recv().await;
        let Some(inner) = inner.upgrade() else { return };
        match ev {
            Ok(e) => {
                if e.last_seq > 0 {
                    inner.home_max.fetch_max(e.last_seq, Ordering::SeqCst);
                }
                if e.raw_sql || e.last_seq == 0 {
                    refresh_max(&inner, &store).await;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => refresh_max(&inner, &store).await,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        wake_all(&inner);
    }
}

async fn refresh_max(inner: &Inner, store: &Store) {
    let r = store
        .read(|r| {
            let q = r.query(
                "SELECT COALESCE(MAX(seq), 0), COALESCE((SELECT hlc FROM _changes ORDER BY seq DESC LIMIT 1), 0) FROM _changes",
                vec![],
            )?;
            Ok((q.rows[0][0].as_i64().unwrap_or(0), q.rows[0][1].as_i64().unwrap_or(0)))
        })
        .await;
    if let Ok((seq, hlc)) = r {
        inner.home_max.fetch_max(seq, Ordering::SeqCst);
        let _ = store.clock().observe(edgeswarm_core::Hlc::from_i64(hlc));
    }
}

impl SyncHandle {
    fn region(&self, name: &str) -> Result<Arc<RegionRuntime>> {
        self.inner
            .regions()
            .iter()
            .find(|r| r.ctx.name == name)
            .cloned()
            .ok_or_else(|| SyncError::UnknownRegion {
                name: name.to_string(),
                known: self.regions(),
            })
    }

    /// Starts replicating to one more region on the running system. The region is
    /// seeded from home: its push cursor starts at 0, so it gets a full copy (as a new
    /// region at startup does; versions it already holds are skipped by LWW), and its
    /// pull cursor at 0. A cursor left from an earlier region of that name is dropped
    /// first. Fails on a bad config, a name in use, or a shut-down system; a region that
    /// cannot be reached is added anyway and reported `degraded`/`down` until it can.
    pub async fn add_region(&self, r: RegionConfig) -> Result<()> {
        let _t = self.inner.topology.lock().await;
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(SyncError::Closed);
        }
        validate(std::slice::from_ref(&r))?;
        if self.region(&r.name).is_ok() {
            return Err(SyncError::Config(format!(
                "region `{}` is already running; remove it first or pick another name",
                r.name
            )));
        }
        let (link, partition) = open_link(&r, &self.inner.cfg, self.inner.store.config().channels.region_link)?;
        let name = r.name.clone();
        self.inner
            .store
            .transact(move |ctx| {
                ctx.execute("DELETE FROM _sync_regions WHERE region = ?1", vec![name.clone().into()])?;
                ctx.execute("DELETE FROM _sync_cursors WHERE region = ?1", vec![name.into()])?;
                Ok(())
            })
            .await?;
        let order = self.inner.next_order.fetch_add(1, Ordering::SeqCst);
        let rt = Arc::new(spawn_region(&self.inner, &r, link, partition, (0, 0), order).await?);
        {
            let mut g = self.inner.regions.write().unwrap_or_else(|p| p.into_inner());
            let mut v: Vec<Arc<RegionRuntime>> = g.as_ref().clone();
            v.push(rt);
            *g = Arc::new(v);
        }
        tracing::info!(region = %r.name, url = %crate::link::tls::redact_url(&r.url), "region added; seeding it from home");
        wake_all(&self.inner);
        Ok(())
    }

    /// Stops replicating to a region on the running system. Rule: the region leaves
    /// the router, consistency waits and status at once; its actor then drains for at
    /// most [`SyncConfig::remove_drain`] (pushing what home had committed when the
    /// removal started; not waited for if the region is down), and stops. Whatever it
    /// did not get by then is abandoned for that region: nothing is rolled back there,
    /// and home keeps every change. Its cursor and `edge_replicas` row are deleted, so
    /// adding the name again seeds it afresh.
    pub async fn remove_region(&self, name: &str) -> Result<RegionRemoved> {
        let _t = self.inner.topology.lock().await;
        let rt = self.region(name)?;
        let t0 = tokio::time::Instant::now();
        rt.ctx.shared.retired.store(true, Ordering::SeqCst);
        {
            let mut g = self.inner.regions.write().unwrap_or_else(|p| p.into_inner());
            let v: Vec<Arc<RegionRuntime>> = g.iter().filter(|r| r.ctx.name != name).cloned().collect();
            *g = Arc::new(v);
        }
        self.inner.router.remove(name);
        // Waiters counting regions re-check against the smaller set.
        self.inner.acked_notify.notify_waiters();
        let target = self.inner.home_max.load(Ordering::SeqCst);
        let down = rt.ctx.shared.status.lock().unwrap_or_else(|p| p.into_inner()).health == crate::router::Health::Down;
        let mut acked = rt.ctx.shared.acked.subscribe();
        let drained = if down {
            *acked.borrow() >= target
        } else {
            tokio::time::timeout(self.inner.cfg.remove_drain, acked.wait_for(|a| *a >= target))
                .await
                .is_ok_and(|r| r.is_ok())
        };
        let acked_seq = *rt.ctx.shared.acked.borrow();
        rt.actor.stop(None);
        let done = rt.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(d) = done {
            let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
        }
        self.inner.router.remove(name);
        let n = name.to_string();
        self.inner
            .store
            .transact(move |ctx| {
                ctx.execute("DELETE FROM _sync_cursors WHERE region = ?1", vec![n.clone().into()])?;
                ctx.execute("DELETE FROM _sync_regions WHERE region = ?1", vec![n.clone().into()])?;
                ctx.execute("DELETE FROM edge_replicas WHERE region = ?1", vec![n.into()])?;
                Ok(())
            })
            .await?;
        let out = RegionRemoved {
            region: name.to_string(),
            target_seq: target,
            acked_seq,
            drained,
            drain_ms: t0.elapsed().as_millis() as u64,
        };
        if drained {
            tracing::info!(region = name, acked_seq, "region removed after draining");
        } else {
            tracing::warn!(
                region = name,
                acked_seq,
                target_seq = target,
                "region removed before it held every change (drain timed out or it was down); the rest is abandoned for it"
            );
        }
        Ok(out)
    }

    /// Configured region names, in configuration order.
    pub fn regions(&self) -> Vec<String> {
        self.inner.regions().iter().map(|r| r.ctx.name.clone()).collect()
    }

    /// Depth and capacity of each region's request channel (`region_link:<region>`),
    /// for regions whose link queues requests.
    pub fn channels(&self) -> Vec<edgeswarm_core::ChannelStats> {
        self.inner
            .regions()
            .iter()
            .filter_map(|r| {
                let (depth, cap) = r.ctx.link.queue()?;
                Some(edgeswarm_core::ChannelStats::new(format!("region_link:{}", r.ctx.name), depth, cap))
            })
            .collect()
    }

    /// The home store this system replicates.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Per-region status, lag, throughput and conflicts.
    pub fn sync_status(&self) -> SyncStatus {
        let regions: Vec<RegionStatus> = self
            .inner
            .regions()
            .iter()
            .map(|r| {
                let mut s = r.ctx.shared.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let home = self.inner.home_max.load(Ordering::SeqCst);
                s.lag_rows = (home - *r.ctx.shared.acked.borrow()).max(0);
                if s.lag_rows == 0 {
                    s.lag_ms = 0;
                }
                let l = r.ctx.shared.lags.lock().unwrap_or_else(|p| p.into_inner());
                (s.lag_p50_ms, s.lag_p99_ms) = (l.quantile(0.5), l.quantile(0.99));
                s.partitioned = r.partition.as_ref().map(|p| p.load(Ordering::SeqCst));
                s.server_version = r.ctx.link.server_version();
                s
            })
            .collect();
        SyncStatus {
            node: self.inner.store.origin().to_string(),
            home_seq: self.inner.home_max.load(Ordering::SeqCst),
            conflicts_resolved: regions.iter().map(|r| r.conflicts).sum(),
            regions,
        }
    }

    /// The highest `_changes.seq` committed at home. Call it after a write was acked
    /// to get a seq that covers that write (and possibly later ones).
    pub async fn latest_seq(&self) -> Result<i64> {
        let s = max_seq(&self.inner.store).await?;
        self.inner.home_max.fetch_max(s, Ordering::SeqCst);
        Ok(s)
    }

    /// Waits until `seq` is held by as many regions as `level` requires (Local: none;
    /// Quorum: a majority of configured regions; All: every one). On timeout returns
    /// [`SyncError::ConsistencyTimeout`] saying which regions it reached; the write
    /// stays durable at home and keeps replicating either way.
    pub async fn wait_replicated(&self, seq: i64, level: WriteConsistency, timeout: Duration) -> Result<Replicated> {
        if self.inner.home_max.fetch_max(seq, Ordering::SeqCst) < seq {
            wake_all(&self.inner);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.acked_notify.notified();
            // The regions running now: a region added or removed meanwhile changes
            // what the level requires.
            let regions = self.inner.regions();
            let need = required(level, regions.len());
            let reached: Vec<String> = regions
                .iter()
                .filter(|r| *r.ctx.shared.acked.borrow() >= seq)
                .map(|r| r.ctx.name.clone())
                .collect();
            if reached.len() >= need {
                return Ok(Replicated {
                    seq,
                    reached,
                    required: need,
                });
            }
            if self.inner.closed.load(Ordering::SeqCst) {
                return Err(SyncError::Closed);
            }
            // Re-check at least every 50 ms (cheap) in case a notify raced the check.
            let step = tokio::time::Instant::now() + Duration::from_millis(50);
            if tokio::time::timeout_at(deadline.min(step), notified).await.is_err() && tokio::time::Instant::now() >= deadline {
                let missing = self.regions().into_iter().filter(|r| !reached.contains(r)).collect();
                return Err(SyncError::ConsistencyTimeout {
                    seq,
                    level: level.as_str(),
                    required: need,
                    reached_count: reached.len(),
                    reached,
                    missing,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
        }
    }

    /// Where a read at `rc` should run. `Nearest` falls back to `Local` if no region
    /// is healthy (and within `max_lag`); `Region(name)` must name a configured region.
    pub fn read_target(&self, rc: &ReadConsistency) -> Result<ReadTarget> {
        self.inner.router.target(rc).map_err(|name| SyncError::UnknownRegion {
            name,
            known: self.regions(),
        })
    }

    /// Runs one read-only statement on a region. The statement is checked read-only
    /// against the home schema first (regions hold the same replicated tables).
    pub async fn read_sql_at(&self, region: &str, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult> {
        let r = self.region(region)?;
        let s = sql.to_string();
        self.inner
            .store
            .read(move |rd| rd.guard.check_read_only(&s))
            .await
            .map_err(|e| SyncError::Refused(e.to_string()))?;
        r.ctx.link.query(sql, params).await
    }

    /// Runs a read at the given consistency: at home, or at the region the router picks.
    pub async fn read_sql(&self, rc: &ReadConsistency, sql: &str, params: Vec<SqlValue>) -> Result<(ReadTarget, QueryResult)> {
        match self.read_target(rc)? {
            ReadTarget::Local => Ok((ReadTarget::Local, self.inner.store.read_sql(sql, params).await?)),
            ReadTarget::Region(n) => {
                let q = self.read_sql_at(&n, sql, params).await?;
                Ok((ReadTarget::Region(n), q))
            }
        }
    }

    /// Retries every parked version of `region` (all regions when `None`) now,
    /// regardless of backoff; returns how many applied (or were superseded) and left
    /// `_sync_parked`. Pulls also retry due parked versions on their own (see
    /// [`crate::park`]).
    pub async fn retry_parked(&self, region: Option<&str>) -> Result<usize> {
        let regions: Vec<Arc<RegionRuntime>> = match region {
            Some(r) => vec![self.region(r)?],
            None => self.inner.regions().iter().cloned().collect(),
        };
        let mut n = 0;
        for r in regions {
            n += crate::actor::retry_parked(&r.ctx, true).await?;
            crate::actor::refresh_parked(&r.ctx).await;
        }
        Ok(n)
    }

    /// Runs one compaction pass now (the timer runs one every
    /// `SyncConfig::compact_interval`); returns what it deleted.
    pub async fn compact_now(&self) -> Result<crate::compact::Compacted> {
        compact_pass(&self.inner).await
    }

    /// Cuts a simulated (`file:`) region off (`true`) or heals it (`false`).
    pub fn partition(&self, region: &str, partitioned: bool) -> Result<()> {
        let r = self.region(region)?;
        match &r.partition {
            Some(p) => {
                p.store(partitioned, Ordering::SeqCst);
                Ok(())
            }
            None => Err(SyncError::Config(format!(
                "region `{region}` is an HTTP region; only file: regions have a partition switch"
            ))),
        }
    }

    /// Reads a user table's spec (columns, primary key) on a reader thread.
    async fn load_user_spec(&self, name: &str) -> Result<Option<crate::row::TableSpec>> {
        let n = name.to_string();
        Ok(self
            .inner
            .store
            .read(move |r| home::load_spec(r, &n, false).map_err(|e| edgeswarm_store::StoreError::sql(e.to_string())))
            .await?)
    }

    /// Registers a user table for replication. It must exist and have a primary key.
    /// Adds `hlc` and `origin` columns if missing, installs the logging triggers, logs
    /// every existing row once, and remembers the table across restarts. Other nodes
    /// apply its rows only once they register it too (entries for unknown tables are
    /// skipped). Raw DELETEs on user tables are not replicated unless the table has a
    /// `deleted` column (then they become tombstones).
    pub async fn replicate_table(&self, name: &str) -> Result<()> {
        if self.inner.registry.get(name).is_some() {
            return Ok(());
        }
        let bad = |reason: &str| SyncError::Table {
            table: name.to_string(),
            reason: reason.to_string(),
        };
        if name.starts_with('_') || name.starts_with("sqlite_") {
            return Err(bad("tables starting with `_` or `sqlite_` belong to edgeswarm/SQLite"));
        }
        let spec = self
            .load_user_spec(name)
            .await?
            .ok_or_else(|| bad("no such table; create it first"))?;
        if spec.pk.is_empty() {
            return Err(bad("it has no PRIMARY KEY; replication needs one to identify rows"));
        }
        if let Some((c, ty)) = spec
            .columns
            .iter()
            .zip(spec.types.iter())
            .find(|(_, t)| !crate::row::valid_column_type(t))
        {
            return Err(bad(&format!(
                "column `{c}` has declared type `{ty}`, which region DDL does not accept (type names are words with an optional (n) or (n, m)); declare a plain type such as TEXT, INTEGER, REAL, BLOB or NUMERIC"
            )));
        }
        let t = quote(name);
        let has_hlc = spec.col("hlc").is_some();
        let has_origin = spec.col("origin").is_some();
        let tn = name.to_string();
        self.inner
            .store
            .transact(move |ctx| {
                if !has_hlc {
                    ctx.execute(&format!("ALTER TABLE {t} ADD COLUMN hlc INTEGER NOT NULL DEFAULT 0"), vec![])?;
                }
                if !has_origin {
                    ctx.execute(&format!("ALTER TABLE {t} ADD COLUMN origin TEXT NOT NULL DEFAULT ''"), vec![])?;
                }
                let cur = ctx.query("SELECT value FROM _meta WHERE key = ?1", vec![USER_TABLES_KEY.into()])?;
                let mut list: Vec<String> = cur
                    .rows
                    .first()
                    .and_then(|r| r[0].as_str())
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default();
                if !list.contains(&tn) {
                    list.push(tn.clone());
                }
                ctx.execute(
                    "INSERT INTO _meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    vec![USER_TABLES_KEY.into(), serde_json::to_string(&list).unwrap_or_default().into()],
                )?;
                Ok(())
            })
            .await?;
        let spec = self
            .load_user_spec(name)
            .await?
            .ok_or_else(|| bad("table vanished while registering"))?;
        let ddl = home::trigger_ddl(&spec);
        let t = quote(name);
        self.inner
            .store
            .transact(move |ctx| {
                for d in &ddl {
                    ctx.execute(d, vec![])?;
                }
                // Stamp and log rows that exist already (the update trigger does it).
                ctx.execute(&format!("UPDATE {t} SET hlc = hlc WHERE hlc = 0"), vec![])?;
                Ok(())
            })
            .await?;
        self.inner.registry.insert(spec);
        refresh_max(&self.inner, &self.inner.store).await;
        wake_all(&self.inner);
        Ok(())
    }

    /// Names of the replicated tables.
    pub fn replicated_tables(&self) -> Vec<String> {
        self.inner.registry.names()
    }

    /// Sets a per-table conflict resolver (see [`Resolver`]).
    pub fn set_resolver(&self, table: &str, resolver: Resolver) {
        self.inner.registry.set_resolver(table, resolver);
    }

    /// Checksums of every replicated table in the home file.
    pub async fn home_checksums(&self) -> Result<Vec<TableChecksum>> {
        let specs = self.inner.registry.all();
        Ok(self
            .inner
            .store
            .read(move |r| {
                let mut out = Vec::new();
                for s in &specs {
                    let q = r.query(&s.select_all_ordered(), vec![])?;
                    out.push(TableChecksum {
                        table: s.name.to_string(),
                        rows: q.rows.len() as u64,
                        hash: content_hash(&q.rows),
                    });
                }
                Ok(out)
            })
            .await?)
    }

    /// Checksums of every replicated table in a region (a table the region does not
    /// have yet counts as empty).
    pub async fn region_checksums(&self, region: &str) -> Result<Vec<TableChecksum>> {
        let r = self.region(region)?;
        let specs = self.inner.registry.all();
        r.ctx.link.ensure_tables(&specs).await?;
        let mut out = Vec::new();
        for s in &specs {
            let q = r.ctx.link.query(&s.select_all_ordered(), vec![]).await?;
            out.push(TableChecksum {
                table: s.name.to_string(),
                rows: q.rows.len() as u64,
                hash: content_hash(&q.rows),
            });
        }
        Ok(out)
    }

    /// Compares home and region checksums; returns the tables that differ (empty when
    /// in step). Differences are expected while writes are in flight; a difference that
    /// persists after quiescence is divergence.
    pub async fn diverged_tables(&self, region: &str) -> Result<Vec<String>> {
        let h = self.home_checksums().await?;
        let r = self.region_checksums(region).await?;
        Ok(h.iter().zip(&r).filter(|(a, b)| a != b).map(|(a, _)| a.table.clone()).collect())
    }

    /// Stops every SyncActor (in-flight requests are abandoned; cursors are durable, so
    /// a restart resumes where the region acked). The store is left running.
    pub async fn shutdown(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(f) = self.inner.forwarder.lock().unwrap_or_else(|p| p.into_inner()).take() {
            f.abort();
        }
        if let Some(f) = self.inner.compactor.lock().unwrap_or_else(|p| p.into_inner()).take() {
            f.abort();
        }
        let regions = self.inner.regions();
        for r in regions.iter() {
            r.actor.stop(None);
        }
        for r in regions.iter() {
            let d = r.done.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(d) = d {
                let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
            }
        }
        self.inner.acked_notify.notify_waiters();
    }
}

impl SyncHandle {
    /// Clears the per-region lag samples (benchmarks: drop the warm-up).
    pub fn reset_lag_stats(&self) {
        for r in self.inner.regions().iter() {
            r.ctx.shared.lags.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}
