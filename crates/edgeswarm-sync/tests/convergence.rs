//! Convergence under a seeded simulation: 3 nodes (own home files) x 4 shared local
//! regions; random inserts, updates (typed and raw SQL), deletes, kv conflicts;
//! lossy, duplicating, jittery links (so batches are redelivered and reordered);
//! partitions and heals; node restarts. Faults on top: clock skew (versions from a
//! node whose clock runs ahead, within the drift and past it), equal stamps with
//! different content, poison rows (node 0 has a UNIQUE index the others lack, dropped
//! at the end so its parked rows apply), wiped regions (emptied and given a new
//! identity while the nodes run), and compaction every 300 ms plus on demand. After
//! quiescence every home file and every region holds identical rows (content hash), no
//! acked write is missing, and nothing stays parked.
//!
//! Seeds: `EDGESWARM_SIM_SEEDS=1,2,3` (default 7 and 42).
use edgeswarm_core::{Durability, Hlc};
use edgeswarm_core::{Knowledge, Metric};
use edgeswarm_store::conn::{self, CachedConn};
use edgeswarm_store::{SqlValue, Store};
use edgeswarm_sync::link::PushBatch;
use edgeswarm_sync::{LinkProfile, LocalLink, RegionConfig, RegionLink, RowVersion, SyncConfig, SyncHandle, SyncSystem, TableSpec};
use edgeswarm_testkit::sync::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const REGIONS: [(&str, u64); 4] = [("us-west-2", 2), ("eu-central-1", 4), ("ap-southeast-1", 6), ("sa-east-1", 8)];

struct Node {
    path: PathBuf,
    store: Store,
    sync: SyncHandle,
}

fn cfg() -> SyncConfig {
    SyncConfig {
        batch_rows: 16,
        local_profile: LinkProfile {
            jitter: Duration::from_millis(4),
            loss_rate: 0.05,
            duplicate_rate: 0.1,
            ..Default::default()
        },
        compact_interval: Duration::from_millis(300),
        compact_rows: 200,
        ..fast_cfg()
    }
}

async fn start(path: PathBuf, regions: &[RegionConfig]) -> Node {
    let store = open_store(&path).await;
    let sync = SyncSystem::start(store.clone(), regions.to_vec(), cfg()).await.expect("start sync");
    // A user table; node 0 alone has a UNIQUE index on it, so rows from the others can
    // be poison there.
    let first = store
        .read_sql("SELECT COUNT(*) FROM sqlite_master WHERE name = 'notes'", vec![])
        .await
        .unwrap()
        .rows[0][0]
        .as_i64()
        .is_none_or(|n| n == 0);
    if first {
        store
            .execute_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", vec![])
            .await
            .unwrap();
        if path.ends_with("node0.db") {
            store
                .execute_sql("CREATE UNIQUE INDEX notes_body ON notes(body)", vec![])
                .await
                .unwrap();
        }
    }
    sync.replicate_table("notes").await.unwrap();
    Node { path, store, sync }
}

/// A connection to a region file, playing a node the simulation does not run.
fn region_conn(dir: &std::path::Path, region: &str) -> CachedConn {
    let (db, c) = conn::open_writer(&dir.join(format!("region-{region}.db")), Durability::Normal).unwrap();
    CachedConn::new(db, c)
}

/// Pushes a kv version of node `origin` to a region, as that node would (same
/// statements: LWW-guarded, logged only if it wins).
async fn inject_kv(dir: &std::path::Path, region: &str, key: &str, value: &str, hlc: i64, origin: &str) {
    let cols = [
        "namespace",
        "key",
        "value",
        "version",
        "expires_at",
        "updated_at",
        "deleted",
        "hlc",
        "origin",
    ];
    let types = [
        "TEXT", "TEXT", "TEXT", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "TEXT",
    ];
    let spec = Arc::new(TableSpec {
        name: "kv".into(),
        columns: cols.map(String::from).to_vec().into(),
        types: types.map(String::from).to_vec().into(),
        pk: vec!["namespace".to_string(), "key".to_string()].into(),
        append_only: false,
    });
    let now = edgeswarm_core::record::now_millis();
    let v = RowVersion::from_row(
        spec.name.clone(),
        edgeswarm_store::kv::row_id("sim", key),
        spec.columns.clone(),
        vec![
            "sim".into(),
            key.into(),
            value.into(),
            1i64.into(),
            SqlValue::Null,
            now.into(),
            0i64.into(),
            hlc.into(),
            origin.into(),
        ],
    )
    .unwrap();
    let link = LocalLink::open(region, dir.join(format!("region-{region}.db")), LinkProfile::default(), 4).unwrap();
    let tables = HashMap::from([(spec.name.clone(), spec)]);
    let b = PushBatch::new(edgeswarm_core::new_id(), origin.to_string(), vec![v], tables, 8);
    link.push(&b).await.unwrap();
}

/// Empties a region and gives it a new identity, as if it was wiped and recreated.
fn wipe(rc: &mut CachedConn) {
    let tables: Vec<String> = rc
        .query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            vec![],
        )
        .unwrap()
        .rows
        .iter()
        .filter_map(|r| r[0].as_str().map(str::to_string))
        .collect();
    rc.batch("BEGIN IMMEDIATE").unwrap();
    for t in tables {
        rc.batch(&format!("DELETE FROM \"{t}\"")).unwrap();
    }
    rc.execute(
        "INSERT INTO _region_meta (key, value) VALUES ('epoch', ?1)",
        conn::params(vec![edgeswarm_core::new_id().into()]),
    )
    .unwrap();
    rc.batch("COMMIT").unwrap();
}

async fn restart(n: &mut Node, regions: &[RegionConfig]) {
    n.sync.shutdown().await;
    n.store.shutdown().await.expect("store shutdown");
    *n = start(n.path.clone(), regions).await;
}

async fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let regions = local_regions(dir.path(), &REGIONS);
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(start(dir.path().join(format!("node{i}.db")), &regions).await);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked_ids: BTreeSet<String> = BTreeSet::new();
    let mut knowledge_ids: Vec<String> = Vec::new();
    let mut kv_keys: BTreeSet<String> = BTreeSet::new();
    let mut restarts = 0;
    let mut partitions = 0;
    let mut wipes = 0;
    for step in 0..400 {
        let ni = rng.random_range(0..3);
        let n = &nodes[ni];
        let p: f64 = rng.random();
        if p < 0.25 {
            let k = Knowledge::new("sim", format!("topic {step}"), format!("content {step} from node {ni}"));
            let id = k.id.clone();
            n.store.publish(k).await.unwrap();
            acked_ids.insert(id.clone());
            knowledge_ids.push(id);
        } else if p < 0.50 {
            let key = format!("k{}", rng.random_range(0..8));
            n.store
                .kv_set("sim", &key, serde_json::json!({"step": step, "node": ni}), None)
                .await
                .unwrap();
            kv_keys.insert(key);
        } else if p < 0.58 {
            let key = format!("k{}", rng.random_range(0..8));
            n.store.kv_delete("sim", &key).await.unwrap();
        } else if p < 0.70 && !knowledge_ids.is_empty() {
            let id = knowledge_ids[rng.random_range(0..knowledge_ids.len())].clone();
            // Plain SQL on the writer (raw SQL from users may not write `knowledge`):
            // the sync triggers stamp and log it.
            let text = format!("edited at {step} by {ni}");
            n.store
                .transact(move |ctx| {
                    ctx.execute(
                        "UPDATE knowledge SET content = ?1 WHERE id = ?2",
                        vec![SqlValue::Text(text), id.into()],
                    )
                })
                .await
                .unwrap();
        } else if p < 0.74 && !knowledge_ids.is_empty() {
            let id = knowledge_ids[rng.random_range(0..knowledge_ids.len())].clone();
            n.store
                .transact(move |ctx| ctx.execute("DELETE FROM knowledge WHERE id = ?1", vec![id.into()]))
                .await
                .unwrap();
        } else if p < 0.86 {
            let m = Metric::new(format!("agent-{ni}"), "sim", step as f64, step as i64);
            acked_ids.insert(m.id.clone());
            n.store.publish(m).await.unwrap();
        } else if p < 0.90 {
            let r = REGIONS[rng.random_range(0..4)].0;
            n.sync.partition(r, rng.random_bool(0.6)).unwrap();
            partitions += 1;
        } else if p < 0.93 {
            // Notes: the same few bodies from every node, so node 0's UNIQUE index
            // refuses some of them (ignored when node 0 writes them itself).
            let _ = n
                .store
                .execute_sql(
                    "INSERT INTO notes (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                    vec![rng.random_range(0..20i64).into(), format!("body {}", rng.random_range(0..6)).into()],
                )
                .await;
        } else if p < 0.945 {
            // Fault injection straight into a region file.
            let r = REGIONS[rng.random_range(0..4)].0;
            let now = edgeswarm_core::record::now_millis() as u64;
            let key = format!("k{}", rng.random_range(0..8));
            let d = dir.path();
            match rng.random_range(0..4) {
                // A node whose clock is 30 s fast (within the drift).
                0 => {
                    inject_kv(
                        d,
                        r,
                        &key,
                        &format!("\"skew {step}\""),
                        Hlc::new(now + 30_000, 0).as_i64(),
                        "skewed-node",
                    )
                    .await
                }
                // One 60.5 s fast (past the drift): held back, applied once the clocks
                // agree.
                1 => {
                    inject_kv(
                        d,
                        r,
                        &key,
                        &format!("\"future {step}\""),
                        Hlc::new(now + 60_500, 0).as_i64(),
                        "future-node",
                    )
                    .await
                }
                // One stamp, two contents, in two regions: a tie broken by content.
                2 => {
                    let stamp = Hlc::new(now, 7).as_i64();
                    let other = REGIONS[(REGIONS.iter().position(|x| x.0 == r).unwrap() + 1) % 4].0;
                    inject_kv(d, r, &key, &format!("\"tie a {step}\""), stamp, "tie-node").await;
                    inject_kv(d, other, &key, &format!("\"tie b {step}\""), stamp, "tie-node").await;
                }
                _ if wipes < 2 => {
                    wipe(&mut region_conn(d, r));
                    wipes += 1;
                }
                _ => {}
            }
            kv_keys.insert(key);
        } else if p < 0.95 {
            n.sync.compact_now().await.unwrap();
        } else if p < 0.975 {
            restarts += 1;
            let n = &mut nodes[ni];
            restart(n, &regions).await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(1..30))).await;
        }
        if step % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for n in &nodes {
        for (r, _) in REGIONS {
            n.sync.partition(r, false).unwrap();
        }
    }
    // Node 0 drops the index that refused rows: its parked rows apply.
    nodes[0].store.execute_sql("DROP INDEX notes_body", vec![]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        for n in &nodes {
            let _ = n.sync.retry_parked(None).await;
        }
        let parked: i64 = nodes.iter().flat_map(|n| n.sync.sync_status().regions).map(|r| r.parked).sum();
        if parked == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rows stay parked: {parked}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names: Vec<&str> = REGIONS.iter().map(|r| r.0).collect();
    let handles: Vec<&SyncHandle> = nodes.iter().map(|n| &n.sync).collect();
    let sums = wait_converged(&handles, &names, Duration::from_secs(90)).await;
    let reseeds: u64 = nodes.iter().flat_map(|n| n.sync.sync_status().regions).map(|r| r.reseeds).sum();
    eprintln!(
        "seed {seed}: converged after {restarts} restarts, {partitions} partition flips, {wipes} wipes ({reseeds} re-seeds): {sums:?}"
    );
    for n in &nodes {
        let c: i64 = n.store.read_sql("SELECT COUNT(*) FROM _sync_parked", vec![]).await.unwrap().rows[0][0]
            .as_i64()
            .unwrap();
        assert_eq!(c, 0, "parked rows left");
    }

    // No acked write is missing, anywhere.
    let ids: Vec<String> = acked_ids.iter().cloned().collect();
    let check = |q: edgeswarm_store::QueryResult, what: &str| {
        let got: BTreeSet<String> = q.rows.iter().filter_map(|r| r[0].as_str().map(str::to_string)).collect();
        for id in &ids {
            assert!(got.contains(id), "{what}: acked record {id} is missing");
        }
    };
    let all_ids_sql = "SELECT id FROM knowledge UNION ALL SELECT id FROM agent_metrics";
    for n in &nodes {
        check(n.store.read_sql(all_ids_sql, vec![]).await.unwrap(), "home");
    }
    for r in &names {
        // A region read can fail for a moment on a loaded machine (its file busy with
        // an apply); retry for up to 5 s, then fail with the last error.
        let t0 = std::time::Instant::now();
        let q = loop {
            match nodes[0].sync.read_sql_at(r, all_ids_sql, vec![]).await {
                Ok(q) => break q,
                Err(e) if t0.elapsed() < Duration::from_secs(5) => {
                    eprintln!("read at {r} failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("read at {r}: {e}"),
            }
        };
        check(q, r);
    }
    let kv = nodes[1]
        .store
        .read_sql("SELECT key FROM kv WHERE namespace = 'sim'", vec![])
        .await
        .unwrap();
    let have: BTreeSet<String> = kv.rows.iter().filter_map(|r| r[0].as_str().map(str::to_string)).collect();
    assert!(kv_keys.is_subset(&have), "kv keys missing: {kv_keys:?} vs {have:?}");
    for n in &nodes {
        n.sync.shutdown().await;
        n.store.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_four_regions_converge() {
    let seeds: Vec<u64> = std::env::var("EDGESWARM_SIM_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![7, 42]);
    for seed in seeds {
        tokio::time::timeout(Duration::from_secs(240), run(seed))
            .await
            .unwrap_or_else(|_| panic!("seed {seed} timed out"));
    }
}
