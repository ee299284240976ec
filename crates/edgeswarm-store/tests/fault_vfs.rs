//! Disk faults under the store, through edgeswarm-testkit's fault-injecting VFS: the Nth
//! `xWrite`, `xSync`, `xTruncate` or `xFileSize` on the database file or the WAL fails
//! with `SQLITE_FULL` or `SQLITE_IOERR_*`, swept across a batch commit (typed writes,
//! kv CAS and sets, raw SQL from several callers at once) and across a checkpoint; and a
//! size cap fills the "disk".
//!
//! For every N: every ack is true (acked means present after reopening the file with the
//! plain VFS), every failure reaches its caller as a typed `StoreError` carrying the
//! SQLite code, the store takes new writes once the fault clears, and
//! `PRAGMA integrity_check` says ok. These hold with or without per-op isolation in the
//! writer (today one failing commit fails its whole batch, truthfully).
//!
//! CI runs a sample of N per (file, operation, code); `EDGESWARM_FAULT_SWEEP=full` sweeps
//! every N, with rounds three times bigger (scripts/crash.sh runs it).

use edgeswarm_core::{Durability, Message, Metric, StoreConfig};
use edgeswarm_store::kv::CasOutcome;
use edgeswarm_store::{SqlValue, Store, StoreError};
use edgeswarm_testkit::fault_vfs::{Fault, FaultCode, FaultVfs, FileKind, IoOp};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

const NS: &str = "fault";

/// One write a caller made, to look for after reopening.
#[derive(Debug, Clone)]
enum Item {
    Metric(String),
    Message(String),
    Note(String),
    /// A kv key and the version its ack reported.
    Kv(String, i64),
}

/// What one round of load saw.
#[derive(Default)]
struct Outcome {
    acked: Vec<Item>,
    failed: Vec<(Item, StoreError)>,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.acked.extend(o.acked);
        self.failed.extend(o.failed);
    }
}

fn full_sweep() -> bool {
    std::env::var("EDGESWARM_FAULT_SWEEP").is_ok_and(|v| v == "full")
}

async fn open_faulty(path: &Path, vfs: &FaultVfs) -> Store {
    let mut cfg = StoreConfig::at(path);
    cfg.vfs = Some(vfs.name().to_string());
    cfg.read_pool_size = 2;
    cfg.durability = Durability::Full;
    edgeswarm_testkit::open_store_with(cfg).await
}

async fn setup_tables(s: &Store) {
    s.execute_sql(
        "CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, n INTEGER NOT NULL, body TEXT)",
        vec![],
    )
    .await
    .unwrap();
}

/// One round of mixed load from several callers at once, `tag` naming its keys: three
/// callers queue typed records without waiting (so they share batches), one runs a kv
/// CAS chain, one kv sets, one raw SQL inserts.
async fn load(s: &Store, tag: &str, per_caller: usize) -> Outcome {
    let mut tasks = Vec::new();
    for c in 0..3 {
        let s = s.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            let mut pending = Vec::new();
            for i in 0..per_caller {
                let (item, r) = if i.is_multiple_of(2) {
                    let m = Metric::new(format!("{tag}-c{c}"), "fault", i as f64, 1);
                    (Item::Metric(m.id.clone()), s.enqueue_record(m).await)
                } else {
                    let m = Message::new(
                        format!("{tag}-c{c}"),
                        "user",
                        format!("message {i} of {tag} caller {c} {}", "x".repeat(200)),
                    );
                    (Item::Message(m.id.clone()), s.enqueue_record(m).await)
                };
                match r {
                    Ok(ack) => pending.push((item, ack)),
                    Err(e) => out.failed.push((item, e)),
                }
            }
            for (item, ack) in pending {
                match ack.wait().await {
                    Ok(_) => out.acked.push(item),
                    Err(e) => out.failed.push((item, e)),
                }
            }
            out
        }));
    }
    {
        let s = s.clone();
        let key = format!("{tag}-cas");
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            for i in 0..per_caller / 2 {
                let cur = s.kv_get(NS, &key).await.unwrap().map(|e| e.version);
                match s.kv_cas(NS, &key, cur, json!({ "i": i }), None).await {
                    Ok(CasOutcome::Swapped { version }) => out.acked.push(Item::Kv(key.clone(), version)),
                    Ok(CasOutcome::Conflict { current }) => panic!("CAS conflict with one writer: {current:?}"),
                    Err(e) => out.failed.push((Item::Kv(key.clone(), -1), e)),
                }
            }
            out
        }));
    }
    {
        let s = s.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            for i in 0..per_caller / 2 {
                let key = format!("{tag}-set-{i}");
                match s.kv_set(NS, &key, json!(i), None).await {
                    Ok(version) => out.acked.push(Item::Kv(key, version)),
                    Err(e) => out.failed.push((Item::Kv(key, -1), e)),
                }
            }
            out
        }));
    }
    {
        let s = s.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            for i in 0..per_caller / 2 {
                let id = format!("{tag}-note-{i}");
                let r = s
                    .execute_sql(
                        "INSERT INTO notes (id, n, body) VALUES (?1, ?2, ?3)",
                        vec![
                            SqlValue::Text(id.clone()),
                            SqlValue::Integer(i as i64),
                            SqlValue::Text("y".repeat(300)),
                        ],
                    )
                    .await;
                match r {
                    Ok(_) => out.acked.push(Item::Note(id)),
                    Err(e) => out.failed.push((Item::Note(id), e)),
                }
            }
            out
        }));
    }
    let mut all = Outcome::default();
    for t in tasks {
        all.merge(t.await.unwrap());
    }
    all
}

/// Every failure is typed and carries the SQLite code of a disk error: `Full` (13) or
/// `Io` (10), possibly inside `BatchFailed`.
fn assert_typed(failed: &[(Item, StoreError)], ctx: &str) {
    for (item, e) in failed {
        let code = e
            .sqlite_code()
            .unwrap_or_else(|| panic!("{ctx}: {item:?} failed without a SQLite code: {e:?}"));
        let inner = match e {
            StoreError::BatchFailed { cause } => &**cause,
            e => e,
        };
        match code & 0xff {
            13 => assert!(
                matches!(inner, StoreError::Full(_)),
                "{ctx}: code 13 must be StoreError::Full: {e:?}"
            ),
            10 => assert!(matches!(inner, StoreError::Io(_)), "{ctx}: code 10 must be StoreError::Io: {e:?}"),
            other => panic!("{ctx}: {item:?} failed with SQLite code {code} ({other}), not a disk error: {e}"),
        }
    }
}

/// Reopens `path` with the default VFS and checks every acked write is there and the
/// file is intact; returns how many failed writes are there anyway (a failure at the
/// last step, an fsync, can leave a commit that SQLite finds on reopening).
async fn verify(path: &Path, all: &Outcome, ctx: &str) -> usize {
    let s = edgeswarm_testkit::open_store(path).await;
    let present = |s: Store, item: Item| async move {
        let (sql, p, min): (&str, Vec<SqlValue>, i64) = match &item {
            Item::Metric(id) => (
                "SELECT count(*) FROM agent_metrics WHERE id = ?1",
                vec![SqlValue::Text(id.clone())],
                1,
            ),
            Item::Message(id) => (
                "SELECT count(*) FROM conversations WHERE id = ?1",
                vec![SqlValue::Text(id.clone())],
                1,
            ),
            Item::Note(id) => ("SELECT count(*) FROM notes WHERE id = ?1", vec![SqlValue::Text(id.clone())], 1),
            Item::Kv(key, v) => (
                "SELECT coalesce(max(version), 0) FROM kv WHERE namespace = ?1 AND key = ?2",
                vec![SqlValue::Text(NS.into()), SqlValue::Text(key.clone())],
                (*v).max(1),
            ),
        };
        let r = s.read_sql(sql, p).await.unwrap();
        r.rows[0][0].as_i64().unwrap_or(0) >= min
    };
    for item in &all.acked {
        assert!(
            present(s.clone(), item.clone()).await,
            "{ctx}: acked write lost after reopening: {item:?}"
        );
    }
    let mut ghosts = 0;
    for (item, _) in &all.failed {
        if !matches!(item, Item::Kv(_, -1)) && present(s.clone(), item.clone()).await {
            ghosts += 1;
        }
    }
    let ic = s.read_sql("PRAGMA integrity_check", vec![]).await.unwrap();
    assert_eq!(ic.rows[0][0].as_str(), Some("ok"), "{ctx}: integrity_check");
    s.shutdown().await.unwrap();
    ghosts
}

/// The N values to try for a workload that made `calls` calls: all of them in a full
/// sweep, else the first few, the last few and an even spread between.
fn sample(calls: u64, ci_points: u64) -> Vec<u64> {
    if calls == 0 {
        return Vec::new();
    }
    if full_sweep() || calls <= ci_points {
        return (1..=calls).collect();
    }
    let mut v: Vec<u64> = (1..=3).chain(calls - 2..=calls).collect();
    let step = calls / (ci_points - 6).max(1);
    v.extend((1..ci_points - 6).map(|i| i * step.max(1)));
    v.sort_unstable();
    v.dedup();
    v.retain(|n| (1..=calls).contains(n));
    v
}

/// Measures how many calls of each (file, op) one round of load makes on a fresh store.
async fn measure_batch_calls(per_caller: usize) -> HashMap<(FileKind, IoOp), u64> {
    let vfs = FaultVfs::register();
    let dir = edgeswarm_testkit::temp_dir();
    let path = dir.path().join("home.db");
    let s = open_faulty(&path, &vfs).await;
    setup_tables(&s).await;
    load(&s, "warm", per_caller).await;
    vfs.reset_calls();
    let out = load(&s, "measure", per_caller).await;
    assert!(out.failed.is_empty(), "no fault armed, yet writes failed: {:?}", out.failed.first());
    let mut m = HashMap::new();
    for k in [FileKind::MainDb, FileKind::Wal] {
        for op in IoOp::ALL {
            m.insert((k, op), vfs.calls(k, op));
        }
    }
    s.shutdown().await.unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_commit_sweep_keeps_acks_true_and_recovers() {
    // The full sweep also takes bigger rounds (bigger batches, more WAL frames).
    let per_caller: usize = if full_sweep() { 24 } else { 8 };
    let calls = measure_batch_calls(per_caller).await;
    eprintln!("calls per round: {calls:?}");
    let plans: &[(FileKind, IoOp, FaultCode, bool)] = &[
        (FileKind::Wal, IoOp::Write, FaultCode::Full, false),
        (FileKind::Wal, IoOp::Write, FaultCode::IoErr, false),
        (FileKind::Wal, IoOp::Sync, FaultCode::IoErr, false),
        (FileKind::Wal, IoOp::Write, FaultCode::IoErr, true),
        (FileKind::Wal, IoOp::FileSize, FaultCode::IoErr, false),
        (FileKind::MainDb, IoOp::FileSize, FaultCode::IoErr, false),
        (FileKind::MainDb, IoOp::Sync, FaultCode::IoErr, false),
        (FileKind::Wal, IoOp::Truncate, FaultCode::IoErr, false),
    ];
    let mut report = Vec::new();
    for &(kind, op, code, persistent) in plans {
        let m = calls.get(&(kind, op)).copied().unwrap_or(0);
        let ns = sample(m, 12);
        if ns.is_empty() {
            report.push(format!("{kind:?}/{op:?}: no calls in a round, skipped"));
            continue;
        }
        let vfs = FaultVfs::register();
        let dir = edgeswarm_testkit::temp_dir();
        let path = dir.path().join("home.db");
        let s = open_faulty(&path, &vfs).await;
        setup_tables(&s).await;
        let mut all = Outcome::default();
        let (mut fired_points, mut failures) = (0, 0);
        for &n in &ns {
            let ctx = format!("{kind:?}/{op:?}/{code:?}{} N={n}", if persistent { "/persistent" } else { "" });
            vfs.arm(Fault {
                kind,
                op,
                nth: n,
                code,
                persistent,
            });
            let out = load(&s, &format!("n{n}"), per_caller).await;
            let fired = vfs.fired();
            vfs.disarm();
            assert_typed(&out.failed, &ctx);
            if fired == 0 {
                assert!(out.failed.is_empty(), "{ctx}: nothing injected, yet {:?}", out.failed.first());
            } else {
                fired_points += 1;
            }
            failures += out.failed.len();
            all.merge(out);
            // The fault cleared: the store takes writes again at once.
            let after = load(&s, &format!("n{n}-after"), 4).await;
            assert!(
                after.failed.is_empty(),
                "{ctx}: writes still fail after the fault cleared: {:?}",
                after.failed.first()
            );
            all.merge(after);
        }
        s.shutdown().await.unwrap();
        let ghosts = verify(&path, &all, &format!("{kind:?}/{op:?}/{code:?}")).await;
        assert!(fired_points > 0, "{kind:?}/{op:?}: the fault never fired over N in {ns:?}");
        report.push(format!(
            "{kind:?}/{op:?}/{code:?}{}: {} points (fired at {fired_points}), {} acked, {failures} failed (typed), {ghosts} failed-but-present",
            if persistent { "/persistent" } else { "" },
            ns.len(),
            all.acked.len(),
        ));
    }
    for r in &report {
        eprintln!("{r}");
    }
}

/// A connection of its own through `vfs`, as the store's checkpointer thread keeps one.
fn checkpoint_conn(path: &Path, vfs: &FaultVfs) -> (libsql::Database, libsql::Connection) {
    edgeswarm_store::conn::open_writer_vfs(path, Durability::Full, Some(vfs.name())).unwrap()
}

/// Runs `PRAGMA wal_checkpoint(TRUNCATE)` on `c` (the store's checkpointer runs PASSIVE).
fn checkpoint(c: &libsql::Connection) -> Result<(), StoreError> {
    edgeswarm_store::conn::run(async {
        let mut rows = c.query("PRAGMA wal_checkpoint(TRUNCATE)", ()).await?;
        while rows.next().await?.is_some() {}
        Ok::<_, libsql::Error>(())
    })?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_sweep_loses_nothing_and_recovers() {
    // Measure a checkpoint's calls after one round of load.
    let calls = {
        let vfs = FaultVfs::register();
        let dir = edgeswarm_testkit::temp_dir();
        let path = dir.path().join("home.db");
        let s = open_faulty(&path, &vfs).await;
        setup_tables(&s).await;
        load(&s, "warm", 8).await;
        let (_db, c) = checkpoint_conn(&path, &vfs);
        vfs.reset_calls();
        checkpoint(&c).unwrap();
        let m: HashMap<(FileKind, IoOp), u64> = [FileKind::MainDb, FileKind::Wal]
            .into_iter()
            .flat_map(|k| IoOp::ALL.map(|op| ((k, op), vfs.calls(k, op))))
            .collect();
        s.shutdown().await.unwrap();
        m
    };
    eprintln!("calls per checkpoint: {calls:?}");
    let plans: &[(FileKind, IoOp, FaultCode, bool)] = &[
        (FileKind::MainDb, IoOp::Write, FaultCode::IoErr, false),
        (FileKind::MainDb, IoOp::Write, FaultCode::Full, false),
        (FileKind::MainDb, IoOp::Write, FaultCode::IoErr, true),
        (FileKind::MainDb, IoOp::Sync, FaultCode::IoErr, false),
        (FileKind::Wal, IoOp::Sync, FaultCode::IoErr, false),
        (FileKind::Wal, IoOp::Truncate, FaultCode::IoErr, false),
        (FileKind::MainDb, IoOp::Truncate, FaultCode::IoErr, false),
        (FileKind::MainDb, IoOp::FileSize, FaultCode::IoErr, false),
    ];
    let mut report = Vec::new();
    for &(kind, op, code, persistent) in plans {
        let m = calls.get(&(kind, op)).copied().unwrap_or(0);
        let ns = sample(m, 10);
        if ns.is_empty() {
            report.push(format!("{kind:?}/{op:?}: no calls in a checkpoint, skipped"));
            continue;
        }
        let vfs = FaultVfs::register();
        let dir = edgeswarm_testkit::temp_dir();
        let path = dir.path().join("home.db");
        let s = open_faulty(&path, &vfs).await;
        setup_tables(&s).await;
        let (_db, c) = checkpoint_conn(&path, &vfs);
        let mut all = Outcome::default();
        let (mut fired_points, mut errors) = (0, 0);
        for &n in &ns {
            let ctx = format!(
                "checkpoint {kind:?}/{op:?}/{code:?}{} N={n}",
                if persistent { "/persistent" } else { "" }
            );
            let before = load(&s, &format!("n{n}"), 8).await;
            assert!(before.failed.is_empty(), "{ctx}: {:?}", before.failed.first());
            all.merge(before);
            vfs.arm(Fault {
                kind,
                op,
                nth: n,
                code,
                persistent,
            });
            let r = checkpoint(&c);
            // Commits go on while the checkpoint failed (and, persistent, while it
            // would keep failing): they only append to the WAL.
            let during = if persistent && kind == FileKind::MainDb {
                let d = load(&s, &format!("n{n}-during"), 4).await;
                assert_typed(&d.failed, &ctx);
                Some(d)
            } else {
                None
            };
            let fired = vfs.fired();
            vfs.disarm();
            if let Err(e) = &r {
                errors += 1;
                assert_typed(&[(Item::Note("checkpoint".into()), e.clone())], &ctx);
            }
            if fired > 0 {
                fired_points += 1;
            }
            if let Some(d) = during {
                assert!(
                    d.failed.is_empty(),
                    "{ctx}: a failing checkpoint failed commits: {:?}",
                    d.failed.first()
                );
                all.merge(d);
            }
            let after = load(&s, &format!("n{n}-after"), 4).await;
            assert!(
                after.failed.is_empty(),
                "{ctx}: writes fail after the fault cleared: {:?}",
                after.failed.first()
            );
            all.merge(after);
            // With the fault gone the next checkpoint goes through.
            checkpoint(&c).unwrap_or_else(|e| panic!("{ctx}: checkpoint after the fault cleared: {e}"));
        }
        s.shutdown().await.unwrap();
        verify(&path, &all, &format!("checkpoint {kind:?}/{op:?}/{code:?}")).await;
        assert!(
            fired_points > 0,
            "checkpoint {kind:?}/{op:?}: the fault never fired over N in {ns:?}"
        );
        report.push(format!(
            "checkpoint {kind:?}/{op:?}/{code:?}{}: {} points (fired at {fired_points}), {errors} checkpoint errors (typed), {} acked writes kept",
            if persistent { "/persistent" } else { "" },
            ns.len(),
            all.acked.len()
        ));
    }
    for r in &report {
        eprintln!("{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_with_sqlite_full_and_recovers_when_space_returns() {
    let vfs = FaultVfs::register();
    let dir = edgeswarm_testkit::temp_dir();
    let path = dir.path().join("home.db");
    let s = open_faulty(&path, &vfs).await;
    setup_tables(&s).await;
    let mut all = load(&s, "before", 8).await;
    assert!(all.failed.is_empty());
    // The disk has 256 KiB left beyond the largest file.
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal = path.with_file_name("home.db-wal");
    let cap = size(&path).max(size(&wal)) + 256 * 1024;
    vfs.set_size_cap(Some(cap));
    let mut full_errors = 0;
    let mut rounds = 0;
    while full_errors == 0 {
        rounds += 1;
        assert!(rounds <= 200, "no SQLITE_FULL after {rounds} rounds with a {cap}-byte cap");
        let out = load(&s, &format!("fill{rounds}"), 8).await;
        assert_typed(&out.failed, "full disk");
        for (item, e) in &out.failed {
            assert_eq!(
                e.sqlite_code().map(|c| c & 0xff),
                Some(13),
                "a full disk reports SQLITE_FULL: {item:?} {e}"
            );
            assert!(!e.is_retryable(), "a full disk is not retryable as is: {e}");
        }
        full_errors += out.failed.len();
        all.merge(out);
    }
    // Still full: more writes fail the same way, and nothing crashes.
    let still = load(&s, "still-full", 8).await;
    assert_typed(&still.failed, "still full");
    all.merge(still);
    assert!(vfs.cap_refusals() > 0);
    // Space returns: writes work again at once.
    vfs.set_size_cap(None);
    let after = load(&s, "space-back", 8).await;
    assert!(
        after.failed.is_empty(),
        "writes fail after space returned: {:?}",
        after.failed.first()
    );
    all.merge(after);
    s.shutdown().await.unwrap();
    let ghosts = verify(&path, &all, "full disk").await;
    eprintln!(
        "full disk: cap {cap} bytes, {rounds} rounds to fill, {full_errors} SQLITE_FULL failures, {} acked, {ghosts} failed-but-present",
        all.acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_checkpointer_never_fails_a_commit() {
    // The store's own checkpointer thread (kicked every 4 MiB committed) cannot write
    // the database file at all; commits only append to the WAL and keep acking.
    let vfs = FaultVfs::register();
    let dir = edgeswarm_testkit::temp_dir();
    let path = dir.path().join("home.db");
    let s = open_faulty(&path, &vfs).await;
    setup_tables(&s).await;
    vfs.arm(Fault {
        kind: FileKind::MainDb,
        op: IoOp::Write,
        nth: 1,
        code: FaultCode::IoErr,
        persistent: true,
    });
    let body = "z".repeat(4000);
    let mut acked = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut round = 0;
    // Write until the checkpointer has run into the fault (a kick needs 4 MiB).
    while vfs.fired() == 0 {
        round += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpointer never wrote the database file"
        );
        let mut pending = Vec::new();
        for i in 0..200 {
            let m = Message::new(format!("ckpt-{round}"), "user", format!("{i} {body}"));
            acked.push(Item::Message(m.id.clone()));
            pending.push(s.enqueue_record(m).await.unwrap());
        }
        for p in pending {
            p.wait().await.expect("a failing checkpoint must not fail a commit");
        }
    }
    vfs.disarm();
    let after = load(&s, "after", 4).await;
    assert!(after.failed.is_empty(), "{:?}", after.failed.first());
    s.shutdown().await.unwrap();
    let mut all = Outcome { acked, failed: Vec::new() };
    all.merge(after);
    verify(&path, &all, "failing checkpointer").await;
    eprintln!(
        "failing checkpointer: {} writes acked while every checkpoint write failed ({} refused)",
        all.acked.len(),
        vfs.fired()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_fsync_failed_is_unknown_not_absent() {
    // SQLite writes a commit's WAL frames, then fsyncs the WAL. When that fsync fails the
    // caller gets a typed I/O error, and the running store never shows the write (the
    // next commit overwrites those frames). But if the process dies before that next
    // commit, recovery finds the frames whole and the "failed" write is there. So a
    // failure means "not known to be stored": retry it (records are idempotent by id).
    let vfs = FaultVfs::register();
    let dir = edgeswarm_testkit::temp_dir();
    let path = dir.path().join("home.db");
    let s = open_faulty(&path, &vfs).await;
    s.publish(Metric::new("warm", "t", 1.0, 1)).await.unwrap();
    vfs.arm(Fault {
        kind: FileKind::Wal,
        op: IoOp::Sync,
        nth: 1,
        code: FaultCode::IoErr,
        persistent: false,
    });
    let m = Metric::new("ghost", "t", 1.0, 1);
    let e = s.publish(m.clone()).await.expect_err("the commit's fsync failed");
    assert_eq!(e.sqlite_code(), Some(1034), "SQLITE_IOERR_FSYNC: {e}");
    vfs.disarm();
    let live = |s: Store, id: String| async move {
        let r = s
            .read_sql("SELECT count(*) FROM agent_metrics WHERE id = ?1", vec![SqlValue::Text(id)])
            .await
            .unwrap();
        r.rows[0][0].as_i64().unwrap()
    };
    assert_eq!(
        live(s.clone(), m.id.clone()).await,
        0,
        "the running store does not show a failed write"
    );
    // "Crash" now: copy the database and the WAL as they are (no -shm, so the next
    // opener recovers from the WAL, as after a SIGKILL).
    let crashed = edgeswarm_testkit::temp_dir();
    let copy = crashed.path().join("home.db");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::copy(path.with_file_name("home.db-wal"), copy.with_file_name("home.db-wal")).unwrap();
    let after_crash = edgeswarm_testkit::open_store(&copy).await;
    let found_after_crash = live(after_crash.clone(), m.id.clone()).await;
    after_crash.shutdown().await.unwrap();
    assert_eq!(
        found_after_crash, 1,
        "SQLite recovers a commit whose frames were written before the failed fsync; docs/reliability.md says so (update both if this changes)"
    );
    // The store goes on: the next commit overwrites the unsynced frames.
    s.publish(Metric::new("next", "t", 1.0, 1)).await.unwrap();
    s.shutdown().await.unwrap();
    let reopened = edgeswarm_testkit::open_store(&path).await;
    assert_eq!(live(reopened.clone(), m.id.clone()).await, 0, "overwritten by the next commit");
    // A retry stores it exactly once, whichever way it went.
    reopened.publish(m.clone()).await.unwrap();
    assert_eq!(live(reopened.clone(), m.id.clone()).await, 1);
    reopened.shutdown().await.unwrap();
}
