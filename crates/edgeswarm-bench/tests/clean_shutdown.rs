//! `Swarm::shutdown` leaves no `-wal` or `-shm` file: the swarm simulation (what
//! `examples/swarm_sim` and `edgeswarm demo` run), small and short, then the `.db`
//! alone holds everything.

use edgeswarm_bench::sim::{self, SimOptions, SimProgress};
use std::path::Path;
use std::sync::Arc;

fn side(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

/// Every `-wal` / `-shm` file under `dir`.
fn leftovers(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with("-wal") || p.to_string_lossy().ends_with("-shm") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_sim_then_shutdown_leaves_no_wal_or_shm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("edgeswarm.db");
    let opts = SimOptions {
        agents: 4,
        seconds: 1,
        db: db.clone(),
        ..Default::default()
    };
    let swarm = opts.builder().unwrap().start().await.unwrap();
    sim::run_on(&swarm, &opts, Arc::new(SimProgress::default())).await.unwrap();
    // A search opens the read pool's index connections too.
    swarm.search_knowledge("analysis", 5).await.unwrap();
    assert!(swarm.store_stats().ops > 0, "the simulation wrote");
    assert!(side(&db, "-wal").exists(), "WAL mode while running");
    swarm.shutdown().await.unwrap();
    assert_eq!(
        leftovers(dir.path()),
        Vec::<std::path::PathBuf>::new(),
        "no -wal or -shm after Swarm::shutdown"
    );

    // The .db copied alone has the writes.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let s2 = edgeswarm::Swarm::builder().path(&copy).start().await.unwrap();
    let n = s2
        .store()
        .read_sql("SELECT count(*) FROM conversations", vec![])
        .await
        .unwrap()
        .rows[0][0]
        .as_i64()
        .unwrap();
    assert!(n > 0, "the copied .db alone holds the conversations");
    s2.shutdown().await.unwrap();
    assert!(!side(&copy, "-wal").exists() && !side(&copy, "-shm").exists());
}
