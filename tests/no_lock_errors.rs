//! No "database is locked", ever: 256 concurrent publishers, readers in-process, and a
//! second process reading the same file.

use edgeswarm_core::Metric;
use edgeswarm_store::StoreError;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_publishers_readers_and_another_process_see_no_lock_errors() {
    let dir = edgeswarm_testkit::temp_dir();
    let db = dir.path().join("busy.db");
    let store = edgeswarm_testkit::open_store(&db).await;
    store.publish(Metric::new("seed", "t", 1.0, 1)).await.unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_edgeswarm-test-child"))
        .args(["read", db.to_str().unwrap(), "4"])
        .output();
    let child = tokio::task::spawn_blocking(move || child);

    let mut tasks = Vec::new();
    for p in 0..256 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut errs = Vec::new();
            for i in 0..40 {
                if let Err(e) = s.publish(Metric::new(format!("p{p}"), "lock", i as f64, 1)).await {
                    errs.push(e);
                }
            }
            errs
        }));
    }
    for r in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut errs: Vec<StoreError> = Vec::new();
            for _ in 0..200 {
                if let Err(e) = s
                    .read_sql(
                        "SELECT count(*), avg(duration_ms) FROM agent_metrics WHERE agent_id = ?1",
                        vec![format!("p{r}").into()],
                    )
                    .await
                {
                    errs.push(e);
                }
            }
            errs
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await.unwrap());
    }
    assert!(errors.is_empty(), "errors under contention: {:?}", &errors[..errors.len().min(3)]);
    let n = store.read_sql("SELECT count(*) FROM agent_metrics", vec![]).await.unwrap().rows[0][0]
        .as_i64()
        .unwrap();
    assert_eq!(n, 1 + 256 * 40);
    let out = child.await.unwrap().expect("child reader ran");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("lock_errors=0 other_errors=0"), "second process saw errors: {text}");
    let reads: u64 = text
        .split_whitespace()
        .next()
        .and_then(|s| s.strip_prefix("reads="))
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(reads > 0, "second process read nothing: {text}");
    store.shutdown().await.unwrap();
}
