//! `LocalLink`: a region that is a libSQL file on this machine, behind a simulated
//! network (latency, jitter, loss, duplication, bandwidth cap, partition switch).
//!
//! libSQL local calls block, so the file is owned by a dedicated OS thread fed by a
//! bounded, named channel; the async side only sleeps (tokio time, so tests may pause
//! it) and waits for replies.

use super::{LogEntry, PushAck, PushBatch, RegionLink, RegionStmt};
use crate::config::LinkProfile;
use crate::error::{Result, SyncError};
use crate::row::{TableSpec, REGION_LOG_DDL, REGION_LOG_PULL};
use async_trait::async_trait;
use edgeswarm_core::Durability;
use edgeswarm_store::conn::{self, CachedConn};
use edgeswarm_store::{QueryResult, SqlValue, StoreError};
use rand::Rng;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Capacity of the request channel in front of a region thread. Pipelined pushes,
/// pulls and probes of one actor fit comfortably (window + 2).
const CHANNEL_CAPACITY: usize = 128;

type Job = Box<dyn FnOnce(&mut RegionDb) + Send>;

/// WAL pages after which a commit checkpoints inline (SQLite's auto-checkpoint; its
/// default is 1,000). Normally the thread checkpoints earlier, while idle.
const WAL_HIGH_WATER_PAGES: u32 = 16_384;

/// Versions applied since the last checkpoint after which an idle region thread runs a
/// passive checkpoint (roughly SQLite's default 1,000-page threshold for typical rows).
const IDLE_CHECKPOINT_ROWS: usize = 4_000;

/// The region file, opened lazily (and reopened after a failure) on its thread.
struct RegionDb {
    region: String,
    path: PathBuf,
    conn: Option<CachedConn>,
    /// Versions applied since the last checkpoint.
    since_checkpoint: usize,
}

impl RegionDb {
    /// Copies the WAL into the database file while no request is waiting, so a commit
    /// (and the ack behind it) does not pay for it. PASSIVE: never blocks readers or
    /// writers; durability is unchanged (the WAL already holds every committed batch).
    fn idle_checkpoint(&mut self) {
        if self.since_checkpoint < IDLE_CHECKPOINT_ROWS {
            return;
        }
        if let Some(c) = self.conn.as_ref() {
            if c.batch("PRAGMA wal_checkpoint(PASSIVE)").is_ok() {
                self.since_checkpoint = 0;
            }
        }
    }

    fn get(&mut self) -> Result<&mut CachedConn> {
        if self.conn.is_none() {
            if let Some(dir) = self.path.parent() {
                if !dir.as_os_str().is_empty() {
                    let _ = std::fs::create_dir_all(dir);
                }
            }
            let open_err = |e: StoreError| SyncError::RegionOpen {
                region: self.region.clone(),
                path: self.path.display().to_string(),
                reason: match e {
                    StoreError::Open { reason, .. } => reason,
                    other => other.to_string(),
                },
            };
            let (db, c) = conn::open_writer(&self.path, Durability::Normal).map_err(open_err)?;
            let cc = CachedConn::new(db, c);
            cc.batch(REGION_LOG_DDL).map_err(open_err)?;
            // Checkpoints run when the region thread is idle (see `idle_checkpoint`);
            // SQLite's own auto-checkpoint stays as a high-water safety net.
            cc.batch(&format!("PRAGMA wal_autocheckpoint = {WAL_HIGH_WATER_PAGES}"))
                .map_err(open_err)?;
            self.conn = Some(cc);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SyncError::Internal("region connection vanished".into()))
    }

    fn sql_err(&self, e: impl std::fmt::Display) -> SyncError {
        SyncError::RegionSql {
            region: self.region.clone(),
            message: e.to_string(),
        }
    }

    /// Runs statements in one transaction; returns rows changed by log appends.
    fn apply(&mut self, stmts: Vec<RegionStmt>) -> Result<usize> {
        let region = self.region.clone();
        let c = self.get()?;
        let err = |e: StoreError| SyncError::RegionSql {
            region: region.clone(),
            message: e.to_string(),
        };
        c.batch("BEGIN IMMEDIATE").map_err(err)?;
        let mut logged = 0usize;
        let run = (|| {
            for st in stmts {
                // Cached by text: full chunks repeat the same SQL batch after batch.
                let n = c.execute(&st.sql, conn::params(st.params))?;
                if st.counts_applied {
                    logged += n as usize;
                }
            }
            c.batch("COMMIT")
        })();
        match run {
            Ok(()) => {
                self.since_checkpoint += logged;
                Ok(logged)
            }
            Err(e) => {
                let _ = c.batch("ROLLBACK");
                Err(err(e))
            }
        }
    }

    fn query(&mut self, sql: &str, params: Vec<SqlValue>, read_only: bool) -> Result<QueryResult> {
        let c = self.get()?;
        if read_only {
            c.batch("PRAGMA query_only = 1").map_err(|e| SyncError::Internal(e.to_string()))?;
            let r = c.query_once(sql, conn::params(params));
            let _ = c.batch("PRAGMA query_only = 0");
            r.map_err(|e| self.sql_err(e))
        } else {
            c.query(sql, conn::params(params)).map_err(|e| self.sql_err(e))
        }
    }
}

/// A region stored in a local libSQL file, behind a simulated network.
pub struct LocalLink {
    /// Region name (errors and logs).
    region: String,
    /// The configured url (`file:...`).
    url: String,
    /// What the simulated network does to each request.
    profile: LinkProfile,
    /// When true, every request fails as unreachable (flip at run time).
    partitioned: Arc<AtomicBool>,
    /// Bounded request channel to the region thread.
    tx: mpsc::Sender<Job>,
    /// Tables already created in the region file.
    ensured: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for LocalLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLink")
            .field("region", &self.region)
            .field("url", &self.url)
            .finish()
    }
}

impl LocalLink {
    /// Starts the region thread for `path`. The file is opened (created if missing) on
    /// first use; a file that is not a database makes every request fail with
    /// [`SyncError::RegionOpen`], and is retried on each request.
    pub fn open(region: &str, path: impl AsRef<Path>, profile: LinkProfile) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (tx, mut rx) = mpsc::channel::<Job>(CHANNEL_CAPACITY);
        let mut db = RegionDb {
            region: region.to_string(),
            path: path.clone(),
            conn: None,
            since_checkpoint: 0,
        };
        std::thread::Builder::new()
            .name(format!("edgeswarm-region-{region}"))
            .spawn(move || {
                loop {
                    let job = match rx.try_recv() {
                        Ok(job) => job,
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            // Idle: checkpoint now rather than inside a later commit.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.idle_checkpoint()));
                            match rx.blocking_recv() {
                                Some(job) => job,
                                None => break,
                            }
                        }
                    };
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut db)));
                }
            })
            .map_err(|e| SyncError::Internal(format!("cannot start region thread: {e}")))?;
        // Open the file now, off the caller's path (errors surface on the first request).
        let _ = tx.try_send(Box::new(|db: &mut RegionDb| {
            let _ = db.get();
        }));
        Ok(LocalLink {
            region: region.to_string(),
            url: format!("file:{}", path.display()),
            profile,
            partitioned: Arc::new(AtomicBool::new(false)),
            tx,
            ensured: Mutex::new(HashSet::new()),
        })
    }

    /// The partition switch: store `true` to cut the region off, `false` to heal.
    pub fn partition_switch(&self) -> Arc<AtomicBool> {
        self.partitioned.clone()
    }

    async fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut RegionDb) -> Result<T> + Send + 'static) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let _ = reply.send(f(db));
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| SyncError::Internal("region thread stopped".into()))?;
        rx.await.map_err(|_| SyncError::Internal("region job panicked".into()))?
    }

    fn check_partition(&self) -> Result<()> {
        if self.partitioned.load(Ordering::SeqCst) {
            return Err(SyncError::Partitioned {
                region: self.region.clone(),
            });
        }
        Ok(())
    }

    /// Half the RTT plus jitter and transfer time; then checks the partition switch.
    async fn travel(&self, bytes: usize) -> Result<()> {
        let (jitter, lost) = {
            let mut rng = rand::rng();
            let j = if self.profile.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.profile.jitter.mul_f64(rng.random::<f64>())
            };
            let lost = self.profile.loss_rate > 0.0 && rng.random::<f64>() < self.profile.loss_rate / 2.0;
            (j, lost)
        };
        let transfer = match self.profile.bandwidth_bytes_per_sec {
            Some(bw) if bw > 0 => Duration::from_secs_f64(bytes as f64 / bw as f64),
            _ => Duration::ZERO,
        };
        let d = self.profile.latency / 2 + jitter + transfer;
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        self.check_partition()?;
        if lost {
            return Err(SyncError::Lost {
                region: self.region.clone(),
            });
        }
        Ok(())
    }

    async fn ensure_inner(&self, tables: &[Arc<TableSpec>]) -> Result<()> {
        let missing: Vec<String> = {
            let e = self.ensured.lock().unwrap_or_else(|p| p.into_inner());
            tables
                .iter()
                .filter(|t| !e.contains(&*t.name))
                .map(|t| t.create_region_table())
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let sql = missing.join(";\n");
        self.call(move |db| {
            let region = db.region.clone();
            db.get()?.batch(&sql).map_err(|e| SyncError::RegionSql {
                region,
                message: e.to_string(),
            })
        })
        .await?;
        let mut e = self.ensured.lock().unwrap_or_else(|p| p.into_inner());
        for t in tables {
            e.insert(t.name.to_string());
        }
        Ok(())
    }
}

#[async_trait]
impl RegionLink for LocalLink {
    fn region(&self) -> &str {
        &self.region
    }
    fn url(&self) -> &str {
        &self.url
    }

    async fn ensure_tables(&self, tables: &[Arc<TableSpec>]) -> Result<()> {
        self.travel(0).await?;
        self.ensure_inner(tables).await?;
        self.travel(0).await
    }

    async fn push(&self, batch: &PushBatch) -> Result<PushAck> {
        let tables: Vec<_> = batch.tables.values().cloned().collect();
        self.travel(batch.approx_bytes()).await?;
        self.ensure_inner(&tables).await?;
        let stmts = batch.take_statements();
        let dup = self.profile.duplicate_rate > 0.0 && rand::rng().random::<f64>() < self.profile.duplicate_rate;
        let applied = self
            .call(move |db| {
                let again = dup.then(|| stmts.clone());
                let n = db.apply(stmts)?;
                if let Some(s) = again {
                    db.apply(s)?;
                }
                Ok(n)
            })
            .await?;
        self.travel(0).await?;
        Ok(PushAck { applied: Some(applied) })
    }

    async fn pull(&self, after: i64, me: &str, limit: usize) -> Result<Vec<LogEntry>> {
        self.travel(0).await?;
        let me = me.to_string();
        let res = self
            .call(move |db| db.query(REGION_LOG_PULL, vec![after.into(), me.into(), (limit as i64).into()], false))
            .await?;
        let entries: Vec<LogEntry> = res.rows.iter().filter_map(|r| LogEntry::from_row(r)).collect();
        let bytes: usize = entries.iter().map(|e| e.data.as_ref().map(|d| d.len()).unwrap_or(0) + 64).sum();
        self.travel(bytes).await?;
        Ok(entries)
    }

    async fn ping(&self) -> Result<()> {
        self.travel(0).await?;
        self.call(|db| db.get().map(|_| ())).await?;
        self.travel(0).await
    }

    async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult> {
        self.travel(sql.len()).await?;
        let sql = sql.to_string();
        let r = self.call(move |db| db.query(&sql, params, true)).await?;
        self.travel(0).await?;
        Ok(r)
    }
}
