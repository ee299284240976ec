//! The swarm runtime: agents, supervision, shared memory, shutdown.

use edgeswarm::{Agent, AgentCtx, AgentOptions, BoxError, CasOutcome, Error, RestartPolicy, Swarm, SwarmEvent, TaskReport};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn swarm(dir: &tempfile::TempDir) -> Swarm {
    edgeswarm_testkit::open_swarm(dir.path().join("swarm.db")).await
}

#[derive(Clone)]
struct Counter(Arc<AtomicUsize>);
impl Agent for Counter {
    type Task = u32;
    async fn on_task(&mut self, _ctx: &AgentCtx, _t: u32) -> Result<TaskReport, BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(TaskReport::new("count", 1))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_agents_spawn_work_and_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let n = Arc::new(AtomicUsize::new(0));
    for i in 0..500 {
        s.spawn_agent(&format!("a{i}"), ["us-west-2", "eu-central-1"][i % 2], Counter(n.clone()))
            .await
            .unwrap();
    }
    assert_eq!(s.agents().len(), 500);
    let (ok, errs) = s.broadcast(1u32).await.unwrap();
    assert_eq!((ok, errs.len()), (500, 0));
    for _ in 0..200 {
        if n.load(Ordering::SeqCst) == 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n.load(Ordering::SeqCst), 500);
    s.shutdown().await.unwrap();
    assert!(s.agents().iter().all(|a| a.status == edgeswarm::AgentStatus::Stopped));
    // Automatic task metrics were flushed by shutdown.
    let s2 = swarm(&dir).await;
    let m = s2.metrics(None).await.unwrap();
    assert_eq!(m.by_task_type.iter().find(|a| a.key == "count").map(|a| a.count), Some(500));
    assert_eq!(m.by_region.len(), 2);
    s2.shutdown().await.unwrap();
}

#[derive(Clone)]
struct Crashy;
impl Agent for Crashy {
    type Task = bool;
    async fn on_task(&mut self, _ctx: &AgentCtx, crash: bool) -> Result<TaskReport, BoxError> {
        if crash {
            panic!("crash requested");
        }
        Ok(TaskReport::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_agent_is_restarted_within_limits_then_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let mut events = s.events();
    let opts = AgentOptions {
        restart: RestartPolicy {
            max_restarts: 2,
            within: Duration::from_secs(60),
        },
        ..Default::default()
    };
    s.spawn_agent_with("crashy", "us-west-2", Crashy, opts).await.unwrap();
    let mut restarts = 0;
    let mut stopped = None;
    for _ in 0..3 {
        s.send("crashy", true).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap() {
                SwarmEvent::AgentRestarted { .. } => {
                    restarts += 1;
                    break;
                }
                SwarmEvent::AgentStopped { reason, .. } => {
                    stopped = Some(reason);
                    break;
                }
                _ => {}
            }
        }
        if stopped.is_none() {
            // Restarted agents work again.
            s.send("crashy", false).await.unwrap();
        }
    }
    assert_eq!(restarts, 2);
    let reason = stopped.expect("stopped past its limit");
    assert!(reason.contains("more than 2 times"), "{reason}");
    assert!(matches!(s.send("crashy", false).await, Err(Error::AgentStopped(_))));
    assert_eq!(s.agent("crashy").unwrap().restarts, 2);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_loses_no_acked_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for p in 0..32 {
        let s = s.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let m = edgeswarm::Message::new(format!("sess-{p}"), "user", format!("msg {i}"));
                let id = m.id.clone();
                match s.add_conversation(m).await {
                    Ok(_) => acked.lock().unwrap().push(id),
                    Err(_) => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.shutdown().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let s2 = swarm(&dir).await;
    let n = s2
        .store()
        .read_sql("SELECT count(*) FROM conversations", vec![])
        .await
        .unwrap()
        .rows[0][0]
        .as_i64()
        .unwrap();
    assert!(n as usize >= acked.len(), "stored {n} < acked {}", acked.len());
    for id in acked.iter().step_by(97) {
        let r = s2
            .store()
            .read_sql("SELECT count(*) FROM conversations WHERE id = ?1", vec![id.clone().into()])
            .await
            .unwrap();
        assert_eq!(r.rows[0][0].as_i64(), Some(1), "acked {id} missing");
    }
    assert!(
        matches!(s.send("nobody", 1u32).await, Err(Error::ShutDown)),
        "send after shutdown is refused"
    );
    s2.shutdown().await.unwrap();
}

#[derive(Clone)]
struct Claimer(Arc<AtomicUsize>);
impl Agent for Claimer {
    type Task = u32;
    async fn on_task(&mut self, ctx: &AgentCtx, task: u32) -> Result<TaskReport, BoxError> {
        if let CasOutcome::Swapped { .. } = ctx.kv_cas("claims", &format!("task-{task}"), None, json!(ctx.id()), None).await? {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(TaskReport::new("claim", 0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_under_contention_gives_each_claim_to_exactly_one_agent() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let wins = Arc::new(AtomicUsize::new(0));
    for i in 0..64 {
        s.spawn_agent(&format!("c{i}"), "eu-central-1", Claimer(wins.clone()))
            .await
            .unwrap();
    }
    for t in 0..20u32 {
        let (ok, _) = s.broadcast(t).await.unwrap();
        assert_eq!(ok, 64);
    }
    // 64 agents x 20 tasks = 1280 claim attempts.
    for _ in 0..500 {
        let done: u64 = s.agents().iter().map(|a| a.tasks_ok).sum();
        if done == 1280 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(wins.load(Ordering::SeqCst), 20, "each of 20 tasks claimed exactly once");
    let owners = s.store().kv_list("claims", "task-", 100).await.unwrap();
    assert_eq!(owners.len(), 20);
    assert!(owners.iter().all(|e| e.version == 1));
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Swarm::builder()
        .path(dir.path().join("w.db"))
        .kv_sweep_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let mut w = s.watch("jobs", "job-");
    s.store()
        .kv_set("jobs", "job-1", json!({"state": "new"}), Some(Duration::from_millis(100)))
        .await
        .unwrap();
    s.store().kv_set("jobs", "other", json!(1), None).await.unwrap();
    let ch = tokio::time::timeout(Duration::from_secs(2), w.recv()).await.unwrap().unwrap();
    assert_eq!(ch.key, "job-1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.store().kv_get("jobs", "job-1").await.unwrap().is_none());
    let raw = s
        .store()
        .read_sql("SELECT count(*) FROM kv WHERE key = 'job-1'", vec![])
        .await
        .unwrap();
    assert_eq!(raw.rows[0][0].as_i64(), Some(0), "the sweeper deleted the expired row for good");
    let bad = s.store().kv_set("jobs", "x", json!(1), Some(Duration::ZERO)).await.unwrap_err();
    assert!(bad.to_string().contains("TTL of zero"), "{bad}");
    let huge = s
        .store()
        .kv_set("jobs", "x", json!(1), Some(Duration::from_secs(u64::MAX / 4)))
        .await
        .unwrap_err();
    assert!(huge.to_string().contains("10-year"), "{huge}");
    s.shutdown().await.unwrap();
}

#[derive(Clone)]
struct Slow;
impl Agent for Slow {
    type Task = u32;
    async fn on_task(&mut self, _ctx: &AgentCtx, _t: u32) -> Result<TaskReport, BoxError> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(TaskReport::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_agent_never_blocks_others_and_bad_input_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    let n = Arc::new(AtomicUsize::new(0));
    s.spawn_agent_with(
        "slow",
        "us-west-2",
        Slow,
        AgentOptions {
            mailbox: 4,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.spawn_agent("fast", "us-west-2", Counter(n.clone())).await.unwrap();
    let mut full = None;
    for i in 0..10u32 {
        if let Err(e) = s.send("slow", i).await {
            full = Some(e);
            break;
        }
    }
    assert!(matches!(full, Some(Error::MailboxFull { capacity: 4, .. })), "{full:?}");
    for i in 0..100u32 {
        s.send("fast", i).await.unwrap();
    }
    for _ in 0..200 {
        if n.load(Ordering::SeqCst) == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(n.load(Ordering::SeqCst), 100, "the fast agent kept working");

    assert!(matches!(s.send("ghost", 1u32).await, Err(Error::UnknownAgent(_))));
    assert!(matches!(
        s.spawn_agent("fast", "us-west-2", Counter(n.clone())).await,
        Err(Error::DuplicateAgent(_))
    ));
    assert!(matches!(s.send("fast", "wrong type").await, Err(Error::WrongTaskType { .. })));
    assert!(s.spawn_agent("", "r", Slow).await.is_err());
    s.stop_agent("slow").await.unwrap();
    s.shutdown().await.unwrap();
    assert!(matches!(s.spawn_agent("late", "r", Slow).await, Err(Error::ShutDown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_sessions_are_ordered_and_paginated() {
    let dir = tempfile::tempdir().unwrap();
    let s = swarm(&dir).await;
    for i in 0..25 {
        let m = edgeswarm::Message::new(
            "global-session-123",
            if i % 2 == 0 { "user" } else { "assistant" },
            format!("m{i:02}"),
        )
        .metadata(json!({"region": "us-west-2", "latency": 25}));
        s.add_conversation(m).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.get_conversations("global-session-123", cursor.as_deref(), 10).await.unwrap();
        seen.extend(page.items.iter().map(|m| m.content.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
    assert_eq!(seen, expected);
    assert!(s.get_conversations("global-session-123", Some("garbage"), 10).await.is_err());
    s.shutdown().await.unwrap();
}
