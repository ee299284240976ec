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
use edgeswarm_store::{OpOutput, QueryResult, SqlValue, Store};
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

struct Inner {
    store: Store,
    regions: Vec<RegionRuntime>,
    by_name: HashMap<String, usize>,
    router: Arc<Router>,
    registry: Arc<Registry>,
    home_max: Arc<AtomicI64>,
    acked_notify: Arc<Notify>,
    forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
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
pub fn open_link(r: &RegionConfig, cfg: &SyncConfig) -> Result<OpenedLink> {
    if let Some(path) = r.url.strip_prefix("file:") {
        let mut profile = cfg.local_profile.clone();
        profile.latency = Duration::from_millis(r.latency_ms);
        let l = LocalLink::open(&r.name, path, profile)?;
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
        )?;
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
            links.push(open_link(r, &cfg)?);
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
                    let spec = home::load_spec(r, &t, ao).map_err(|e| edgeswarm_store::StoreError::Sql(e.to_string()))?;
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
        let router = Arc::new(Router::default());
        let acked_notify = Arc::new(Notify::new());
        let mut rts = Vec::new();
        let mut by_name = HashMap::new();
        for (i, (r, (link, partition))) in regions.iter().zip(links).enumerate() {
            let (push, pull) = cursors.get(&r.name).copied().unwrap_or((0, 0));
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
            });
            let ctx = Arc::new(RegionCtx {
                name: r.name.clone(),
                link,
                store: store.clone(),
                registry: registry.clone(),
                cfg: cfg.clone(),
                shared,
                home_max: home_max.clone(),
                router: router.clone(),
                acked_notify: acked_notify.clone(),
                home_region: home_region.clone(),
                origin: store.origin().to_string(),
                configured_latency_ms: r.latency_ms,
                order: i,
            });
            let (actor, done) = Actor::spawn(None, SyncActor { ctx: ctx.clone() }, (push, pull))
                .await
                .map_err(|e| SyncError::Internal(format!("cannot start the SyncActor for `{}`: {e}", r.name)))?;
            by_name.insert(r.name.clone(), i);
            rts.push(RegionRuntime {
                ctx,
                actor,
                done: Mutex::new(Some(done)),
                partition,
            });
        }
        let inner = Arc::new(Inner {
            store: store.clone(),
            regions: rts,
            by_name,
            router,
            registry,
            home_max,
            acked_notify,
            forwarder: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        let fwd = tokio::spawn(forward_commits(Arc::downgrade(&inner), store));
        *inner.forwarder.lock().unwrap_or_else(|p| p.into_inner()) = Some(fwd);
        Ok(SyncHandle { inner })
    }
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
            Ok(OpOutput::Unit)
        })
        .await?;
    Ok(())
}

fn wake_all(inner: &Inner) {
    for r in &inner.regions {
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
    fn region(&self, name: &str) -> Result<&RegionRuntime> {
        self.inner
            .by_name
            .get(name)
            .map(|&i| &self.inner.regions[i])
            .ok_or_else(|| SyncError::UnknownRegion {
                name: name.to_string(),
                known: self.regions(),
            })
    }

    /// Configured region names, in configuration order.
    pub fn regions(&self) -> Vec<String> {
        self.inner.regions.iter().map(|r| r.ctx.name.clone()).collect()
    }

    /// The home store this system replicates.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Per-region status, lag, throughput and conflicts.
    pub fn sync_status(&self) -> SyncStatus {
        let regions: Vec<RegionStatus> = self
            .inner
            .regions
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
        let n = self.inner.regions.len();
        let need = required(level, n);
        if self.inner.home_max.fetch_max(seq, Ordering::SeqCst) < seq {
            wake_all(&self.inner);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.acked_notify.notified();
            let reached: Vec<String> = self
                .inner
                .regions
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
            .read(move |r| home::load_spec(r, &n, false).map_err(|e| edgeswarm_store::StoreError::Sql(e.to_string())))
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
                Ok(OpOutput::Unit)
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
                Ok(OpOutput::Unit)
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
        for r in &self.inner.regions {
            r.actor.stop(None);
        }
        for r in &self.inner.regions {
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
        for r in &self.inner.regions {
            r.ctx.shared.lags.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}
