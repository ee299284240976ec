//! Convergence under a seeded simulation: 3 nodes (own home files) x 4 shared local
//! regions; random inserts, updates (typed and raw SQL), deletes, kv conflicts;
//! lossy, duplicating, jittery links (so batches are redelivered and reordered);
//! partitions and heals; node restarts. After quiescence every home file and every
//! region holds identical rows (content hash) and no acked write is missing.
//!
//! Seeds: `EDGESWARM_SIM_SEEDS=1,2,3` (default 7 and 42).
use edgeswarm_core::{Knowledge, Metric};
use edgeswarm_store::{SqlValue, Store};
use edgeswarm_sync::{LinkProfile, RegionConfig, SyncConfig, SyncHandle, SyncSystem};
use edgeswarm_testkit::sync::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::path::PathBuf;
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
        ..fast_cfg()
    }
}

async fn start(path: PathBuf, regions: &[RegionConfig]) -> Node {
    let store = open_store(&path).await;
    let sync = SyncSystem::start(store.clone(), regions.to_vec(), cfg()).await.expect("start sync");
    Node { path, store, sync }
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
        } else if p < 0.95 {
            let r = REGIONS[rng.random_range(0..4)].0;
            n.sync.partition(r, rng.random_bool(0.6)).unwrap();
            partitions += 1;
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
    let names: Vec<&str> = REGIONS.iter().map(|r| r.0).collect();
    let handles: Vec<&SyncHandle> = nodes.iter().map(|n| &n.sync).collect();
    let sums = wait_converged(&handles, &names, Duration::from_secs(90)).await;
    eprintln!("seed {seed}: converged after {restarts} restarts, {partitions} partition flips: {sums:?}");

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
        let q = nodes[0].sync.read_sql_at(r, all_ids_sql, vec![]).await;
        let q = match q {
            Ok(q) => q,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                nodes[0].sync.read_sql_at(r, all_ids_sql, vec![]).await.unwrap()
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
